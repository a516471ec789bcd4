"""What the routers share: the error answers every keyed operation declares."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from ..schemas import MAX_VERSION

__all__ = ["ERRORS", "PUBLIC_ERRORS", "VersionQuery"]

_WHY = {400: "The body could not be parsed.",
        401: "No key, or an unknown or revoked one.",
        403: "The key's role cannot do this.",
        404: "No such case or version that this key may see.",
        409: "The version is not in a state that allows this.",
        413: "The upload is over the service's limit.",
        415: "The file is not a scan orthofit reads.",
        422: "The request or the prescription is invalid.",
        429: "Too many failed authentications from this address."}


def _error(status: int) -> dict[str, Any]:
    # Declared by reference (app._openapi adds ErrorPublic): a model here would be
    # given the media type of the route's own answer, HTML on the page routes.
    response: dict[str, Any] = {"description": _WHY[status], "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}}}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                    "description": "Bearer"}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                               "description": "Seconds to wait."}}
    return response


#: Every answer a keyed operation can give besides its own.
ERRORS: dict[int | str, dict[str, Any]] = {s: _error(s) for s in sorted(_WHY)}
#: Those of an operation that needs no key.
PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {s: _error(s) for s in (404, 422)}

VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_VERSION,
                                           description="A version number; default the "
                                                       "approved one, else the latest.")]
