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
from .intake import IntakeResult, run_intake
from .io import RawScan, read_scan, read_scan_bytes
from .params import IntakeOptions
from .pipeline import inspect_file, write_intake

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
