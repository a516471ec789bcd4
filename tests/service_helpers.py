"""Shared set-up for the service tests: databases, keys and a running server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from service.db import Base, connect
from service.keys import create_key
from tests.conftest import ROOT


def _worker() -> int:
    """This pytest-xdist worker's number (``gw3`` is 3); 0 when the suite runs in one process."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _worker_postgres(url: str | None) -> str | None:
    """The PostgreSQL database of this test worker's own, made on first use: the tests drop
    every table of the database they use, so two workers must never share one."""
    if url is None or "PYTEST_XDIST_WORKER" not in os.environ:
        return url
    name = f"orthofit_test_gw{_worker()}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": name}).first() is None:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return f"{url.rsplit('/', 1)[0]}/{name}"


def broker_url(*, served: bool = True) -> str | None:
    """The test Redis broker on a database of this worker's own (Redis has 16): one for
    queues with workers behind them, another (``served=False``) for a queue nobody serves.
    ``None`` where ``make test`` started no broker."""
    url = os.environ.get("ORTHOFIT_TEST_BROKER_URL")
    if url is None:
        return None
    return f"{url.rsplit('/', 1)[0]}/{2 * _worker() + (0 if served else 1)}"


POSTGRES_URL = _worker_postgres(os.environ.get("ORTHOFIT_TEST_POSTGRES_URL"))


def database_urls(tmp_path: Path) -> dict[str, str | None]:
    return {"sqlite": f"sqlite:///{tmp_path / 'orthofit.db'}", "postgresql": POSTGRES_URL}


def fresh_database(kind: str, tmp_path: Path) -> str:
    """An empty database of ``kind``; PostgreSQL only where ``make test`` started one."""
    url = database_urls(tmp_path)[kind]
    if url is None:
        pytest.skip("no PostgreSQL server: run the tests with 'make test', which starts one")
    if kind == "postgresql":
        engine = create_engine(url)
        Base.metadata.drop_all(engine)
        engine.dispose()
    return url


def make_keys(url: str) -> dict[str, str]:
    sessions = connect(url)
    keys = {}
    with sessions() as s:
        for name, org, role in (("clinic", "Clinic A", "orthotist"),
                                ("other_clinic", "Clinic B", "orthotist"),
                                ("lab", "Print Lab", "lab"),
                                ("other_lab", "Other Lab", "lab"),
                                ("admin", "Admin", "admin")):
            keys[name] = create_key(s, org, role)[1]
    sessions.kw["bind"].dispose()
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def prescription(**fields) -> str:
    return json.dumps({"device": "foot-orthosis", "scan": {"case_ref": "C-0007"}, **fields})


class Server:
    """``orthofit serve`` in its own process, on a free port."""

    def __init__(self, env: dict[str, str]):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orthofit", "serve", "--port", str(self.port)],
            env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service did not start: {self.proc.stdout.read().decode()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_for(client: httpx.Client, case_id: str, version: int, key: str,
             timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        case = client.get(f"/cases/{case_id}", headers=auth(key)).json()
        v = next(v for v in case["versions"] if v["version"] == version)
        if v["status"] in ("ready", "failed"):
            return v
        time.sleep(0.5)
    raise AssertionError(f"version {version} still {v['status']} after {timeout} s")
