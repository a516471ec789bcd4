"""The service's routes, one router per resource: cases, review, admin, and the site
(health, docs).  Thin: they parse, call :mod:`service.crud`, and answer."""

from . import admin, cases, review, site
from .common import ERRORS

__all__ = ["admin", "cases", "review", "site", "ERRORS"]
