"""orthofit: from a raw foot-and-ankle scan to a checked, printable orthosis.

The public API is declared in ``__all__`` and guarded by a test.  Modules,
one per domain noun: ``io`` (files), ``clean`` (Open3D cleaning), ``frame``
(units, up axis, device frame), ``surface`` (the closed limb), ``anatomy``
(side, landmarks, measurements), ``intake`` (the intake steps in order),
``normals`` (outward normals), ``pipeline`` (workflow with I/O at the edges),
``params`` (options and tolerances), ``errors`` (the exception tree), ``cli``
(the command line).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orthofit")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"

from .errors import (CannotServeError, CheckFailedError, OrthofitError, ScanFileError,
                     UsageError)

# The rest loads on first use, so that ``orthofit --help`` and a refused
# input answer without importing Open3D and trimesh (issue #17).
_LAZY = {
    "IntakeOptions": "params",
    "RawScan": "io",
    "read_scan": "io",
    "read_scan_bytes": "io",
    "IntakeResult": "intake",
    "run_intake": "intake",
    "inspect_file": "pipeline",
    "write_intake": "pipeline",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    "OrthofitError",
    "UsageError",
    "ScanFileError",
    "CannotServeError",
    "CheckFailedError",
    "IntakeOptions",
    "RawScan",
    "read_scan",
    "read_scan_bytes",
    "IntakeResult",
    "run_intake",
    "inspect_file",
    "write_intake",
]
