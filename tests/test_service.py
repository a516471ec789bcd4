"""The review service (issue #4): who sees what, request errors, jobs in worker processes.

Database tests run on SQLite and on a real PostgreSQL server (``make test``
starts one).  The end-to-end test talks HTTP to ``orthofit serve`` in its own
process, whose design jobs run in worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.app import create_app
from service.db import Version, connect
from orthofit.settings import Settings
from tests.conftest import SCANS, design_processes
from tests.service_helpers import (Server, auth, fresh_database, make_keys, prescription,
                                   wait_for)

SCAN = SCANS / "child_right_floor_mm_yup.stl"
DATABASES = ["sqlite", "postgresql"]


def _settings(tmp_path: Path, url: str, **overrides) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1, **overrides)


def _submit(client, key: str, scan: Path = SCAN, rx: str | None = None, name: str | None = None):
    return client.post("/cases", headers=auth(key),
                       files={"scan": (name or scan.name, scan.read_bytes())},
                       data={"prescription": rx or prescription()})


@pytest.fixture(params=DATABASES)
def service(request, tmp_path):
    url = fresh_database(request.param, tmp_path)
    keys = make_keys(url)
    app = create_app(_settings(tmp_path, url, max_upload_bytes=4 * 1024 * 1024),
                     run_jobs=False)
    with TestClient(app) as client:
        yield client, keys, url


def test_requests_without_a_valid_key_are_refused(service):
    client, keys, _ = service
    assert client.get("/cases").status_code == 401
    r = client.get("/cases", headers=auth("ofk_not-a-key"))
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
    assert client.get("/healthz").json()["status"] == "ok"


def test_bad_uploads_are_answered_at_once_with_what_to_do(service, tmp_path):
    client, keys, _ = service
    png = tmp_path / "foot.stl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    r = _submit(client, keys["clinic"], png)
    assert r.status_code == 415 and "PNG image, not a scan" in r.json()["detail"]
    r = _submit(client, keys["clinic"], rx='{"device": "hinged-afo"}')
    assert r.status_code == 422 and "device" in r.json()["detail"]
    r = _submit(client, keys["clinic"], rx='{"thickness_mm": 0.5}')
    assert r.status_code == 422 and "thickness_mm" in r.json()["detail"]
    r = _submit(client, keys["clinic"], rx="not json")
    assert r.status_code == 422
    big = tmp_path / "big.ply"
    big.write_bytes(b"ply\n" + bytes(5 * 1024 * 1024))
    assert _submit(client, keys["clinic"], big).status_code == 413
    # Nothing was created by any of them.
    assert client.get("/cases", headers=auth(keys["clinic"])).json() == []


def test_who_sees_what(service):
    client, keys, url = service
    assert _submit(client, keys["lab"]).status_code == 403
    r = _submit(client, keys["clinic"])
    assert r.status_code == 202 and r.json()["version"] == 1
    case_id = r.json()["case_id"]
    assert r.json()["status"] == "queued"
    assert client.get(f"/cases/{case_id}", headers=auth(keys["other_clinic"])).status_code == 404
    assert client.get(f"/cases/{case_id}", headers=auth(keys["lab"])).status_code == 404
    assert client.get("/cases", headers=auth(keys["lab"])).json() == []
    assert client.get("/cases", headers=auth(keys["other_clinic"])).json() == []
    assert [c["case_id"] for c in client.get("/cases", headers=auth(keys["clinic"])).json()] \
        == [case_id]
    # A version that is not ready cannot be approved.
    r = client.post(f"/cases/{case_id}/approve", headers=auth(keys["clinic"]),
                    json={"version": 1, "lab": "Print Lab"})
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    # Admins read the audit log; nobody else does.
    assert client.get("/admin/audit", headers=auth(keys["clinic"])).status_code == 403
    log = client.get("/admin/audit", headers=auth(keys["admin"]),
                     params={"case_id": case_id}).json()
    assert {"create", "denied"} <= {e["action"] for e in log}
    assert {e["org"] for e in log if e["action"] == "denied" and e["status"] == 404} \
        == {"Clinic B", "Print Lab"}
    # The refused approval is there too (issue #19).
    assert [(e["org"], e["status"]) for e in log if e["route"] == "/cases/{case_id}/approve"] \
        == [("Clinic A", 409)]
    assert all(e["org"] for e in log)
    # Deleting removes the case and its files.
    assert client.delete(f"/cases/{case_id}", headers=auth(keys["clinic"])).status_code == 200
    assert client.get(f"/cases/{case_id}", headers=auth(keys["clinic"])).status_code == 404
    assert not (Path(client.app.state.settings.data_dir) / "cases" / case_id).exists()


def test_admin_keys_and_revocation(service):
    client, keys, _ = service
    r = client.post("/admin/keys", headers=auth(keys["admin"]),
                    json={"org": "Clinic C", "role": "orthotist"})
    assert r.status_code == 201
    new = r.json()["key"]
    assert client.get("/cases", headers=auth(new)).status_code == 200
    assert client.post("/admin/keys", headers=auth(new),
                       json={"org": "X", "role": "admin"}).status_code == 403
    assert client.delete(f"/admin/keys/{r.json()['prefix']}",
                         headers=auth(keys["admin"])).status_code == 200
    assert client.get("/cases", headers=auth(new)).status_code == 401
    orgs = client.get("/admin/organisations", headers=auth(keys["admin"])).json()
    clinic_c = next(o for o in orgs if o["name"] == "Clinic C")
    assert clinic_c["keys"] == [{**clinic_c["keys"][0], "role": "orthotist", "revoked": True}]
    assert client.get("/admin/organisations", headers=auth(keys["lab"])).status_code == 403


def test_interrupted_jobs_resume_on_restart(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    settings = _settings(tmp_path, url)
    with TestClient(create_app(settings, run_jobs=False)) as client:
        case_id = _submit(client, keys["clinic"]).json()["case_id"]
    # The service stopped while the job ran.
    sessions = connect(url)
    with sessions() as s:
        s.execute(update(Version).values(status="running", attempts=1))
        s.commit()
    with TestClient(create_app(settings)) as client:
        v = wait_for(client, case_id, 1, keys["clinic"])
    assert v["status"] == "ready", v
    assert v["attempts"] == 2


def test_a_job_that_hangs_its_worker_is_stopped_retried_then_failed(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    settings = _settings(tmp_path, url, job_timeout_s=0.5, max_attempts=2)
    with TestClient(create_app(settings)) as client:
        case_id = _submit(client, keys["clinic"]).json()["case_id"]
        v = wait_for(client, case_id, 1, keys["clinic"], timeout=60)
    assert v["status"] == "failed" and v["reason"] == "worker lost", v
    assert v["attempts"] == 2, v
    assert "longer than 0 s" in v["message"] or "longer than 1 s" in v["message"]
    assert "gave up after 2 attempts" in v["message"]


@pytest.mark.parametrize("kind", DATABASES)
def test_create_review_resubmit_approve_and_the_lab_downloads_v2(kind, tmp_path):
    url = fresh_database(kind, tmp_path)
    keys = make_keys(url)
    server = Server({"ORTHOFIT_DATA_DIR": str(tmp_path / "data"),
                     "ORTHOFIT_DATABASE_URL": url, "ORTHOFIT_WORKERS": "2"})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            clinic, lab = keys["clinic"], keys["lab"]
            created = _submit(client, clinic)
            assert created.status_code == 202, created.text
            case_id = created.json()["case_id"]
            # A scan that has no foot fails later, with the CLI's message.
            stump = _submit(client, clinic, SCANS / "residual_limb_nofoot_mm.stl").json()
            v1 = wait_for(client, case_id, 1, clinic)
            assert v1["status"] == "ready", v1
            assert v1["side"] == "right"
            failed = wait_for(client, stump["case_id"], 1, clinic)
            assert failed["status"] == "failed" and failed["exit_code"] == 4
            assert failed["reason"] == "cannot serve" and "foot" in failed["message"]

            review = client.get(f"/cases/{case_id}/review.json", headers=auth(clinic)).json()
            assert review["passed"] and review["checks"]["watertight"]["passed"]
            glb = client.get(review["glb"], headers=auth(clinic))
            assert glb.status_code == 200 and glb.content[:4] == b"glTF"
            page = client.get(f"/cases/{case_id}/review")
            assert page.status_code == 200 and case_id in page.text

            # Resubmit with a thicker wall; v1 stays.
            r = client.post(f"/cases/{case_id}/versions", headers=auth(clinic),
                            data={"prescription": prescription(thickness_mm=4.0)})
            assert r.status_code == 202 and r.json()["version"] == 2
            v2 = wait_for(client, case_id, 2, clinic)
            assert v2["status"] == "ready", v2
            r = client.post(f"/cases/{case_id}/approve", headers=auth(clinic),
                            json={"version": 2, "lab": "Print Lab"})
            assert r.status_code == 200 and r.json()["approved_version"] == 2
            v1_stl = client.get(f"/cases/{case_id}/device.stl?version=1", headers=auth(clinic))

            # The lab sees the case and gets exactly v2, under its file name.
            assert [c["case_id"] for c in client.get("/cases", headers=auth(lab)).json()] \
                == [case_id]
            stl = client.get(f"/cases/{case_id}/device.stl?version=1", headers=auth(lab))
            assert stl.status_code == 200
            assert 'filename="C-0007_right_foot-orthosis_v2.stl"' in \
                stl.headers["content-disposition"]
            data_dir = tmp_path / "data" / "cases" / case_id
            assert stl.content == (data_dir / "v2" / "out" / "device.stl").read_bytes()
            assert stl.content != v1_stl.content
            three = client.get(f"/cases/{case_id}/device.3mf", headers=auth(lab))
            assert three.status_code == 200 and "_v2.3mf" in three.headers["content-disposition"]
            sheet = client.get(f"/cases/{case_id}/job-sheet", headers=auth(lab)).json()
            assert sheet["version"] == 2 and sheet["thickness_mm"] == 4.0
            assert sheet["side"] == "right" and sheet["case_ref"] == "C-0007"
            # ...and nothing about the patient's limb or fit.
            for path in ("report.html", "review.json", "review.glb"):
                assert client.get(f"/cases/{case_id}/{path}", headers=auth(lab)).status_code \
                    == 403
            assert client.get(f"/cases/{case_id}/device.stl",
                              headers=auth(keys["other_lab"])).status_code == 404
    finally:
        server.stop()


def test_a_worker_killed_mid_job_is_retried(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    server = Server({"ORTHOFIT_DATA_DIR": str(tmp_path / "data"),
                     "ORTHOFIT_DATABASE_URL": url, "ORTHOFIT_WORKERS": "1"})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            case_id = _submit(client, keys["clinic"]).json()["case_id"]
            pid = _design_process(case_id, timeout=60)
            time.sleep(1.0)
            os.kill(pid, signal.SIGKILL)
            v = wait_for(client, case_id, 1, keys["clinic"])
            assert v["status"] == "ready", v
            assert v["attempts"] == 2
            # The service itself is still up.
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()


def _design_process(case_id: str, timeout: float) -> int:
    """The pid of the worker process designing ``case_id``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = design_processes(case_id)
        if pids:
            return pids[0]
        time.sleep(0.1)
    raise AssertionError("no worker process appeared")


