"""The exception tree of orthofit.

Every error orthofit raises on purpose derives from :class:`OrthofitError` and
carries the process exit code the command line uses for it.  The CLI maps
errors to exit codes in exactly one place (``orthofit.cli.main``) and the
service maps them to HTTP status codes in one handler.

::

    OrthofitError                 exit 1  (never raised directly)
    ├── UsageError                exit 2  an option or prescription value is invalid
    ├── ScanFileError             exit 3  the input file is unreadable or invalid
    ├── CannotServeError          exit 4  the scan cannot give what was asked
    └── CheckFailedError          exit 5  output was written but a check failed

Messages are written for a clinician: they say what is wrong and what to do.
"""

from __future__ import annotations

__all__ = [
    "OrthofitError",
    "UsageError",
    "ScanFileError",
    "CannotServeError",
    "CheckFailedError",
    "validation_problems",
]


class OrthofitError(Exception):
    """Root of every error orthofit raises on purpose."""

    exit_code: int = 1


class UsageError(OrthofitError, ValueError):
    """An option or prescription value is invalid (exit 2)."""

    exit_code = 2


class ScanFileError(OrthofitError, ValueError):
    """The input file cannot be read, or what it holds is not a usable scan (exit 3)."""

    exit_code = 3


class CannotServeError(OrthofitError):
    """The scan is valid but cannot give what was asked, e.g. no foot (exit 4)."""

    exit_code = 4


class CheckFailedError(OrthofitError):
    """Output was written, but at least one check did not pass (exit 5)."""

    exit_code = 5


def validation_problems(errors: list[dict]) -> list[str]:
    """Pydantic's validation errors as ``field: message`` lines a clinician can act on.

    >>> validation_problems([{"loc": ("corrections", "growth_length_mm"),
    ...                       "msg": "Input should be less than or equal to 25"},
    ...                      {"loc": (), "msg": "Value error, give one of them"}])
    ['corrections.growth_length_mm: Input should be less than or equal to 25', 'give one of them']
    """
    out = []
    for error in errors:
        msg = str(error["msg"]).removeprefix("Value error, ")
        where = ".".join(str(p) for p in error["loc"])
        out.append(f"{where}: {msg}" if where else msg)
    return out
