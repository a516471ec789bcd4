"""Cases: orthotists upload, resubmit, approve and delete; labs download what was approved."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse

from .. import crud, pages
from ..deps import AuditDep, CaseKey, OrthotistKey, RunnerDep, SessionDep, StorageDep
from ..errors import ApiError
from ..schemas import (ApprovalCreate, CaseCreatedPublic, CaseDeletedPublic, CasePublic,
                       JobSheetPublic, LabCasePublic)
from .common import ERRORS, VersionQuery

__all__ = ["router"]

router = APIRouter(prefix="/cases", tags=["cases"], responses=ERRORS)

# The prescription travels as a form field holding JSON: the CLI's schema.
_RX_SCHEMA = {"type": "string", "contentMediaType": "application/json",
              "contentSchema": {"$ref": "#/components/schemas/Prescription"},
              "description": "The prescription as JSON, the same schema as the CLI's "
                             "(orthofit schema prescription)."}
PrescriptionForm = Annotated[str, Form(json_schema_extra=_RX_SCHEMA, max_length=1_000_000)]


@router.post("", status_code=202, response_model=CaseCreatedPublic)
async def create_case(key: OrthotistKey, session: SessionDep, storage: StorageDep,
                      runner: RunnerDep, audit: AuditDep,
                      scan: Annotated[UploadFile, File(description="The raw scan: STL, OBJ, "
                                                       "PLY, OFF, GLB, PCD or XYZ.")],
                      prescription: PrescriptionForm) -> dict:
    """Upload a scan with its prescription; the design is queued (202)."""
    rx = crud.parse_prescription(prescription)
    data = await scan.read()
    case, version = crud.create_case(session, storage, runner, key, rx, data,
                                     scan.filename or "")
    audit("create", case.id, version=version.number, format=case.scan_format)
    return crud.created(case, version, rx)


@router.get("", response_model=list[CasePublic | LabCasePublic])
def list_cases(key: CaseKey, session: SessionDep, audit: AuditDep):
    """The cases this key may see: a clinic's own, or those released to a lab."""
    cases = crud.cases_for(session, key)
    audit("list", count=len(cases))
    return [crud.case_public(c, key.role) for c in cases]


@router.get("/{case_id}", response_model=CasePublic | LabCasePublic)
def get_case(case_id: str, key: CaseKey, session: SessionDep, audit: AuditDep):
    """One case: every version for its clinic, the approved one for its lab."""
    case = crud.visible_case(session, key, case_id)
    audit("view")
    return crud.case_public(case, key.role)


@router.post("/{case_id}/versions", status_code=202, response_model=CaseCreatedPublic)
def resubmit(case_id: str, key: OrthotistKey, session: SessionDep, storage: StorageDep,
             runner: RunnerDep, audit: AuditDep, prescription: PrescriptionForm) -> dict:
    """A changed prescription for the same scan: a new version; older ones stay."""
    case = crud.visible_case(session, key, case_id)
    rx = crud.parse_prescription(prescription)
    version = crud.queue_version(session, storage, runner, case, rx)
    audit("resubmit", version=version.number)
    return crud.created(case, version, rx)


@router.post("/{case_id}/approve", response_model=CasePublic)
def approve(case_id: str, body: ApprovalCreate, key: OrthotistKey, session: SessionDep,
            audit: AuditDep):
    """Release a ready version to a print lab with an active key."""
    case = crud.visible_case(session, key, case_id)
    version = crud.approve(session, key, case, body.version, body.lab)
    audit("approve", version=version.number, lab=body.lab)
    return crud.case_public(case, key.role)


@router.delete("/{case_id}", response_model=CaseDeletedPublic)
def delete_case(case_id: str, key: OrthotistKey, session: SessionDep, storage: StorageDep,
                runner: RunnerDep, audit: AuditDep) -> dict:
    """Remove the case, its scan and every output."""
    case = crud.visible_case(session, key, case_id)
    crud.delete_case(session, storage, runner, case)
    audit("delete")
    return {"case_id": case_id, "deleted": True}


def _device(case_id: str, key, session, storage, audit, version: int | None,
            name: str, media: str) -> FileResponse:
    case = crud.visible_case(session, key, case_id)
    v = crud.pick_version(key, case, version)
    path = storage.out_dir(case.id, v.number) / name
    if v.status not in ("ready", "failed") or not path.is_file():
        raise ApiError(409, f"version {v.number} is {v.status} and has no {name} yet",
                       "no_design")
    audit(f"download {name}", version=v.number)
    return FileResponse(path, media_type=media,
                        filename=crud.file_name(case, v, path.suffix))


def _file(media: str) -> dict:
    return {200: {"content": {media: {"schema": {"type": "string", "format": "binary"}}},
                  "description": "The file, named by case reference, side, device and "
                                 "version."}}


@router.get("/{case_id}/device.stl", response_class=FileResponse, responses=_file("model/stl"))
def device_stl(case_id: str, key: CaseKey, session: SessionDep, storage: StorageDep,
               audit: AuditDep, version: VersionQuery = None):
    """The device as binary STL (mm); a lab gets the approved version."""
    return _device(case_id, key, session, storage, audit, version, "device.stl", "model/stl")


@router.get("/{case_id}/device.3mf", response_class=FileResponse, responses=_file("model/3mf"))
def device_3mf(case_id: str, key: CaseKey, session: SessionDep, storage: StorageDep,
               audit: AuditDep, version: VersionQuery = None):
    """The device as 3MF; a lab gets the approved version."""
    return _device(case_id, key, session, storage, audit, version, "device.3mf", "model/3mf")


@router.get("/{case_id}/job-sheet", response_model=JobSheetPublic)
def job_sheet(case_id: str, key: CaseKey, session: SessionDep, storage: StorageDep,
              audit: AuditDep, version: VersionQuery = None) -> dict:
    """What the print lab needs: material, printer, orientation, mass, file names."""
    case, v, _, report = crud.designed(session, storage, key, case_id, version, "job sheet")
    audit("job sheet", version=v.number)
    return pages.job_sheet(case.case_ref, v.number, report,
                           files={"stl": crud.file_name(case, v, ".stl"),
                                  "3mf": crud.file_name(case, v, ".3mf")})