def test_keys_from_the_command_line(tmp_path, cli):
    env = {"ORTHOFIT_DATA_DIR": str(tmp_path / "data"), "ORTHOFIT_DATABASE_URL": ""}
    made = cli("keys", "create", "--org", "Clinic A", "--role", "orthotist", env=env)
    assert made.code == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("ofk_") and len(key) > 40
    bad = cli("keys", "create", "--org", "Clinic A", "--role", "surgeon", env=env)
    assert bad.code == 2 and "orthotist, lab, admin" in bad.stderr
    assert "Traceback" not in bad.stderr
    settings = Settings.from_env(env)
    with TestClient(create_app(settings, run_jobs=False)) as client:
        assert client.get("/cases", headers=auth(key)).status_code == 200
        assert cli("keys", "revoke", key[:10], env=env).code == 0
        assert client.get("/cases", headers=auth(key)).status_code == 401
    unknown = cli("keys", "revoke", "ofk_nothing", env=env)
    assert unknown.code == 2 and "no single key" in unknown.stderr


def test_committed_openapi_schema_is_in_step(tmp_path):
    # The OpenAPI schema is the service's contract: a change to it shows in review.
    from tests.conftest import ROOT

    app = create_app(_settings(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"), run_jobs=False)
    committed = json.loads((ROOT / "schemas" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(app.openapi()))
    for path in ("/cases", "/cases/{case_id}", "/cases/{case_id}/versions",
                 "/cases/{case_id}/approve", "/cases/{case_id}/device.stl",
                 "/cases/{case_id}/device.3mf", "/cases/{case_id}/job-sheet",
                 "/cases/{case_id}/report.html", "/cases/{case_id}/review", "/healthz"):
        assert path in committed["paths"], path


def test_malformed_requests_get_4xx_not_5xx(service):
    client, keys, _ = service
    h = auth(keys["clinic"])
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    attempts = [
        client.post("/cases", headers=h),
        client.post("/cases", headers=h, data={"prescription": prescription()}),
        client.post("/cases", headers=h, files={"scan": ("s.ply", b"")},
                    data={"prescription": prescription()}),
        client.post("/cases", headers=h, files={"scan": ("s.ply", b"ply\n")},
                    data={"prescription": "[]"}),
        client.post(f"/cases/{case_id}/approve", headers=h, content=b"{not json"),
        client.post(f"/cases/{case_id}/approve", headers=h, json={"version": 0, "lab": ""}),
        client.post(f"/cases/{case_id}/approve", headers=h, json={"version": 9, "lab": "x"}),
        client.post(f"/cases/{case_id}/versions", headers=h, data={"prescription": "{"}),
        client.get(f"/cases/{case_id}/device.stl", headers=h),
        client.get(f"/cases/{case_id}/device.stl?version=abc", headers=h),
        client.get(f"/cases/{case_id}/review.json?version=7", headers=h),
        client.get(f"/cases/{case_id}/job-sheet", headers=h),
        client.get("/cases/../../etc/passwd", headers=h),
        client.get("/static/..%2Fapp.py"),
        client.delete("/cases/nope", headers=h),
        client.post("/admin/keys", headers=auth(keys["admin"]), json={"org": "", "role": "x"}),
    ]
    for r in attempts:
        assert 400 <= r.status_code < 500, (r.request.method, r.request.url, r.status_code)
        assert "detail" in r.json()
