"""The routes' dependencies, as ``Annotated`` aliases: settings, session, storage, the
job runner, the caller's key by role, and the audit note.

The key itself is checked by :class:`service.gate.Gate` from the headers, before
the body is read; :class:`KeyRoles` is where a route declares which roles it
serves (the gate reads that declaration) and hands the route the key's record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from orthofit.settings import Settings

from .db import ApiKey
from .errors import ApiError
from .jobs import JobRunner
from .storage import Storage

__all__ = ["SettingsDep", "SessionDep", "StorageDep", "RunnerDep", "KeyRoles", "OrthotistKey",
           "CaseKey", "AdminKey", "AuditNote", "AuditDep"]

# Declares the HTTP bearer scheme in the OpenAPI schema; the gate does the checking.
bearer = HTTPBearer(auto_error=False, description="An API key: 'Authorization: Bearer <key>'.")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]


class KeyRoles:
    """The key of a caller in one of ``roles``, as the gate admitted it."""

    def __init__(self, *roles: str):
        self.roles = roles

    def __call__(self, request: Request, session: SessionDep,
                 _credentials: Annotated[HTTPAuthorizationCredentials | None,
                                         Depends(bearer)] = None) -> ApiKey:
        caller = getattr(request.state, "caller", None)
        key = session.get(ApiKey, caller.key_id) if caller and caller.key_id else None
        if key is None or key.revoked_at is not None or key.role not in self.roles:
            # The gate refuses these first; this holds if a route is reached another way.
            raise ApiError(401, "send a valid API key as 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})
        return key


OrthotistKey = Annotated[ApiKey, Depends(KeyRoles("orthotist"))]
CaseKey = Annotated[ApiKey, Depends(KeyRoles("orthotist", "lab"))]
AdminKey = Annotated[ApiKey, Depends(KeyRoles("admin"))]


class AuditNote:
    """What a route did, for the request's audit row (the gate writes the row)."""

    def __init__(self, request: Request):
        self._request = request

    def __call__(self, action: str, case_id: str | None = None, **detail: Any) -> None:
        note = self._request.state.audit
        note.action = action
        if case_id is not None:
            note.case_id = case_id
        note.detail.update(detail)


AuditDep = Annotated[AuditNote, Depends(AuditNote)]
