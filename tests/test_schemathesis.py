"""Schemathesis against the running review service (issue #19): every operation, with
no key and with each role's key, finds no 5xx and no answer the schema does not allow.

On SQLite and on PostgreSQL (which refuses a NUL in text, so it finds more).
The service is seeded with real designs first (a ready case, a case approved
for the lab, a case whose design failed) so the case routes are reached, then
restarted with its design jobs going to a broker with no worker behind it, so
that versions the fuzzer submits stay queued instead of taking the machine.
Schemathesis runs as its command line does (``st run --checks all``), on this
machine only, bounded by its number of examples per operation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import SCANS
from tests.service_helpers import (Server, auth, broker_url, fresh_database, make_keys,
                                   prescription, wait_for)

BROKER_URL = broker_url(served=False)  # a queue of its own, no worker on it
FOOT = SCANS / "adult_left_footonly_mm_zup.ply"
NO_FOOT = SCANS / "residual_limb_nofoot_mm.stl"
# Test cases per operation and phase: the eight passes take about 40 s on 2 cores.
MAX_EXAMPLES = 20

# What "accepted" means for data the schema allows: a scan is only a string of
# bytes to the schema, a lab's name any string, a prescription's cross-field
# rules are beyond JSON Schema; those refusals (413, 415, 422) are answers
# the schema declares, not a failure to accept valid data.
CONFIG = """
[dictionaries.cases]
values = {cases}
[parameters]
"path.case_id" = {{ dictionary = "cases", probability = 0.8 }}

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "415", "422", "429"]
"""


def _upload(client: httpx.Client, key: str, scan: Path, **rx) -> str:
    r = client.post("/cases", headers=auth(key), files={"scan": (scan.name, scan.read_bytes())},
                    data={"prescription": prescription(**rx)})
    assert r.status_code == 202, r.text
    return r.json()["case_id"]


DELETE = "DELETE /cases/{case_id}"


def _schemathesis(url: str, config: Path, key: str | None, reports: Path,
                  select: list[str]) -> dict:
    headers = [*select, *([] if key is None else ["-H", f"Authorization: Bearer {key}"])]
    st = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
          f"{url}/openapi.json", "--checks", "all", "-n", str(MAX_EXAMPLES), "--seed", "19",
          "--workers", "1", "--request-timeout", "60", "--no-color", *headers,
          "--report", "json,har", "--report-json-path", str(reports / "run.json"),
          "--report-har-path", str(reports / "run.har")]
    begin = time.perf_counter()
    # Run in the test's folder: Schemathesis keeps its cache of past crashes in the
    # working directory, and a run must not depend on (or leave) an earlier one's.
    proc = subprocess.run(st, capture_output=True, text=True, timeout=600, cwd=reports,
                          env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    seconds = time.perf_counter() - begin
    report = json.loads((reports / "run.json").read_text())
    entries = json.loads((reports / "run.har").read_text())["log"]["entries"]
    statuses = [e["response"]["status"] for e in entries]
    answered = {(e["request"]["method"],
                 re.sub(r"/cases/[0-9a-f]{32}", "/cases/{case_id}",
                        urlsplit(e["request"]["url"]).path))
                for e in entries if 200 <= e["response"]["status"] < 300}
    return {"exit_code": proc.returncode, "output": proc.stdout[-6000:] + proc.stderr[-2000:],
            "operations": report["operations"]["tested"],
            "selected": report["operations"]["selected"],
            "test_cases": report["test_cases"]["generated"], "requests": len(entries),
            "server_errors": sum(s >= 500 for s in statuses),
            "failures": len(report["failures"]) + report["test_cases"]["with_failures"],
            "errors": len(report["errors"]), "seconds": round(seconds, 1),
            "statuses": sorted(set(statuses)), "answered": sorted(answered)}


def _merge(a: dict, b: dict) -> dict:
    """The figures of two passes of one role as one run."""
    out = {k: a[k] + b[k] for k in ("operations", "selected", "test_cases", "requests",
                                    "server_errors", "failures", "errors")}
    out["seconds"] = round(a["seconds"] + b["seconds"], 1)
    out["exit_code"] = max(a["exit_code"], b["exit_code"])
    out["statuses"] = sorted(set(a["statuses"]) | set(b["statuses"]))
    out["answered"] = sorted(set(a["answered"]) | set(b["answered"]))
    out["output"] = a["output"] + b["output"]
    return out


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_schemathesis_finds_no_5xx_and_no_schema_violation(kind, tmp_path):
    if BROKER_URL is None:
        pytest.skip("no broker: run the tests with 'make test', which starts Redis")
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()
    url = fresh_database(kind, tmp_path)
    keys = make_keys(url)
    env = {"ORTHOFIT_DATA_DIR": str(tmp_path / "data"), "ORTHOFIT_DATABASE_URL": url,
           "ORTHOFIT_WORKERS": "2"}
    server = Server(env)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            ready = _upload(client, keys["clinic"], FOOT)
            approved = _upload(client, keys["clinic"], FOOT, thickness_mm=4.0)
            failed = _upload(client, keys["clinic"], NO_FOOT)
            assert wait_for(client, ready, 1, keys["clinic"])["status"] == "ready"
            assert wait_for(client, approved, 1, keys["clinic"])["status"] == "ready"
            assert wait_for(client, failed, 1, keys["clinic"])["status"] == "failed"
            r = client.post(f"/cases/{approved}/approve", headers=auth(keys["clinic"]),
                            json={"version": 1, "lab": "Print Lab"})
            assert r.status_code == 200, r.text
    finally:
        server.stop()

    server = Server({**env, "ORTHOFIT_BROKER_URL": BROKER_URL,
                     # The fuzzer sends thousands of requests without a valid key.
                     "ORTHOFIT_AUTH_FAILURES_PER_MINUTE": "0"})
    try:
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG.format(cases=json.dumps([ready, approved, failed])))
        roles = (("no key", None), ("orthotist", keys["clinic"]), ("lab", keys["lab"]),
                 ("admin", keys["admin"]))
        # Every operation but deleting a case first, each role in turn; then deleting,
        # which takes the seeded cases away.
        passes = {}
        for name, select in (("rest", ["--exclude-name", DELETE]),
                             ("delete", ["--include-name", DELETE])):
            for role, key in roles:
                reports = tmp_path / f"{name}-{role.replace(' ', '-')}"
                reports.mkdir()
                passes[name, role] = _schemathesis(server.url, config, key, reports, select)
        results = {role: _merge(passes["rest", role], passes["delete", role])
                   for role, _ in roles}
    finally:
        server.stop()
        redis.Redis.from_url(BROKER_URL).flushdb()
        if kind == "postgresql":  # the queued jobs the fuzzer left
            engine = create_engine(url)
            with engine.begin() as connection:
                connection.execute(text("DROP TABLE IF EXISTS design_jobs"))
            engine.dispose()
    figures = {role: {k: v for k, v in r.items() if k not in ("output", "answered")}
               for role, r in results.items()}
    print(kind, json.dumps(figures, indent=2))
    for role, r in results.items():
        assert r["operations"] == r["selected"] >= 19, (role, r["output"])
        assert r["server_errors"] == 0, (role, r["output"])
        assert r["failures"] == 0 and r["errors"] == 0, (role, r["output"])
        assert r["exit_code"] == 0, (role, r["output"])
    # The case routes were reached, not only refused: files and review data came back.
    reached = {role: set(r["answered"]) for role, r in results.items()}
    for method, path in (("GET", "/cases/{case_id}"), ("GET", "/cases/{case_id}/review.json"),
                         ("GET", "/cases/{case_id}/review.glb"),
                         ("GET", "/cases/{case_id}/report.html"),
                         ("GET", "/cases/{case_id}/device.stl"),
                         ("GET", "/cases/{case_id}/job-sheet")):
        assert (method, path) in reached["orthotist"], (method, path)
    for method, path in (("GET", "/cases/{case_id}/device.stl"),
                         ("GET", "/cases/{case_id}/device.3mf"),
                         ("GET", "/cases/{case_id}/job-sheet")):
        assert (method, path) in reached["lab"], (method, path)
    assert ("GET", "/admin/audit") in reached["admin"]
    assert ("DELETE", "/cases/{case_id}") in reached["orthotist"]
