"""The clinic's workflow end to end, with I/O at its edges.

This module owns the order of the big steps (intake, then design and its fit
report) and where their results are written.  It reads the scan file,
hands numpy data to the steps, and writes each output atomically (a
temporary file renamed into place), so an interrupted run never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from .corrections import OTHER_SIDE, mirror_scan
from .design import DesignResult, run_design
from .errors import CheckFailedError, ScanFileError, UsageError, validation_problems
from .intake import IntakeResult, Progress, run_intake
from .io import (dumps_json, read_limb_ply, read_mesh, read_prescription_file, read_scan,
                 stl_bytes, threemf_bytes, write_limb_ply, write_png)
from .params import IntakeOptions
from .prescription import Prescription

__all__ = ["load_prescription", "checks_failed", "inspect_file", "write_intake", "design_file",
           "write_design", "write_fit_report", "rebuild_fit_report", "folder_stiffness",
           "atomic_write", "design_limb"]

_BYTES_PER_MB = 1_000_000
# What the fit report reads from report.json.
_REPORT_KEYS = {"checks", "prescription", "landmarks", "measurements", "side", "trimlines",
                "print", "passed", "versions"}
_OUTPUT_MODE = 0o666


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_prescription(path: str | Path | None, *, scan: dict | None = None,
                      **fields) -> Prescription:
    """The prescription in ``path`` (JSON or YAML), with the fields and scan options given
    (not None) laid over it.

    Raises
    ------
    UsageError
        When the file cannot be read or what it gives is not a valid
        prescription, naming each field at fault.
    """
    import pydantic

    data: dict = read_prescription_file(path) if path is not None else {}
    data.update({k: v for k, v in fields.items() if v is not None})
    given_scan = {k: v for k, v in (scan or {}).items() if v is not None}
    if given_scan:
        data["scan"] = {**data.get("scan", {}), **given_scan}
    try:
        return Prescription(**data)
    except pydantic.ValidationError as exc:
        raise UsageError("the prescription is invalid: "
                         + "; ".join(validation_problems(exc.errors()))) from exc


def checks_failed(result: DesignResult, outdir: str | Path) -> CheckFailedError | None:
    """The error for a written design that failed checks, or None when all passed."""
    if result.passed:
        return None
    failed = ", ".join(n for n, c in result.checks.items() if not c["passed"])
    return CheckFailedError(f"the device was written but failed these checks: {failed}; "
                            f"see {Path(outdir) / 'report.json'}")


def inspect_file(path: str | Path, options: IntakeOptions, *,
                 progress: Progress | None = None, mirror: bool = False) -> IntakeResult:
    """Read a scan file and run intake on it (see :func:`orthofit.intake.run_intake`).

    With ``mirror`` the scan is mirrored left for right first.
    """
    started = time.perf_counter()
    raw = read_scan(path, max_bytes=int(options.max_file_mb * _BYTES_PER_MB))
    if mirror:
        raw = mirror_scan(raw)
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


def design_file(path: str | Path, rx: Prescription, *,
                progress: Progress | None = None) -> DesignResult:
    """Read a scan, run intake with the prescription's scan options, design the device.

    With ``corrections.mirror`` the scan is mirrored first, and the device is
    for the other side than the one scanned (a given ``scan.side`` is the
    scanned side).
    """
    options, mirror = rx.scan, rx.corrections.mirror
    if mirror and options.side != "auto":
        options = options.model_copy(update={"side": OTHER_SIDE[options.side]})
    intake = inspect_file(path, options, progress=progress, mirror=mirror)
    return run_design(intake, rx, progress=progress)


def write_design(outdir: str | Path, result: DesignResult) -> dict[str, Path]:
    """Write every design output into ``outdir``; returns name -> path.

    ``device.stl`` and ``device.3mf`` (mm, device frame, byte-identical for
    the same input), ``limb.ply`` and ``intake.json`` as intake writes them,
    ``report.json`` and ``preview.png``.
    """
    from .preview import render_views

    outdir = Path(outdir)
    write_intake(outdir, result.intake)
    device = result.device
    label = f"{result.prescription.scan.case_ref} {result.intake.side.value} " \
            f"{result.prescription.device}"
    atomic_write(outdir / "device.stl",
                 lambda tmp: Path(tmp).write_bytes(stl_bytes(device.vertices, device.faces)))
    atomic_write(outdir / "device.3mf", lambda tmp: Path(tmp).write_bytes(
        threemf_bytes(device.vertices, device.faces, name=label)))
    limb = result.limb if result.limb is not None else result.intake.limb
    if limb is not result.intake.limb:
        # The limb as corrected (ankle angle), beside the scanned one.
        atomic_write(outdir / "limb_corrected.ply",
                     lambda tmp: write_limb_ply(tmp, limb.vertices, limb.faces,
                                                result.intake.filled))
    atomic_write(outdir / "preview.png", lambda tmp: write_png(tmp, render_views(limb, device)))
    text = dumps_json(result.to_json())
    atomic_write(outdir / "report.json",
                 lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    report = json.loads(text)
    # The report shows the files as written (report.json, the STL, limb.ply), so that
    # ``orthofit report`` rebuilds it exactly.
    write_fit_report(outdir, design_limb(outdir), read_mesh(outdir / "device.stl"), report)
    return {name: outdir / name for name in ("device.stl", "device.3mf", "limb.ply",
                                             "intake.json", "report.json", "preview.png",
                                             "report.html")}


def write_fit_report(outdir: str | Path, limb: trimesh.Trimesh, device: trimesh.Trimesh,
                     report: dict) -> Path:
    """Write ``report.html`` (the fit report) into ``outdir``."""
    from .report import fit_figures, report_html

    target = Path(outdir) / "report.html"
    page = report_html(report, fit_figures(limb, device, report))
    atomic_write(target, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return target


def rebuild_fit_report(outdir: str | Path) -> Path:
    """Rebuild ``report.html`` from a design's saved files (device.stl, limb.ply, report.json).

    Raises
    ------
    ScanFileError
        When the folder does not hold a design's outputs.
    """
    outdir = Path(outdir)
    report = _design_report(outdir)
    return write_fit_report(outdir, design_limb(outdir), read_mesh(outdir / "device.stl"),
                            report)


def folder_stiffness(outdir: str | Path, params=None) -> dict:
    """Predict the stiffness of the device in a design's output folder; write ``stiffness.json``.

    Uses the files as written (device.stl, the limb it was designed around)
    and report.json's prescription, landmarks and trimlines.  Returns the
    block ``report.json`` holds under ``stiffness``.

    Raises
    ------
    ScanFileError
        When the folder does not hold a design's outputs.
    """
    from .femesh import FEMeshParams
    from .stiffness import device_stiffness

    outdir = Path(outdir)
    report = _design_report(outdir)
    try:
        rx = Prescription(**report["prescription"])
        landmarks = {name: None if p is None else np.asarray(p, dtype=float)
                     for name, p in report["landmarks"].items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ScanFileError(f"{outdir / 'report.json'} holds no usable prescription or "
                            f"landmarks ({exc.__class__.__name__}); design the device "
                            f"again") from exc
    started = time.perf_counter()
    block, _ = device_stiffness(read_mesh(outdir / "device.stl"), design_limb(outdir),
                                device=rx.device, landmarks=landmarks,
                                proximal_z=report["trimlines"].get("proximal_edge_z_mm"),
                                thickness_mm=rx.thickness_mm, material=rx.material_spec,
                                params=params or FEMeshParams())
    designed_to = (report.get("stiffness") or {}).get("target")
    if block.get("reported") and designed_to:
        # The design's search to its target, as the design reported it.
        block["target"] = designed_to
    block["seconds"] = round(time.perf_counter() - started, 2)
    atomic_write(outdir / "stiffness.json",
                 lambda tmp: Path(tmp).write_text(dumps_json(block), encoding="utf-8"))
    return block


def _design_report(outdir: Path) -> dict:
    """report.json of a design's output folder, checked to hold what a design writes."""
    missing = [n for n in ("device.stl", "limb.ply", "report.json") if not (outdir / n).is_file()]
    if missing:
        raise ScanFileError(f"{outdir} is not a design's output folder (no {', '.join(missing)});"
                            " give the folder 'orthofit design -o' wrote")
    try:
        report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    except ValueError:
        report = None
    if not isinstance(report, dict) or not _REPORT_KEYS <= report.keys():
        raise ScanFileError(f"{outdir / 'report.json'} is damaged or not a design report; "
                            "design the device again")
    return report


def design_limb(outdir: str | Path) -> trimesh.Trimesh:
    """The limb a design in ``outdir`` was made around: corrected if it was."""
    outdir = Path(outdir)
    corrected = outdir / "limb_corrected.ply"
    return read_limb_ply(corrected if corrected.is_file() else outdir / "limb.ply")[0]


def atomic_write(target: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes owner-only files; outputs are for the lab too.
        os.chmod(tmp, _OUTPUT_MODE & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
