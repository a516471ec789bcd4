"""How the service refuses: one error type, one body shape, one handler.

Every error answer, whoever raises it (a route, the request validation, the
router's 404 and 405, the gate's 401, 403, 413 and 429, an
:class:`~orthofit.errors.OrthofitError` from the library), has the body
``{"detail": str, "code": str}``: ``detail`` says what is wrong and what to
do, for a clinician; ``code`` is a stable word a program can branch on.
No message carries a server file path.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from orthofit.errors import (CannotServeError, CheckFailedError, OrthofitError, ScanFileError,
                             UsageError, validation_problems)

__all__ = ["ApiError", "CODES", "error_response", "handle_error", "install", "SafeJSONResponse"]

log = logging.getLogger(__name__)

#: The code each status gets when the raiser names none.
CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
         500: "internal_error"}

# Library errors: the HTTP status and code each one answers.
_LIBRARY = [(UsageError, 422, "invalid_prescription"), (ScanFileError, 415, "not_a_scan"),
            (CannotServeError, 422, "cannot_serve"), (CheckFailedError, 409, "checks_failed")]


class ApiError(HTTPException):
    """A refusal with its status, a clinician's message and a code."""

    def __init__(self, status_code: int, detail: str, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(status_code, detail, headers=headers)
        self.code = code or CODES.get(status_code, "error")


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """JSON that never fails on a NaN or an infinity kept from before they were refused."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:
            return json.dumps(_finite(content), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode()


def error_response(status: int, detail: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code or CODES.get(status, "error")},
                        status_code=status, headers=headers)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.state.api_routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


async def handle_error(request: Request, exc: Exception) -> JSONResponse:
    """The one handler: every error as ``{"detail": str, "code": str}``."""
    if isinstance(exc, RequestValidationError):
        problems = validation_problems(list(exc.errors()))
        return error_response(422, "the request is invalid: " + "; ".join(problems), "invalid")
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such page; the API is described at /docs"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not served here; use {headers['Allow']}"
        return error_response(exc.status_code, str(detail), getattr(exc, "code", None),
                              headers)
    if isinstance(exc, OrthofitError):
        for kind, status, code in _LIBRARY:
            if isinstance(exc, kind):
                return error_response(status, str(exc), code)
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error; the service logged it, please report it",
                          "internal_error")


def install(app) -> None:
    """Route every error through :func:`handle_error`."""
    for kind in (StarletteHTTPException, RequestValidationError, OrthofitError, Exception):
        app.add_exception_handler(kind, handle_error)
