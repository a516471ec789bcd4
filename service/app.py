"""The review service's HTTP interface (FastAPI): the app, put together.  No routes here.

Orthotist keys create, see, review, approve, resubmit and delete their own
clinic's cases; lab keys see only cases released to their lab, and of those
only the approved version's device files and a job sheet; admin keys manage
keys and read the audit log.  The routers are in :mod:`service.routes`, their
dependencies in :mod:`service.deps`, the schemas in :mod:`service.schemas`;
:class:`service.gate.Gate` checks keys before bodies are read and audits every
request that touches a case or an admin route; :mod:`service.errors` gives
every error one shape.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from orthofit import __version__
from orthofit.prescription import Prescription
from orthofit.settings import Settings

from . import errors
from .db import connect
from .gate import Gate
from .jobs import JobRunner
from .routes import admin, cases, review, site
from .routes.review import WEB
from .schemas import ErrorPublic
from .storage import Storage

__all__ = ["create_app"]

_DESCRIPTION = ("Orthotists submit scans with a prescription, review and approve the "
                "designed device; print labs download it.  Every error answers "
                "`{\"detail\": str, \"code\": str}`.")
# npm packages served as files: (URL, folder under web/node_modules).
_PACKAGES = (("/static/three", "three"), ("/static/swagger-ui", "swagger-ui-dist"))


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
                  description=_DESCRIPTION, docs_url=None, redoc_url=None,
                  default_response_class=errors.SafeJSONResponse)
    app.state.settings, app.state.sessions = settings, sessions
    app.state.storage, app.state.runner = storage, runner
    errors.install(app)
    routers = (site.router, cases.router, review.router, admin.router)
    for router in routers:
        app.include_router(router)
    app.state.api_routes = [route for router in routers for route in router.routes]
    for url, package in _PACKAGES:
        if (WEB / "node_modules" / package).is_dir():
            app.mount(url, StaticFiles(directory=WEB / "node_modules" / package), name=package)
    app.add_middleware(Gate, sessions=sessions, settings=settings, routes=app.state.api_routes)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, with the prescription's own schema for the form field."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        prescription = Prescription.model_json_schema(
            ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(prescription.pop("$defs", {}))
        components["Prescription"] = prescription
        components["ErrorPublic"] = ErrorPublic.model_json_schema()
        app.openapi_schema = schema
    return app.openapi_schema
