"""The service's routes, one router per resource: cases, review, admin, and the site
(health, docs, static files).  Thin: they parse, call :mod:`service.crud`, and answer."""

from . import admin, cases, review, site

__all__ = ["admin", "cases", "review", "site", "ERRORS"]

from .common import ERRORS  # noqa: E402
