"""Admin: keys, organisations and the audit log."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BeforeValidator

from .. import crud
from ..deps import AdminKey, AuditDep, SessionDep
from ..errors import ApiError
from ..keys import create_key, revoke_key
from ..schemas import (KEY_PATTERN, MAX_AUDIT_LIMIT, TEXT_PATTERN, AuditEntryPublic, KeyCreate,
                       KeyCreatedPublic, KeyRevokedPublic, OrganisationPublic)
from .common import ERRORS

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERRORS)


def _iso_time(value: object) -> object:
    """Only ISO 8601 times (pydantic alone would read '0.5' as a Unix time)."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}[T ]", value):
        raise ValueError("give a time as ISO 8601 with its offset, e.g. 2026-12-01T08:00:00Z")
    return value


Time = Annotated[AwareDatetime, BeforeValidator(_iso_time)]


@router.post("/keys", status_code=201, response_model=KeyCreatedPublic)
def create(body: KeyCreate, key: AdminKey, session: SessionDep, audit: AuditDep) -> dict:
    """A new key for an organisation (created if new): shown once."""
    try:
        new, token = create_key(session, body.org, body.role)
    except ValueError as exc:
        raise ApiError(422, str(exc), "invalid") from None
    audit("create key", org=body.org, role=body.role, key_prefix=new.prefix)
    return {"key": token, "prefix": new.prefix, "org": body.org, "role": body.role,
            "note": "shown once; store it now"}


@router.delete("/keys/{prefix}", response_model=KeyRevokedPublic)
def revoke(prefix: Annotated[str, Path(max_length=100, pattern=KEY_PATTERN,
                                       description="The key's prefix, or the whole key.")],
           key: AdminKey, session: SessionDep, audit: AuditDep) -> dict:
    """Revoke a key at once, by its prefix."""
    try:
        revoked = revoke_key(session, prefix)
    except LookupError as exc:
        raise ApiError(404, str(exc), "key_not_found") from None
    audit("revoke key", key_prefix=revoked.prefix)
    return {"prefix": revoked.prefix, "revoked": True}


@router.get("/organisations", response_model=list[OrganisationPublic])
def organisations(key: AdminKey, session: SessionDep, audit: AuditDep):
    """Every organisation with its keys (prefixes only)."""
    audit("organisations")
    return crud.organisations(session)


@router.get("/audit", response_model=list[AuditEntryPublic])
def audit_log(key: AdminKey, session: SessionDep, audit: AuditDep,
              limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT)] = 1000,
              before: Annotated[int | None, Query(ge=1, le=2**31 - 1, description=(
                  "Only entries older than this id: the last id of the page before."))] = None,
              case_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
              org: Annotated[str | None, Query(max_length=100, pattern=TEXT_PATTERN)] = None,
              key_prefix: Annotated[str | None, Query(max_length=16, pattern=KEY_PATTERN)
                                    ] = None,
              action: Annotated[str | None, Query(max_length=64, pattern=TEXT_PATTERN)] = None,
              status: Annotated[int | None, Query(ge=100, le=599)] = None,
              since: Annotated[Time | None, Query(description=(
                  "Only entries at or after this time (ISO 8601 with offset)."))] = None):
    """The audit log, newest first: one entry per request that touched a case or an
    admin route, allowed or refused."""
    audit("audit")
    return crud.audit_entries(session, limit=limit, before=before, case_id=case_id, org=org,
                              key_prefix=key_prefix, action=action, status=status,
                              since=since)
