"""Review: the orthotist's 3D review page, its data and model, and the fit report.

The page itself holds no case data and needs no key: it fetches the data with
the orthotist's key, which it keeps for the browser tab only.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from pathlib import Path as FilePath

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, HTMLResponse, Response

from .. import crud, pages
from ..deps import AuditDep, OrthotistKey, SessionDep, StorageDep
from ..errors import ApiError
from ..gate import DEFAULT_CSP
from ..schemas import ReviewPublic
from .common import ERRORS, PUBLIC_ERRORS, VersionQuery

__all__ = ["router", "WEB"]

WEB = FilePath(__file__).resolve().parents[1] / "web"
router = APIRouter(tags=["review"])
_HTML = {200: {"content": {"text/html": {"schema": {"type": "string"}}}}}


def _page_csp(template: str) -> str:
    """The page's policy, allowing its one inline script (the import map) by its hash."""
    hashes = [base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
              for body in re.findall(r"<script type=\"importmap\">(.*?)</script>", template,
                                     flags=re.S)]
    allowed = " ".join(f"'sha256-{h}'" for h in hashes)
    return DEFAULT_CSP.replace("script-src 'self'", f"script-src 'self' {allowed}")


_TEMPLATE = (WEB / "review.html").read_text()
_REVIEW_CSP = _page_csp(_TEMPLATE)


@router.get("/cases/{case_id}/review", response_class=HTMLResponse,
            responses={**PUBLIC_ERRORS, **_HTML})
def review_page(case_id: str, audit: AuditDep, version: VersionQuery = None):
    """The 3D review page (it asks for the orthotist's key and fetches the data)."""
    audit("review page")
    page = (_TEMPLATE.replace("{{CASE_ID}}", html.escape(case_id))
            .replace("{{VERSION}}", "" if version is None else str(version)))
    return HTMLResponse(page, headers={"Content-Security-Policy": _REVIEW_CSP})


@router.get("/cases/{case_id}/review.json", response_model=ReviewPublic, responses=ERRORS)
def review_json(case_id: str, key: OrthotistKey, session: SessionDep, storage: StorageDep,
                audit: AuditDep, version: VersionQuery = None) -> dict:
    """The review page's data: status, checks, measurements, stiffness, the model's link."""
    case = crud.visible_case(session, key, case_id)
    v = crud.pick_version(key, case, version)
    out = storage.out_dir(case.id, v.number)
    audit("review", version=v.number)
    return pages.review_data(case, v, crud.report_of(out), out,
                             glb=f"/cases/{case.id}/review.glb?version={v.number}")


@router.get("/cases/{case_id}/review.glb", response_class=Response,
            responses={**ERRORS, 200: {"content": {"model/gltf-binary": {
                "schema": {"type": "string", "format": "binary"}}}}})
def review_glb(case_id: str, key: OrthotistKey, session: SessionDep, storage: StorageDep,
               audit: AuditDep, version: VersionQuery = None):
    """The device over the limb as GLB (metres, Y up)."""
    case, v, out, _ = crud.designed(session, storage, key, case_id, version, "model")
    audit("review model", version=v.number)
    return Response(pages.review_glb(out), media_type="model/gltf-binary")


@router.get("/cases/{case_id}/report.html", response_class=HTMLResponse,
            responses={**ERRORS, **_HTML})
def report_html(case_id: str, key: OrthotistKey, session: SessionDep, storage: StorageDep,
                audit: AuditDep, version: VersionQuery = None):
    """The printable fit report of a version."""
    case, v, out, report = crud.designed(session, storage, key, case_id, version, "report")
    audit("report", version=v.number)
    if (out / "report.html").is_file():
        return HTMLResponse((out / "report.html").read_text())
    return HTMLResponse(pages.report_html(case.case_ref, v.number, report))


_STATIC_FILES = _STATIC = {"review.js": "text/javascript", "review.css": "text/css",
           "docs.js": "text/javascript"}


@router.get("/static/{name}", response_class=FileResponse,
            responses={**PUBLIC_ERRORS, 200: {"content": {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}}}}})
def static(name: Annotated[str, Path(examples=sorted(_STATIC_FILES))]):
    """The review page's script and style sheet."""
    if name not in _STATIC:
        raise ApiError(404, "no such file", "not_found")
    return FileResponse(WEB / name, media_type=_STATIC[name])
