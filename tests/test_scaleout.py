"""Scale-out on Celery (issue #6): a real Redis broker and two worker processes.

``make test`` starts Redis from Debian's packages (``scripts/start-redis``).
A batch runs through two ``orthofit worker`` processes; while both are busy,
one worker's pool process is killed.  Celery puts its task back on the queue
(acks late, reject on worker lost), the scan completes on a second attempt
counted in the database, and every ``device.stl`` equals a local run's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import run_cli
from tests.service_helpers import (POSTGRES_URL, Server, auth, broker_url, make_keys,
                                   prescription, wait_for)
from tests.test_samples import SAMPLES

BROKER_URL = broker_url()
SCANS = [p for p in SAMPLES if "footonly" not in p.stem][:3]


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running_jobs(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(
                "SELECT count(*) FROM design_jobs WHERE status = 'running'")).scalar_one()
    except Exception:  # noqa: BLE001 - the table appears with the first job
        return 0
    finally:
        engine.dispose()


@pytest.fixture
def cluster(tmp_path):
    """Two workers on the test broker, sharing a data folder and a database."""
    if BROKER_URL is None:
        pytest.skip("no broker: run the tests with 'make test', which starts Redis")
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()
    if POSTGRES_URL:
        from service.db import Base

        url = POSTGRES_URL
        engine = create_engine(url)
        Base.metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS design_jobs"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {**os.environ, "ORTHOFIT_DATA_DIR": str(tmp_path / "shared"),
           "ORTHOFIT_DATABASE_URL": url, "ORTHOFIT_BROKER_URL": BROKER_URL,
           "ORTHOFIT_MAX_ATTEMPTS": "3", "PYTHONHASHSEED": "0"}
    env.pop("ORTHOFIT_DEBUG", None)
    workers, logs = [], []
    for name in ("w1", "w2"):
        log = tmp_path / f"{name}.log"
        logs.append(log)
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "orthofit", "worker", "-n", f"{name}@test"], env=env,
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 60
    while not all("ready" in log.read_text(errors="replace") for log in logs):
        assert time.monotonic() < deadline, [log.read_text()[-2000:] for log in logs]
        assert all(w.poll() is None for w in workers), [log.read_text()[-2000:] for log in logs]
        time.sleep(0.2)
    yield env, url, workers, logs
    for worker in workers:
        try:
            os.killpg(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def test_a_batch_on_two_workers_survives_a_killed_worker(cluster, tmp_path):
    env, url, workers, logs = cluster
    scans = tmp_path / "scans"
    scans.mkdir()
    for sample in SCANS:
        (scans / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "insole.yaml").write_text("device: foot-orthosis\n")
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "orthofit", "batch", str(scans), "-o",
                              str(out), "--prescription", str(tmp_path / "insole.yaml")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until both workers run a job, then kill the first one's pool process.
    deadline = time.monotonic() + 120
    while _running_jobs(url) < 2:
        assert time.monotonic() < deadline and batch.poll() is None, batch.stderr.read()
        time.sleep(0.2)
    time.sleep(1.5)  # into the design, not its start-up
    started = re.findall(r"design job \w+ \(batch/\w+/(\S+)\) attempt 1 started",
                         logs[0].read_text())
    assert started, logs[0].read_text()[-2000:]
    killed_label = started[-1]
    (child,) = _children(workers[0].pid)
    os.kill(child, signal.SIGKILL)
    _, stderr = batch.communicate(timeout=600)
    assert batch.returncode == 0, stderr
    assert "Celery workers via redis://" in stderr
    rows = {r["output"]: r for r in json.loads((out / "summary.json").read_text())}
    assert sorted(r["scan"] for r in rows.values()) == sorted(p.name for p in SCANS)
    for label, row in rows.items():
        assert row["status"] == "ok", row
        assert row["attempts"] == (2 if label == killed_label else 1), (label, row)
    assert "WorkerLostError" in logs[0].read_text()
    # The same scans designed locally give byte-identical devices.
    local = run_cli("batch", scans, "-o", tmp_path / "local", "--prescription",
                    tmp_path / "insole.yaml", "-j", "2",
                    env={"ORTHOFIT_BROKER_URL": "", "ORTHOFIT_DATA_DIR": str(tmp_path / "d")})
    assert local.code == 0, local.stderr
    local_rows = {r["output"]: r for r in json.loads(
        (tmp_path / "local" / "summary.json").read_text())}
    for label, row in rows.items():
        assert row["device_sha256"] == local_rows[label]["device_sha256"], label
    # Nothing is left in the shared folder once the batch has its results.
    assert not list((tmp_path / "shared" / "batches").iterdir())


def test_the_service_sends_its_jobs_to_the_workers(cluster, tmp_path):
    env, url, workers, logs = cluster
    import httpx

    keys = make_keys(url)
    server = Server({k: env[k] for k in ("ORTHOFIT_DATA_DIR", "ORTHOFIT_DATABASE_URL",
                                         "ORTHOFIT_BROKER_URL")})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            scan = next(p for p in SAMPLES if "child_right" in p.stem)
            made = client.post("/cases", headers=auth(keys["clinic"]),
                               files={"scan": (scan.name, scan.read_bytes())},
                               data={"prescription": prescription()})
            assert made.status_code == 202, made.text
            case_id = made.json()["case_id"]
            v = wait_for(client, case_id, 1, keys["clinic"])
            assert v["status"] == "ready" and v["attempts"] == 1, v
            stl = client.get(f"/cases/{case_id}/device.stl", headers=auth(keys["clinic"]))
            assert stl.status_code == 200 and len(stl.content) > 10_000
    finally:
        server.stop()
    # A worker ran it, not the service; its job was taken off the list once recorded.
    assert any(f"case/{case_id}/v1" in log.read_text() for log in logs)
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM design_jobs")).scalar_one() == 0
    engine.dispose()
