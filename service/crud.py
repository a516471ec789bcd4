"""What the routes do to the records: find what a key may see, queue, approve, delete,
and shape the answers.  No HTTP here but the refusals (:class:`ApiError`), and no
geometry: scans are sniffed and stripped of their headers by :mod:`orthofit.io`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orthofit.errors import ScanFileError, validation_problems
from orthofit.io import sniff_format, strip_scan_metadata
from orthofit.prescription import Prescription, case_ref_warnings

from .db import ApiKey, AuditEntry, Case, Organisation, Version, forget
from .errors import ApiError
from .gate import CASE_ID_PATTERN
from .jobs import JobRunner
from .schemas import (AuditEntryPublic, CasePublic, KeySummaryPublic, LabCasePublic,
                      OrganisationPublic, VersionPublic)
from .storage import Storage

__all__ = ["visible_case", "cases_for", "created", "pick_version", "parse_prescription", "create_case",
           "queue_version", "approve", "delete_case", "case_public", "links", "file_name",
           "report_of", "designed", "audit_entries", "organisations"]

_LAB_LINKS = ("self", "device.stl", "device.3mf", "job-sheet")


def visible_case(session: Session, key: ApiKey, case_id: str) -> Case:
    """The case if ``key`` may see it; else 404, the same whether it exists or not."""
    if not CASE_ID_PATTERN.fullmatch(case_id):
        raise ApiError(404, "that is not a case id: a case id is 32 hex digits, as the "
                            "upload answered", "case_not_found")
    case = session.get(Case, case_id)
    if case is not None:
        if key.role == "orthotist" and case.org_id == key.org_id:
            return case
        if (key.role == "lab" and case.lab_org_id == key.org_id
                and case.approved_version is not None):
            return case
    raise ApiError(404, f"no case {case_id[:40]} that this key may see; check the case id",
                   "case_not_found")


def cases_for(session: Session, key: ApiKey) -> list[Case]:
    """A clinic's own cases, or the approved cases released to a lab."""
    if key.role == "orthotist":
        query = select(Case).where(Case.org_id == key.org_id)
    else:
        query = select(Case).where(Case.lab_org_id == key.org_id,
                                   Case.approved_version.is_not(None))
    return list(session.scalars(query.order_by(Case.created_at)))


def pick_version(key: ApiKey, case: Case, version: int | None) -> Version:
    """The version asked for; a lab always gets the approved one."""
    if key.role == "lab":
        version = case.approved_version
    elif version is None:
        version = case.approved_version or case.versions[-1].number
    for v in case.versions:
        if v.number == version:
            return v
    raise ApiError(404, f"case {case.id} has no version {version}; its versions are "
                        f"{', '.join(str(v.number) for v in case.versions)}",
                   "version_not_found")


def parse_prescription(text: str) -> Prescription:
    try:
        return Prescription.model_validate_json(text)
    except ValidationError as exc:
        problems = validation_problems(exc.errors())
        raise ApiError(422, "the prescription is invalid: " + "; ".join(problems),
                       "invalid_prescription") from None


def create_case(session: Session, storage: Storage, runner: JobRunner, key: ApiKey,
                rx: Prescription, data: bytes, filename: str) -> tuple[Case, Version]:
    """A new case from an uploaded scan, stored without its headers, and its version 1."""
    try:
        fmt = sniff_format(data, Path(filename).suffix)
        stored = strip_scan_metadata(data, fmt)
    except ScanFileError as exc:
        raise ApiError(415, str(exc), "not_a_scan") from None
    case = Case(id=uuid.uuid4().hex, org_id=key.org_id, case_ref=rx.scan.case_ref,
                scan_format=fmt, scan_sha256=hashlib.sha256(data).hexdigest(),
                stored_sha256=hashlib.sha256(stored).hexdigest())
    storage.write(storage.scan_path(case.id, fmt), stored)
    session.add(case)
    session.commit()
    return case, queue_version(session, storage, runner, case, rx)


def queue_version(session: Session, storage: Storage, runner: JobRunner, case: Case,
                  rx: Prescription) -> Version:
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


def created(case: Case, version: Version, rx: Prescription) -> dict:
    """The answer to an accepted upload or resubmission."""
    return {"case_id": case.id, "version": version.number, "status": version.status,
            "links": links(case.id), "warnings": case_ref_warnings(rx.scan.case_ref)}


