"""The review service under attack and faults (issue #19): no 500, nothing unlogged,
nothing identifying kept.  One test per defect the hostile test found, each
against the real service (SQLite and PostgreSQL, real files, a real server
process where timing or killing matters).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from orthofit.io import read_scan_bytes
from orthofit.settings import Settings
from service.app import create_app
from service.db import Case, Organisation, Version, connect
from tests.conftest import ROOT, SCANS, design_processes
from tests.service_helpers import (Server, auth, fresh_database, make_keys, prescription,
                                   wait_for)

FOOT = SCANS / "adult_left_footonly_mm_zup.ply"
# A design that takes a while (a solid AFO with its stiffness), for the tests that kill one.
LEG = SCANS / "adult_left_floor_mm_zup.ply"
DATABASES = ["sqlite", "postgresql"]


def _settings(tmp_path: Path, url: str, **overrides) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=url, workers=1, **overrides)


@pytest.fixture(params=DATABASES)
def service(request, tmp_path):
    url = fresh_database(request.param, tmp_path)
    keys = make_keys(url)
    app = create_app(_settings(tmp_path, url, max_upload_bytes=4 * 1024 * 1024),
                     run_jobs=False)
    with TestClient(app) as client:
        yield client, keys, url


def _submit(client, key: str, scan: Path = FOOT, rx: str | None = None,
            data: bytes | None = None, name: str | None = None):
    return client.post("/cases", headers=auth(key),
                       files={"scan": (name or scan.name, scan.read_bytes() if data is None
                                       else data)},
                       data={"prescription": rx or prescription()})


def _release(url: str, case_id: str, lab: str = "Print Lab") -> None:
    """Mark version 1 ready and approved for ``lab`` (as a finished design and an
    orthotist's approval leave it), for tests of what the lab is refused."""
    sessions = connect(url)
    with sessions() as s:
        lab_id = s.scalar(select(Organisation.id).where(Organisation.name == lab))
        s.execute(update(Version).where(Version.case_id == case_id).values(status="ready"))
        s.execute(update(Case).where(Case.id == case_id).values(approved_version=1,
                                                                 lab_org_id=lab_id))
        s.commit()
    sessions.kw["bind"].dispose()


def _utc(stamp: str) -> bool:
    """An ISO 8601 time with a UTC offset (Z or +00:00)."""
    return datetime.fromisoformat(stamp).utcoffset() == timedelta(0)


def _audit(client, keys, **params) -> list[dict]:
    r = client.get("/admin/audit", headers=auth(keys["admin"]), params=params)
    assert r.status_code == 200, r.text
    return r.json()


# 1. NaN or infinity in a prescription.

@pytest.mark.parametrize("rx", [
    {"device": "foot-orthosis", "landmark_overrides": {"heel": ["NaN", 0, 0]}},
    {"device": "foot-orthosis", "landmark_overrides": {"heel": ["Infinity", 0, 0]}},
    {"device": "foot-orthosis", "landmark_overrides": {"heel": [1e308, 0, 0]}},
    {"device": "foot-orthosis", "printer": "custom", "build_volume_mm": ["NaN", 200, 200]},
    {"device": "foot-orthosis", "printer": "custom", "build_volume_mm": ["Infinity", 200, 200]},
    {"device": "foot-orthosis", "printer": "custom", "build_volume_mm": [1e308, 200, 200]},
])
def test_nan_infinity_and_huge_numbers_in_a_prescription_are_refused_at_the_door(service, rx):
    client, keys, _ = service
    # Written as Python's json writes NaN and Infinity: bare tokens.
    text = json.dumps(rx).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    r = _submit(client, keys["clinic"], rx=text)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid_prescription"
    field = "landmark_overrides" if "landmark_overrides" in rx else "build_volume_mm"
    assert field in body["detail"]
    assert "finite" in body["detail"] or "less than or equal" in body["detail"]
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    r = client.post(f"/cases/{case_id}/versions", headers=auth(keys["clinic"]),
                    data={"prescription": text})
    assert r.status_code == 422 and r.json()["code"] == "invalid_prescription"
    assert [v["version"] for v in client.get(f"/cases/{case_id}",
                                             headers=auth(keys["clinic"])).json()["versions"]] \
        == [1]


def test_a_nan_kept_from_before_does_not_break_the_review_data(tmp_path):
    # A version stored before NaN was refused still answers, with null for the NaN.
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    with TestClient(create_app(_settings(tmp_path, url), run_jobs=False)) as client:
        case_id = _submit(client, keys["clinic"]).json()["case_id"]
        sessions = connect(url)
        with sessions() as s:
            version = s.scalars(select(Version).where(Version.case_id == case_id)).one()
            version.prescription = {**version.prescription,
                                    "landmark_overrides": {"heel": [float("nan"), 0.0, 0.0]}}
            s.commit()
        for _ in range(2):
            r = client.get(f"/cases/{case_id}/review.json", headers=auth(keys["clinic"]))
            assert r.status_code == 200, r.text
            assert r.json()["prescription"]["landmark_overrides"]["heel"] == [None, 0.0, 0.0]


# 2. Every refusal in the audit log, with the acting key.

def test_every_refusal_is_audited_with_the_acting_key(service):
    client, keys, url = service
    clinic, lab = keys["clinic"], keys["lab"]
    case_id = _submit(client, clinic).json()["case_id"]
    # The orthotist's refused approvals: not ready (409), no such version (404).
    assert client.post(f"/cases/{case_id}/approve", headers=auth(clinic),
                       json={"version": 1, "lab": "Print Lab"}).status_code == 409
    assert client.post(f"/cases/{case_id}/approve", headers=auth(clinic),
                       json={"version": 9, "lab": "Print Lab"}).status_code == 404
    _release(url, case_id)
    # ...no such lab (422).
    assert client.post(f"/cases/{case_id}/approve", headers=auth(clinic),
                       json={"version": 1, "lab": "No Such Lab"}).status_code == 422
    # A lab key on a case released to it, where only the orthotist may go: six 403s.
    refused = [client.get(f"/cases/{case_id}/report.html", headers=auth(lab)),
               client.get(f"/cases/{case_id}/review.json", headers=auth(lab)),
               client.get(f"/cases/{case_id}/review.glb", headers=auth(lab)),
               client.post(f"/cases/{case_id}/versions", headers=auth(lab),
                           data={"prescription": prescription()}),
               client.delete(f"/cases/{case_id}", headers=auth(lab)),
               client.post(f"/cases/{case_id}/approve", headers=auth(lab),
                           json={"version": 1, "lab": "Print Lab"})]
    assert [r.status_code for r in refused] == [403] * 6
    # A revoked key's 401.
    made = client.post("/admin/keys", headers=auth(keys["admin"]),
                       json={"org": "Clinic A", "role": "orthotist"}).json()
    client.delete(f"/admin/keys/{made['prefix']}", headers=auth(keys["admin"]))
    assert client.get(f"/cases/{case_id}", headers=auth(made["key"])).status_code == 401

    log = _audit(client, keys, case_id=case_id)
    lab_prefix = keys["lab"][:10]
    lab_rows = [e for e in log if e["key_prefix"] == lab_prefix]
    assert sorted((e["method"], e["route"]) for e in lab_rows) == sorted([
        ("GET", "/cases/{case_id}/report.html"), ("GET", "/cases/{case_id}/review.json"),
        ("GET", "/cases/{case_id}/review.glb"), ("POST", "/cases/{case_id}/versions"),
        ("DELETE", "/cases/{case_id}"), ("POST", "/cases/{case_id}/approve")])
    assert {(e["status"], e["action"], e["org"], e["role"]) for e in lab_rows} \
        == {(403, "denied", "Print Lab", "lab")}
    approvals = [(e["status"], e["key_prefix"]) for e in reversed(log)
                 if e["route"] == "/cases/{case_id}/approve" and e["role"] == "orthotist"]
    assert approvals == [(409, clinic[:10]), (404, clinic[:10]), (422, clinic[:10])]
    revoked = [e for e in log if e["key_prefix"] == made["prefix"]]
    assert [(e["status"], e["action"], e["org"]) for e in revoked] \
        == [(401, "denied", "Clinic A")]
    created = next(e for e in log if e["action"] == "create")
    assert created["key_prefix"] == clinic[:10] and created["status"] == 202
    assert _utc(created["at"])
    # Filtered by key and by status, and the admin's own reads are rows too.
    assert {e["status"] for e in _audit(client, keys, key_prefix=lab_prefix)} == {403}
    assert all(e["status"] == 401 for e in _audit(client, keys, status=401))
    assert _audit(client, keys, action="audit", limit=1)[0]["route"] == "/admin/audit"


def test_unauthenticated_requests_to_a_case_are_audited(service):
    client, keys, _ = service
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    assert client.get(f"/cases/{case_id}").status_code == 401
    assert client.get(f"/cases/{case_id}", headers=auth("ofk_wrong")).status_code == 401
    rows = [e for e in _audit(client, keys, case_id=case_id) if e["status"] == 401]
    assert len(rows) == 2 and all(e["key_prefix"] is None for e in rows)


# 3. Authenticate before reading the body; limit failed authentications.

def _raw_upload(port: int, headers: dict[str, str]) -> tuple[float, bytes]:
    """Send only the headers of a 190 MiB multipart upload; the seconds to the first
    bytes of the answer (none of the body sent), and those bytes."""
    body_length = 190 * 1024 * 1024
    lines = [f"POST /cases HTTP/1.1", f"Host: 127.0.0.1:{port}",
             "Content-Type: multipart/form-data; boundary=xyz",
             f"Content-Length: {body_length}", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        begin = time.perf_counter()
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = sock.recv(4096)
        return time.perf_counter() - begin, answer


def test_an_upload_without_a_valid_key_is_refused_before_its_body(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    server = Server({"ORTHOFIT_DATA_DIR": str(tmp_path / "data"),
                     "ORTHOFIT_DATABASE_URL": url, "ORTHOFIT_WORKERS": "1"})
    try:
        for what, headers, status in (
                ("no key", {}, b"401"), ("a wrong key", {"Authorization": "Bearer ofk_wrong"},
                                         b"401"),
                ("a lab key", {"Authorization": f"Bearer {keys['lab']}"}, b"403")):
            seconds, answer = _raw_upload(server.port, headers)
            assert answer.split(b" ")[1] == status, answer
            assert seconds < 0.5, seconds
            print(f"190 MiB upload with {what}: {status.decode()} after "
                  f"{seconds * 1000:.1f} ms, no body sent")
        with httpx.Client(base_url=server.url) as client:
            log = client.get("/admin/audit", headers=auth(keys["admin"]),
                             params={"limit": 3}).json()
        assert [(e["status"], e["route"]) for e in log] == [(403, "/cases")] + \
            [(401, "/cases")] * 2
    finally:
        server.stop()


def test_failed_authentications_are_limited_per_client(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    settings = _settings(tmp_path, url, auth_failures_per_minute=5)
    with TestClient(create_app(settings, run_jobs=False)) as client:
        answers = [client.get("/cases", headers=auth(f"ofk_guess{i}")) for i in range(8)]
        assert [r.status_code for r in answers] == [401] * 5 + [429] * 3
        limited = answers[-1]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.json()["code"] == "rate_limited"
        # Refused before the key is looked at, so a guess cannot be told from a key.
        assert client.get("/cases", headers=auth(keys["clinic"])).status_code == 429
        # Pages that need no key still answer.
        assert client.get("/healthz").status_code == 200


# 4. Bounded query parameters.

@pytest.mark.parametrize("limit", ["-18446744073709551615", "-1", "0", "10001",
                                   "99999999999999999999999"])
def test_audit_limit_out_of_bounds_is_422(service, limit):
    client, keys, _ = service
    r = client.get("/admin/audit", headers=auth(keys["admin"]), params={"limit": limit})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "invalid" and "limit" in r.json()["detail"]


def test_audit_pages_on_with_before(service):
    client, keys, _ = service
    for _ in range(5):
        client.get("/cases", headers=auth(keys["clinic"]))
    first = _audit(client, keys, limit=2)
    second = _audit(client, keys, limit=2, before=first[-1]["id"])
    assert len(first) == len(second) == 2
    assert first[-1]["id"] > second[0]["id"]
    # An id past PostgreSQL's 32-bit integers is refused, not sent to the database.
    assert client.get("/admin/audit", headers=auth(keys["admin"]),
                      params={"before": 2**62}).status_code == 422
    assert client.get("/cases/x/device.stl", headers=auth(keys["clinic"]),
                      params={"version": "-18446744073709551615"}).status_code == 422


# 5. Approval only for a lab that can download.

def test_approval_for_a_lab_whose_only_key_is_revoked_is_refused(service):
    client, keys, url = service
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    _release(url, case_id, lab="Other Lab")
    other_lab = next(o for o in client.get("/admin/organisations",
                                           headers=auth(keys["admin"])).json()
                     if o["name"] == "Other Lab")
    for k in other_lab["keys"]:
        client.delete(f"/admin/keys/{k['prefix']}", headers=auth(keys["admin"]))
    r = client.post(f"/cases/{case_id}/approve", headers=auth(keys["clinic"]),
                    json={"version": 1, "lab": "Other Lab"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "lab_has_no_key" and "Other Lab" in r.json()["detail"]
    # A lab with an active key is approved.
    r = client.post(f"/cases/{case_id}/approve", headers=auth(keys["clinic"]),
                    json={"version": 1, "lab": "Print Lab"})
    assert r.status_code == 200 and r.json()["approved_version"] == 1


# 6. Nothing identifying at rest.

NAME = b"Jane Doe 1980-04-12"


def _stl_with_header(path: Path) -> bytes:
    data = bytearray((SCANS / "child_right_floor_mm_yup.stl").read_bytes())
    data[:80] = NAME.ljust(80, b" ")
    (count,) = struct.unpack_from("<I", data, 80)
    attributes = np.frombuffer(data, dtype=np.uint8, offset=84).reshape(count, 50)
    attributes[:4, 48:] = np.frombuffer(b"JaneDoe!", dtype=np.uint8).reshape(4, 2)
    return bytes(data)


def _ply_with_comments() -> bytes:
    data = FOOT.read_bytes()
    return data.replace(b"format binary_little_endian 1.0\n",
                        b"format binary_little_endian 1.0\ncomment patient " + NAME +
                        b"\nobj_info scanned by Dr Who\n", 1)


@pytest.mark.parametrize("kind", ["stl", "ply"])
def test_the_stored_scan_keeps_no_header_or_comment(service, kind):
    client, keys, url = service
    data = _stl_with_header(FOOT) if kind == "stl" else _ply_with_comments()
    r = _submit(client, keys["clinic"], data=data, name=f"upload.{kind}")
    assert r.status_code == 202, r.text
    case_id = r.json()["case_id"]
    stored = (client.app.state.settings.data_dir / "cases" / case_id / f"scan.{kind}")
    kept = stored.read_bytes()
    assert b"Jane" not in kept and b"1980" not in kept and b"Dr Who" not in kept
    if kind == "stl":
        assert kept[:80] == bytes(80)
    before, after = read_scan_bytes(data), read_scan_bytes(kept, suffix=f".{kind}")
    assert np.array_equal(before.points, after.points)
    assert (before.faces is None and after.faces is None) or \
        np.array_equal(before.faces, after.faces)
    sessions = connect(url)
    with sessions() as s:
        case = s.get(Case, case_id)
        assert case.scan_sha256 == hashlib.sha256(data).hexdigest()  # what was uploaded
        assert case.stored_sha256 == hashlib.sha256(kept).hexdigest()
    sessions.kw["bind"].dispose()


def test_a_deleted_case_cannot_be_read_from_the_sqlite_files(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    marker = "ZQXJ-7731"
    with TestClient(create_app(_settings(tmp_path, url), run_jobs=False)) as client:
        case_id = _submit(client, keys["clinic"],
                          rx=prescription(scan={"case_ref": marker})).json()["case_id"]
        client.post(f"/cases/{case_id}/versions", headers=auth(keys["clinic"]),
                    data={"prescription": prescription(scan={"case_ref": marker},
                                                       thickness_mm=4.0)})
        files = sorted(tmp_path.glob("orthofit.db*"))
        assert any(marker.encode() in f.read_bytes() for f in files)
        assert client.delete(f"/cases/{case_id}", headers=auth(keys["clinic"])) \
            .status_code == 200
        for f in sorted(tmp_path.glob("orthofit.db*")):
            assert marker.encode() not in f.read_bytes(), f.name


def test_a_case_ref_like_a_name_or_a_birth_date_is_warned_about(service, tmp_path, cli):
    client, keys, _ = service
    r = _submit(client, keys["clinic"],
                rx=prescription(scan={"case_ref": "Jane_Doe-1980-04-12"}))
    assert r.status_code == 202
    warnings = r.json()["warnings"]
    assert len(warnings) == 2 and "name" in warnings[0] and "date" in warnings[1]
    assert _submit(client, keys["clinic"]).json()["warnings"] == []
    # The command line says so too, before it reads the scan.
    png = tmp_path / "scan.stl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    result = cli("design", png, "-o", tmp_path / "out", "--case-ref", "doe.jane.19800412")
    assert result.code == 3
    assert "warning: case_ref doe.jane.19800412 looks like a name" in result.stderr
    assert "holds a date" in result.stderr


# 7. A SIGKILLed service takes its design with it; the job runs once more, once.

def test_a_killed_service_leaves_no_design_and_its_job_runs_exactly_once_more(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    env = {"ORTHOFIT_DATA_DIR": str(tmp_path / "data"), "ORTHOFIT_DATABASE_URL": url,
           "ORTHOFIT_WORKERS": "1", "ORTHOFIT_JOB_LEASE_S": "4"}
    first = Server(env)
    second = None
    try:
        with httpx.Client(base_url=first.url, timeout=60) as client:
            case_id = _submit(client, keys["clinic"], scan=LEG,
                              rx=prescription(device="solid-afo")).json()["case_id"]
        deadline = time.monotonic() + 60
        while not design_processes(case_id):
            assert time.monotonic() < deadline, "no design process appeared"
            time.sleep(0.1)
        (pid,) = design_processes(case_id)
        # A second service on the same database leaves the leased job alone.
        second = Server(env)
        time.sleep(6)
        assert design_processes(case_id) == [pid]
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        killed_at = time.monotonic()
        while design_processes(case_id) and time.monotonic() - killed_at < 1.0:
            time.sleep(0.02)
        assert design_processes(case_id) == [], "the design outlived its service by 1 s"
        print(f"design process gone {time.monotonic() - killed_at:.3f} s after SIGKILL")
        # The second service takes the job over once the lease lapses, and runs it once.
        seen: set[int] = set()
        with httpx.Client(base_url=second.url, timeout=60) as client:
            deadline = time.monotonic() + 240
            while True:
                running = design_processes(case_id)
                assert len(running) <= 1, running
                seen.update(running)
                v = next(v for v in client.get(f"/cases/{case_id}", headers=auth(
                    keys["clinic"])).json()["versions"] if v["version"] == 1)
                if v["status"] in ("ready", "failed"):
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert v["status"] == "ready", v
        assert v["attempts"] == 2, v
        assert len(seen) == 1 and pid not in seen
    finally:
        for server in (first, second):
            if server is not None and server.proc.poll() is None:
                server.stop()


# 8. Smaller findings.

def test_a_failed_versions_message_shows_no_server_path(tmp_path):
    url = fresh_database("sqlite", tmp_path)
    keys = make_keys(url)
    settings = _settings(tmp_path, url)
    rx = prescription(printer="custom", build_volume_mm=[60, 60, 60], predict_stiffness=False)
    with TestClient(create_app(settings)) as client:
        case_id = _submit(client, keys["clinic"], rx=rx).json()["case_id"]
        v = wait_for(client, case_id, 1, keys["clinic"])
        assert v["status"] == "failed" and v["exit_code"] == 5, v
        assert "fits_printer" in v["message"]
        assert str(tmp_path) not in v["message"] and "/" not in v["message"], v["message"]
        assert "see the fit report" in v["message"]
        review = client.get(f"/cases/{case_id}/review.json", headers=auth(keys["clinic"]))
        assert "/" not in review.json()["message"]


def test_pages_carry_security_headers_and_case_data_is_not_cached(service):
    client, keys, _ = service
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    page = client.get(f"/cases/{case_id}/review")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self' 'sha256-" in csp  # the import map, by its hash only
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    for path in (f"/cases/{case_id}", "/cases", f"/cases/{case_id}/review.json",
                 f"/cases/{case_id}/device.stl", f"/cases/{case_id}/review"):
        r = client.get(path, headers=auth(keys["clinic"]))
        assert r.headers["cache-control"] == "no-store", (path, r.status_code)
    assert client.get("/admin/audit", headers=auth(keys["admin"])).headers["cache-control"] \
        == "no-store"


def test_every_error_has_one_shape_and_405_names_every_method(service):
    client, keys, _ = service
    h = auth(keys["clinic"])
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    answers = [client.get("/nowhere"), client.get("/cases"),
               client.post(f"/cases/{case_id}/approve", headers=h, json={"version": "x"}),
               client.post(f"/cases/{case_id}/approve", headers={**h, "content-type":
                                                                "application/json"},
                           content=b"{not json"),
               client.get("/cases/x/device.stl?version=abc", headers=h),
               client.patch(f"/cases/{case_id}", headers=h),
               client.post("/cases", headers=h, files={"scan": ("s.ply", bytes(5 * 2**20))},
                           data={"prescription": prescription()})]
    assert [r.status_code for r in answers] == [404, 401, 422, 422, 422, 405, 413]
    for r in answers:
        body = r.json()
        assert set(body) == {"detail", "code"}, body
        assert isinstance(body["detail"], str) and isinstance(body["code"], str)
    allow = {m.strip() for m in answers[5].headers["allow"].split(",")}
    assert {"GET", "DELETE"} <= allow


def test_the_schema_types_the_prescription_and_declares_the_errors(service):
    client, _, _ = service
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/cases"]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].split("/")[-1]
    field = schema["components"]["schemas"][ref]["properties"]["prescription"]
    assert field["contentMediaType"] == "application/json"
    assert field["contentSchema"] == {"$ref": "#/components/schemas/Prescription"}
    assert "landmark_overrides" in schema["components"]["schemas"]["Prescription"]["properties"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if op.get("security"):
                assert {"401", "403", "404", "409", "413", "415", "422", "429"} \
                    <= set(op["responses"]), (method, path)
            for status, response in op["responses"].items():
                if status >= "400":
                    assert response["content"]["application/json"]["schema"]["$ref"] \
                        .endswith("/ErrorPublic"), (method, path, status)


def test_timestamps_carry_their_utc_offset(service):
    client, keys, _ = service
    case_id = _submit(client, keys["clinic"]).json()["case_id"]
    case = client.get(f"/cases/{case_id}", headers=auth(keys["clinic"])).json()
    assert _utc(case["created_at"]) and _utc(case["versions"][0]["created_at"])
    orgs = client.get("/admin/organisations", headers=auth(keys["admin"])).json()
    assert all(_utc(o["created_at"]) for o in orgs)
    assert all(_utc(k["created_at"]) for o in orgs for k in o["keys"])
    assert all(_utc(e["at"]) for e in _audit(client, keys))


@pytest.mark.parametrize("name", ["Clinic\x00C", "Clinic\nC", "\t", " "])
def test_an_organisation_name_with_control_characters_is_refused(service, name, tmp_path, cli):
    client, keys, _ = service
    r = client.post("/admin/keys", headers=auth(keys["admin"]),
                    json={"org": name, "role": "orthotist"})
    assert r.status_code == 422 and r.json()["code"] == "invalid", r.text
    assert all("\x00" not in o["name"] for o in client.get(
        "/admin/organisations", headers=auth(keys["admin"])).json())
    if name.strip():
        env = {"ORTHOFIT_DATA_DIR": str(tmp_path / "d"), "ORTHOFIT_DATABASE_URL": ""}
        result = cli("keys", "create", "--org", name.replace("\x00", "\x01"), "--role",
                     "lab", env=env)
        assert result.code == 2 and "control characters" in result.stderr


def test_the_docs_are_served_from_this_machine(service):
    client, _, _ = service
    if not (ROOT / "service" / "web" / "node_modules" / "swagger-ui-dist").is_dir():
        pytest.skip("swagger-ui-dist is not installed; 'make test' installs it")
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http" not in page.text.replace('http-equiv', '')
    for asset in ("/static/swagger-ui/swagger-ui-bundle.js", "/static/swagger-ui/swagger-ui.css",
                  "/static/docs.js"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert client.get("/redoc", follow_redirects=False).headers["location"] == "/docs"


def test_a_batch_warns_about_a_case_ref_like_a_name(tmp_path, cli):
    png = tmp_path / "scan.stl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("scan,case_ref\nscan.stl,Doe_Jane\n")
    (tmp_path / "insole.yaml").write_text("device: foot-orthosis\n")
    result = cli("batch", manifest, "-o", tmp_path / "out", "-j", "1", "--prescription",
                 tmp_path / "insole.yaml", env={"ORTHOFIT_BROKER_URL": "",
                                                 "ORTHOFIT_DATA_DIR": str(tmp_path / "d")})
    assert result.code == 5, result.stderr
    assert "warning: case_ref Doe_Jane looks like a name" in result.stderr


def test_a_body_past_the_limit_without_a_length_is_cut_off_with_413(service):
    client, keys, _ = service

    def chunks():
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"scan\"; filename=\"s.ply\"\r\n\r\n"
        for _ in range(6):
            yield b"ply\n" + bytes(1024 * 1024)

    r = client.post("/cases", headers={**auth(keys["clinic"]),
                                       "content-type": "multipart/form-data; boundary=xyz"},
                    content=chunks())
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "too_large" and "MB limit" in r.json()["detail"]
    assert client.get("/cases", headers=auth(keys["clinic"])).json() == []


def test_control_characters_in_any_parameter_are_4xx_on_every_database(service):
    # PostgreSQL refuses a NUL in text outright; the parameters refuse it first.
    client, keys, _ = service
    admin, clinic = auth(keys["admin"]), auth(keys["clinic"])
    answers = [client.delete("/admin/keys/%00", headers=admin),
               client.delete("/admin/keys/" + "x" * 300, headers=admin),
               *(client.get("/admin/audit", headers=admin, params={name: "a\x00"})
                 for name in ("org", "case_id", "key_prefix", "action", "since")),
               client.get("/cases/%00", headers=clinic),
               client.get("/cases/%00/device.stl", headers=clinic),
               client.post("/cases/%00/approve", headers=clinic,
                           json={"version": 1, "lab": "Print\x00Lab"}),
               client.get("/static/%00"),
               client.post("/admin/keys", headers=admin, json={"org": "A\x00", "role": "lab"})]
    for r in answers:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert set(r.json()) == {"detail", "code"}
        assert "\x00" not in r.json()["detail"]
