"""The gate every request passes: the key checked from the headers before the body is
read, a per-client limit on failed authentications, the upload limit, security
headers, and one audit row for every request that touches a case or an admin route.

It is an ASGI middleware, so it acts before FastAPI parses a body: a request
without a valid key, or with a key whose role the route does not serve, is
answered at once, whatever it declares or however slowly it sends.  Routes
declare their roles with :class:`service.deps.KeyRoles`; the gate reads that
declaration off the matched route.  The audit row is written after the
answer, with the acting key's prefix, its organisation and role, the route,
the status and a UTC time; refusals are recorded as the action ``denied``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orthofit.settings import Settings

from .db import ApiKey, AuditEntry
from .deps import KeyRoles
from .errors import ApiError, error_response
from .keys import hash_key

__all__ = ["Gate", "Caller", "AuditRecord", "CASE_ID_PATTERN", "DEFAULT_CSP"]

log = logging.getLogger(__name__)

#: What a case id looks like (uuid4 hex); anything else is no case.
CASE_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
#: The pages' content security policy: everything from this service, nothing inline
#: but styles (Swagger UI and the fit report set some), no framing.
DEFAULT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; connect-src 'self' blob: data:; "
               "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer")]
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(frozen=True)
class Caller:
    """The key a request presented, as found in the database."""

    key_id: int
    prefix: str
    org: str
    role: str
    revoked: bool


@dataclass
class AuditRecord:
    """The request's audit row as it is filled in: by the gate, then by the route."""

    method: str
    route: str | None
    case_id: str | None
    action: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    caller: Caller | None = None


class _FailureLimit:
    """Failed authentications per client, in a moving one-minute window (``limits``)."""

    def __init__(self, per_minute: int):
        self.item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        if self.item is None or self.limiter.test(self.item, client):
            return None
        stats = self.limiter.get_window_stats(self.item, client)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def failed(self, client: str) -> None:
        if self.item is not None:
            self.limiter.hit(self.item, client)


class Gate:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app: ASGIApp, *, sessions: sessionmaker, settings: Settings,
                 routes: list[Any]):
        self.app = app
        self.routes = routes
        self.sessions = sessions
        self.max_body = settings.max_upload_bytes
        self.failures = _FailureLimit(settings.auth_failures_per_minute)
        self._roles: dict[int, tuple[str, ...] | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        route, params = self._route(scope)
        case_id = params.get("case_id")
        record = AuditRecord(method=scope["method"], route=getattr(route, "path", None),
                             case_id=case_id if _is_case_id(case_id) else None)
        if case_id is not None and record.case_id is None:
            record.detail["case_id_malformed"] = True
        scope.setdefault("state", {})["audit"] = record
        private = path == "/cases" or path.startswith(("/cases/", "/admin"))
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not (private and k.lower() == b"cache-control")]
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _HEADERS if k not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", DEFAULT_CSP.encode()))
                if private:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = await self._admit(scope, route, record)
            if refusal is not None:
                await refusal(scope, receive, send_with_headers)
            else:
                await self.app(scope, self._limited(scope, receive), send_with_headers)
        finally:
            if private:
                await anyio.to_thread.run_sync(self._audit, record, status)

    # Admission.

    async def _admit(self, scope: Scope, route: Any, record: AuditRecord):
        """None to let the request in; else the answer that refuses it."""
        roles = self._roles_of(route)
        if roles is not None:
            client = (scope.get("client") or ("unknown",))[0]
            wait = self.failures.retry_after(client)
            if wait is not None:
                return error_response(429, f"too many failed authentications from this "
                                           f"address; try again in {wait} s with a valid key",
                                      "rate_limited", {"Retry-After": str(wait)})
            token = _bearer(scope)
            caller = None if token is None else await anyio.to_thread.run_sync(
                self._lookup, token)
            record.caller = caller
            if caller is None or caller.revoked:
                self.failures.failed(client)
                if token is None:
                    detail = "send your API key as 'Authorization: Bearer <key>'"
                else:
                    detail = ("this API key is unknown or revoked; ask your administrator "
                              "for a new one")
                return error_response(401, detail, "unauthenticated",
                                      {"WWW-Authenticate": "Bearer"})
            if caller.role not in roles:
                return error_response(403, f"a {caller.role} key cannot do this; it needs "
                                           f"a {' or '.join(roles)} key", "forbidden")
            scope["state"]["caller"] = caller
        length = _content_length(scope)
        if length is not None and length > self.max_body:
            return error_response(413, self._too_large(), "too_large")
        return None

    def _too_large(self) -> str:
        return (f"the upload is over the service's {self.max_body / 2**20:.0f} MB limit; "
                "decimate the scan in the scanner software and upload it again")

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        """``receive`` that refuses a body (chunked, or lying about its length) past the limit."""
        if scope["method"] not in _BODY_METHODS:
            return receive
        total = 0

        async def limited() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_body:
                    raise ApiError(413, self._too_large(), "too_large")
            return message

        return limited

    def _lookup(self, token: str) -> Caller | None:
        with self.sessions() as session:
            key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token)))
            if key is None:
                return None
            return Caller(key.id, key.prefix, key.org.name, key.role, key.revoked_at is not None)

    # Routes and their roles.

    def _route(self, scope: Scope) -> tuple[Any, dict[str, Any]]:
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child.get("path_params", {})
        return None, {}

    def _roles_of(self, route: Any) -> tuple[str, ...] | None:
        if route is None:
            return None
        if id(route) not in self._roles:
            self._roles[id(route)] = _declared_roles(getattr(route, "dependant", None))
        return self._roles[id(route)]

    # The audit row.

    def _audit(self, record: AuditRecord, status: int) -> None:
        caller = record.caller
        action = "denied" if status >= 400 else (record.action or "request")
        try:
            with self.sessions() as session:
                session.add(AuditEntry(
                    key_id=caller.key_id if caller else None,
                    key_prefix=caller.prefix if caller else None,
                    org=caller.org if caller else None, role=caller.role if caller else None,
                    method=record.method[:8], route=record.route, status=status,
                    action=action, case_id=record.case_id, detail=record.detail or None))
                session.commit()
        except Exception:  # noqa: BLE001 - the answer has gone; the failure is logged
            log.exception("audit: could not record %s %s (%d)", record.method, record.route,
                          status)


def _declared_roles(dependant: Any) -> tuple[str, ...] | None:
    """The roles a route's :class:`KeyRoles` dependency serves; None when it needs no key."""
    if dependant is None:
        return None
    if isinstance(dependant.call, KeyRoles):
        return dependant.call.roles
    for sub in dependant.dependencies:
        roles = _declared_roles(sub)
        if roles is not None:
            return roles
    return None


def _is_case_id(value: Any) -> bool:
    return isinstance(value, str) and CASE_ID_PATTERN.fullmatch(value) is not None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                return token
            return None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