def approve(session: Session, key: ApiKey, case: Case, number: int, lab_name: str) -> Version:
    """Release a ready version to a print lab that has an active key to download it."""
    version = pick_version(key, case, number)
    if version.status != "ready":
        raise ApiError(409, f"version {version.number} is {version.status}; only a ready "
                            "version that passed its checks can be approved",
                       "version_not_ready")
    lab = session.scalar(select(Organisation).where(Organisation.name == lab_name))
    lab_keys = [] if lab is None else list(session.scalars(
        select(ApiKey).where(ApiKey.org_id == lab.id, ApiKey.role == "lab")))
    if not lab_keys:
        raise ApiError(422, f"no print lab named {lab_name!r}; check the lab's name with "
                            "your administrator", "lab_not_found")
    if all(k.revoked_at is not None for k in lab_keys):
        raise ApiError(422, f"print lab {lab_name!r} has no active key, so it could not "
                            "download the device; ask your administrator to give the lab a "
                            "new key, then approve again", "lab_has_no_key")
    case.approved_version, case.lab_org_id = version.number, lab.id
    session.commit()
    return version


def delete_case(session: Session, storage: Storage, runner: JobRunner, case: Case) -> None:
    """Remove a case's rows and files; nothing of it stays readable in the database files."""
    runner.cancel([v.id for v in case.versions])
    case_id = case.id
    session.delete(case)
    session.commit()
    storage.delete_case(case_id)
    session.close()
    forget(session.get_bind())


def links(case_id: str) -> dict[str, str]:
    base = f"/cases/{case_id}"
    return {"self": base, "review": f"{base}/review", "device.stl": f"{base}/device.stl",
            "device.3mf": f"{base}/device.3mf", "job-sheet": f"{base}/job-sheet",
            "report.html": f"{base}/report.html"}


def file_name(case: Case, version: Version, suffix: str) -> str:
    device = version.prescription.get("device", "device")
    return f"{case.case_ref}_{version.side or 'side-unknown'}_{device}_v{version.number}{suffix}"


def report_of(out: Path) -> dict | None:
    try:
        return json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None


def designed(session: Session, storage: Storage, key: ApiKey, case_id: str,
             version: int | None, what: str) -> tuple[Case, Version, Path, dict]:
    """The visible case, the version asked for, its output folder and report.json."""
    case = visible_case(session, key, case_id)
    v = pick_version(key, case, version)
    out = storage.out_dir(case.id, v.number)
    report = report_of(out) if v.status in ("ready", "failed") else None
    if report is None:
        raise ApiError(409, f"version {v.number} is {v.status} and has no {what}",
                       "no_design")
    return case, v, out, report


def case_public(case: Case, role: str) -> CasePublic | LabCasePublic:
    approved = next((v for v in case.versions if v.number == case.approved_version), None)
    if role == "lab":
        return LabCasePublic(
            case_id=case.id, case_ref=case.case_ref, approved_version=case.approved_version,
            side=approved.side if approved else None,
            device=approved.prescription.get("device") if approved else None,
            links={k: v for k, v in links(case.id).items() if k in _LAB_LINKS})
    return CasePublic(
        case_id=case.id, case_ref=case.case_ref, approved_version=case.approved_version,
        created_at=case.created_at, links=links(case.id),
        versions=[VersionPublic(
            version=v.number, status=v.status, attempts=v.attempts, exit_code=v.exit_code,
            reason=v.reason, message=v.message, side=v.side,
            device=v.prescription.get("device"), approved=v.number == case.approved_version,
            created_at=v.created_at, finished_at=v.finished_at,
            links={k: f"{u}?version={v.number}" for k, u in links(case.id).items()
                   if k != "self"}) for v in case.versions])


def audit_entries(session: Session, *, limit: int, before: int | None = None,
                  case_id: str | None = None, org: str | None = None,
                  key_prefix: str | None = None, action: str | None = None,
                  status: int | None = None, since: datetime | None = None
                  ) -> list[AuditEntryPublic]:
    """The audit log, newest first, filtered; page on with ``before`` = the last id."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    for column, value in ((AuditEntry.case_id, case_id), (AuditEntry.org, org),
                          (AuditEntry.key_prefix, key_prefix), (AuditEntry.action, action),
                          (AuditEntry.status, status)):
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    return [AuditEntryPublic(id=e.id, at=e.at, key_prefix=e.key_prefix, org=e.org, role=e.role,
                             method=e.method, route=e.route, status=e.status, action=e.action,
                             case_id=e.case_id, detail=e.detail)
            for e in session.scalars(query)]


def organisations(session: Session) -> list[OrganisationPublic]:
    keys = list(session.scalars(select(ApiKey).order_by(ApiKey.id)))
    return [OrganisationPublic(
        name=org.name, created_at=org.created_at,
        keys=[KeySummaryPublic(prefix=k.prefix, role=k.role, created_at=k.created_at,
                               revoked=k.revoked_at is not None)
              for k in keys if k.org_id == org.id])
        for org in session.scalars(select(Organisation).order_by(Organisation.name))]
