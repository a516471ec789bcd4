"""The review service's HTTP interface (FastAPI).  Thin routes: no geometry here.

Orthotist keys create, see, review, approve, resubmit and delete their own
clinic's cases; lab keys see only cases released to their lab, and of those
only the approved version's device files and a job sheet; admin keys manage
keys and read the audit log.  Every access to a case is audited.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orthofit import __version__
from orthofit.errors import ScanFileError, validation_problems
from orthofit.io import sniff_format
from orthofit.prescription import Prescription

from . import pages
from .db import ApiKey, AuditEntry, Case, Organisation, Version, connect
from .jobs import JobRunner
from .keys import create_key, find_key, revoke_key
from orthofit.settings import Settings
from .storage import Storage

__all__ = ["create_app"]

log = logging.getLogger(__name__)
WEB = Path(__file__).parent / "web"


class Approval(BaseModel):
    version: int = Field(ge=1)
    lab: str = Field(min_length=1, max_length=100)


class NewKey(BaseModel):
    org: str = Field(min_length=1, max_length=100)
    role: str = Field(pattern="^(orthotist|lab|admin)$")


def _session(request: Request):
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(_session)]


def _caller(request: Request, session: DB) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "send your API key as 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    key = find_key(session, token.strip())
    if key is None:
        raise HTTPException(401, "this API key is unknown or revoked; ask your "
                                 "administrator for a new one",
                            headers={"WWW-Authenticate": "Bearer"})
    return key


Caller = Annotated[ApiKey, Depends(_caller)]


def create_app(settings: Settings | None = None, *, run_jobs: bool = True) -> FastAPI:
    """The app on ``settings`` (from the environment by default)."""
    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sessions = connect(settings.database_url)
    storage = Storage(settings.data_dir)
    runner = JobRunner(settings, sessions, storage)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run_jobs:
            runner.start()
        yield
        if run_jobs:
            runner.stop()

    app = FastAPI(title="orthofit review service", version=__version__, lifespan=lifespan,
                  max_body_size=settings.max_upload_bytes,
                  description="Orthotists submit scans with a prescription, review and "
                              "approve the designed device; print labs download it.")
    app.state.settings, app.state.sessions, app.state.runner = settings, sessions, runner
    if (WEB / "node_modules" / "three").is_dir():
        app.mount("/static/three", StaticFiles(directory=WEB / "node_modules" / "three"),
                  name="three")

    def audit(session: Session, key: ApiKey | None, action: str, case_id: str | None = None,
              **detail: Any) -> None:
        session.add(AuditEntry(key_id=key.id if key else None,
                               org=key.org.name if key else None,
                               role=key.role if key else None, action=action,
                               case_id=case_id, detail=detail or None))
        session.commit()

    def need(key: ApiKey, *roles: str) -> None:
        if key.role not in roles:
            raise HTTPException(403, f"a {key.role} key cannot do this; it needs a "
                                     f"{' or '.join(roles)} key")

    def visible_case(session: Session, key: ApiKey, case_id: str) -> Case:
        case = session.get(Case, case_id)
        if case is not None:
            if key.role == "orthotist" and case.org_id == key.org_id:
                return case
            if (key.role == "lab" and case.lab_org_id == key.org_id
                    and case.approved_version is not None):
                return case
        audit(session, key, "denied", case_id)
        raise HTTPException(404, f"no case {case_id} that this key may see")

    def pick_version(key: ApiKey, case: Case, version: int | None) -> Version:
        if key.role == "lab":
            version = case.approved_version
        elif version is None:
            version = case.approved_version or case.versions[-1].number
        for v in case.versions:
            if v.number == version:
                return v
        raise HTTPException(404, f"case {case.id} has no version {version}")

    def parse_prescription(text: str) -> Prescription:
        try:
            return Prescription.model_validate_json(text)
        except ValidationError as exc:
            problems = validation_problems(exc.errors())
            raise HTTPException(422, "the prescription is invalid: " + "; ".join(problems))

    def queue_version(session: Session, case: Case, rx: Prescription) -> Version:
        number = (session.scalar(select(func.max(Version.number))
                                 .where(Version.case_id == case.id)) or 0) + 1
        data = rx.model_dump(mode="json")
        storage.write(storage.prescription_path(case.id, number),
                      json.dumps(data, indent=2, sort_keys=True).encode())
        version = Version(case_id=case.id, number=number, prescription=data, status="queued")
        session.add(version)
        session.commit()
        runner.notify()
        return version

    # ---------------------------------------------------------------- routes

    @app.get("/healthz")
    def healthz(session: DB) -> dict:
        session.execute(select(1))
        return {"status": "ok", "version": __version__}

    @app.post("/cases", status_code=202)
    async def create_case(key: Caller, session: DB, scan: Annotated[UploadFile, File()],
                          prescription: Annotated[str, Form()]) -> dict:
        need(key, "orthotist")
        rx = parse_prescription(prescription)
        data = await scan.read()
        try:
            fmt = sniff_format(data, Path(scan.filename or "").suffix)
        except ScanFileError as exc:
            raise HTTPException(415, str(exc))
        case = Case(id=uuid.uuid4().hex, org_id=key.org_id, case_ref=rx.scan.case_ref,
                    scan_format=fmt, scan_sha256=_sha256(data))
        storage.write(storage.scan_path(case.id, fmt), data)
        session.add(case)
        session.commit()
        version = queue_version(session, case, rx)
        audit(session, key, "create", case.id, version=version.number, format=fmt)
        return {"case_id": case.id, "version": version.number, "status": version.status,
                "links": _links(case.id)}

    @app.get("/cases")
    def list_cases(key: Caller, session: DB) -> list[dict]:
        need(key, "orthotist", "lab")
        if key.role == "orthotist":
            query = select(Case).where(Case.org_id == key.org_id)
        else:
            query = select(Case).where(Case.lab_org_id == key.org_id,
                                       Case.approved_version.is_not(None))
        cases = list(session.scalars(query.order_by(Case.created_at)))
        audit(session, key, "list", None, count=len(cases))
        return [_case_json(c, key.role) for c in cases]

    @app.get("/cases/{case_id}")
    def get_case(case_id: str, key: Caller, session: DB) -> dict:
        case = visible_case(session, key, case_id)
        audit(session, key, "view", case.id)
        return _case_json(case, key.role)

    @app.post("/cases/{case_id}/versions", status_code=202)
    def resubmit(case_id: str, key: Caller, session: DB,
                 prescription: Annotated[str, Form()]) -> dict:
        need(key, "orthotist")
        case = visible_case(session, key, case_id)
        version = queue_version(session, case, parse_prescription(prescription))
        audit(session, key, "resubmit", case.id, version=version.number)
        return {"case_id": case.id, "version": version.number, "status": version.status,
                "links": _links(case.id)}

    @app.post("/cases/{case_id}/approve")
    def approve(case_id: str, body: Approval, key: Caller, session: DB) -> dict:
        need(key, "orthotist")
        case = visible_case(session, key, case_id)
        version = pick_version(key, case, body.version)
        if version.status != "ready":
            raise HTTPException(409, f"version {version.number} is {version.status}; only a "
                                     "ready version that passed its checks can be approved")
        lab = session.scalar(select(Organisation).where(Organisation.name == body.lab))
        has_lab_key = lab is not None and session.scalar(
            select(func.count(ApiKey.id)).where(ApiKey.org_id == lab.id, ApiKey.role == "lab"))
        if not has_lab_key:
            raise HTTPException(422, f"no print lab named {body.lab!r}; check the lab's name "
                                     "with your administrator")
        case.approved_version, case.lab_org_id = version.number, lab.id
        session.commit()
        audit(session, key, "approve", case.id, version=version.number, lab=lab.name)
        return _case_json(case, key.role)

    def designed(case_id: str, key: ApiKey, session: Session, version: int | None,
                 what: str) -> tuple[Case, Version, Path, dict]:
        """The visible case, the version asked for, its output folder and report.json."""
        case = visible_case(session, key, case_id)
        v = pick_version(key, case, version)
        out = storage.out_dir(case.id, v.number)
        report = _report(out)
        if report is None:
            raise HTTPException(409, f"version {v.number} is {v.status} and has no {what}")
        return case, v, out, report

    def device_file(case_id: str, key: ApiKey, session: Session, version: int | None,
                    name: str, media: str) -> FileResponse:
        case = visible_case(session, key, case_id)
        v = pick_version(key, case, version)
        path = storage.out_dir(case.id, v.number) / name
        if v.status not in ("ready", "failed") or not path.is_file():
            raise HTTPException(409, f"version {v.number} is {v.status} and has no {name} yet")
        audit(session, key, f"download {name}", case.id, version=v.number)
        return FileResponse(path, media_type=media,
                            filename=_file_name(case, v, Path(name).suffix))

    @app.get("/cases/{case_id}/device.stl")
    def device_stl(case_id: str, key: Caller, session: DB, version: int | None = None):
        return device_file(case_id, key, session, version, "device.stl", "model/stl")

    @app.get("/cases/{case_id}/device.3mf")
    def device_3mf(case_id: str, key: Caller, session: DB, version: int | None = None):
        return device_file(case_id, key, session, version, "device.3mf",
                           "model/3mf")

    @app.get("/cases/{case_id}/job-sheet")
    def job_sheet(case_id: str, key: Caller, session: DB, version: int | None = None) -> dict:
        case, v, _, report = designed(case_id, key, session, version, "job sheet")
        audit(session, key, "job sheet", case.id, version=v.number)
        return pages.job_sheet(case.case_ref, v.number, report,
                               files={"stl": _file_name(case, v, ".stl"),
                                      "3mf": _file_name(case, v, ".3mf")})

    @app.get("/cases/{case_id}/report.html", response_class=HTMLResponse)
    def report_html(case_id: str, key: Caller, session: DB, version: int | None = None):
        need(key, "orthotist")
        case, v, out, report = designed(case_id, key, session, version, "report")
        audit(session, key, "report", case.id, version=v.number)
        if (out / "report.html").is_file():
            return HTMLResponse((out / "report.html").read_text())
        return HTMLResponse(pages.report_html(case.case_ref, v.number, report))

    @app.get("/cases/{case_id}/review", response_class=HTMLResponse)
    def review(case_id: str, version: int | None = None):
        # The page holds no case data; it fetches it with the orthotist's key.
        template = (WEB / "review.html").read_text()
        return HTMLResponse(template.replace("{{CASE_ID}}", html.escape(case_id))
                            .replace("{{VERSION}}", "" if version is None else str(version)))

    @app.get("/cases/{case_id}/review.json")
    def review_json(case_id: str, key: Caller, session: DB, version: int | None = None):
        need(key, "orthotist")
        case = visible_case(session, key, case_id)
        v = pick_version(key, case, version)
        out = storage.out_dir(case.id, v.number)
        audit(session, key, "review", case.id, version=v.number)
        return pages.review_data(case, v, _report(out), out, glb=(
            f"/cases/{case.id}/review.glb?version={v.number}"))

    @app.get("/cases/{case_id}/review.glb")
    def review_glb(case_id: str, key: Caller, session: DB, version: int | None = None):
        need(key, "orthotist")
        case, v, out, _ = designed(case_id, key, session, version, "model")
        audit(session, key, "review model", case.id, version=v.number)
        return Response(pages.review_glb(out), media_type="model/gltf-binary")

    @app.get("/static/{name}")
    def static(name: str):
        if name not in ("review.js", "review.css"):
            raise HTTPException(404, "no such file")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(WEB / name, media_type=media)

    @app.delete("/cases/{case_id}")
    def delete_case(case_id: str, key: Caller, session: DB) -> dict:
        need(key, "orthotist")
        case = visible_case(session, key, case_id)
        runner.cancel([v.id for v in case.versions])
        session.delete(case)
        session.commit()
        storage.delete_case(case_id)
        audit(session, key, "delete", case_id)
        return {"case_id": case_id, "deleted": True}

    # ------------------------------------------------------------------ admin

    @app.post("/admin/keys", status_code=201)
    def admin_create_key(body: NewKey, key: Caller, session: DB) -> dict:
        need(key, "admin")
        try:
            new, token = create_key(session, body.org, body.role)
        except ValueError as exc:
            raise HTTPException(422, str(exc))
        audit(session, key, "create key", None, org=body.org, role=body.role,
              key_prefix=new.prefix)
        return {"key": token, "prefix": new.prefix, "org": body.org, "role": body.role,
                "note": "shown once; store it now"}

    @app.delete("/admin/keys/{prefix}")
    def admin_revoke_key(prefix: str, key: Caller, session: DB) -> dict:
        need(key, "admin")
        try:
            revoked = revoke_key(session, prefix)
        except LookupError as exc:
            raise HTTPException(404, str(exc))
        audit(session, key, "revoke key", None, key_prefix=revoked.prefix)
        return {"prefix": revoked.prefix, "revoked": True}

    @app.get("/admin/organisations")
    def admin_organisations(key: Caller, session: DB) -> list[dict]:
        need(key, "admin")
        keys = list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
        return [{"name": org.name, "created_at": org.created_at.isoformat(),
                 "keys": [{"prefix": k.prefix, "role": k.role,
                           "created_at": k.created_at.isoformat(),
                           "revoked": k.revoked_at is not None}
                          for k in keys if k.org_id == org.id]}
                for org in session.scalars(select(Organisation).order_by(Organisation.name))]

    @app.get("/admin/audit")
    def admin_audit(key: Caller, session: DB, case_id: str | None = None,
                    limit: int = 1000) -> list[dict]:
        need(key, "admin")
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(min(limit, 10000))
        if case_id:
            query = query.where(AuditEntry.case_id == case_id)
        return [{"at": e.at.isoformat(), "org": e.org, "role": e.role, "action": e.action,
                 "case_id": e.case_id, "detail": e.detail} for e in session.scalars(query)]

    return app


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _links(case_id: str) -> dict[str, str]:
    base = f"/cases/{case_id}"
    return {"self": base, "review": f"{base}/review", "device.stl": f"{base}/device.stl",
            "device.3mf": f"{base}/device.3mf", "job-sheet": f"{base}/job-sheet",
            "report.html": f"{base}/report.html"}


def _file_name(case: Case, version: Version, suffix: str) -> str:
    device = version.prescription.get("device", "device")
    return f"{case.case_ref}_{version.side or 'side-unknown'}_{device}_v{version.number}{suffix}"


def _report(out: Path) -> dict | None:
    try:
        return json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None


def _case_json(case: Case, role: str) -> dict:
    approved = next((v for v in case.versions if v.number == case.approved_version), None)
    if role == "lab":
        return {"case_id": case.id, "case_ref": case.case_ref, "approved_version":
                case.approved_version, "side": approved.side if approved else None,
                "device": approved.prescription.get("device") if approved else None,
                "links": {k: v for k, v in _links(case.id).items()
                          if k in ("self", "device.stl", "device.3mf", "job-sheet")}}
    return {"case_id": case.id, "case_ref": case.case_ref,
            "approved_version": case.approved_version,
            "created_at": case.created_at.isoformat(),
            "versions": [{"version": v.number, "status": v.status, "attempts": v.attempts,
                          "exit_code": v.exit_code, "reason": v.reason, "message": v.message,
                          "side": v.side, "device": v.prescription.get("device"),
                          "approved": v.number == case.approved_version,
                          "links": {k: f"{u}?version={v.number}"
                                    for k, u in _links(case.id).items() if k != "self"}}
                         for v in case.versions],
            "links": _links(case.id)}
