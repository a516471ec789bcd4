"""The site around the API: health, and the API's documentation served from this
machine (Swagger UI from the npm package ``swagger-ui-dist``, no CDN)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from sqlalchemy import select

from ..deps import SessionDep
from ..schemas import HealthPublic
from .review import WEB

__all__ = ["router"]

router = APIRouter(tags=["site"])


@router.get("/healthz", response_model=HealthPublic)
def healthz(session: SessionDep) -> dict:
    """The service and its database answer."""
    from orthofit import __version__

    session.execute(select(1))
    return {"status": "ok", "version": __version__}


@router.get("/docs", include_in_schema=False)
def docs():
    return FileResponse(WEB / "docs.html", media_type="text/html")


@router.get("/redoc", include_in_schema=False)
def redoc():
    return RedirectResponse("/docs")
