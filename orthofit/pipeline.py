"""The clinic's workflow end to end, with I/O at its edges.

This module owns the order of the big steps (intake now; shell and checks
build on it) and where their results are written.  It reads the scan file,
hands numpy data to the steps, and writes each output atomically (a
temporary file renamed into place), so an interrupted run never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .intake import IntakeResult, Progress, run_intake
from .io import dumps_json, read_scan, write_limb_ply
from .params import IntakeOptions

__all__ = ["inspect_file", "write_intake", "atomic_write"]

_BYTES_PER_MB = 1_000_000


def inspect_file(path: str | Path, options: IntakeOptions, *,
                 progress: Progress | None = None) -> IntakeResult:
    """Read a scan file and run intake on it (see :func:`orthofit.intake.run_intake`)."""
    started = time.perf_counter()
    raw = read_scan(path, max_bytes=int(options.max_file_mb * _BYTES_PER_MB))
    return run_intake(raw, options, progress=progress, started=started)


def write_intake(outdir: str | Path, result: IntakeResult) -> None:
    """Write ``limb.ply`` and ``intake.json`` into ``outdir`` (created if needed)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write(outdir / "limb.ply",
                 lambda tmp: write_limb_ply(tmp, result.limb.vertices, result.limb.faces,
                                            result.filled))
    atomic_write(outdir / "intake.json",
                 lambda tmp: Path(tmp).write_text(dumps_json(result.to_json()), encoding="utf-8"))


def atomic_write(target: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
