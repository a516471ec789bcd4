"""The ``orthofit`` command line: parse, call the library, render the result.

This module owns the commands, their options and how results look in a
terminal.  Errors become exit codes in exactly one place, :func:`main`:

====  =====================================================================
0     success
2     bad usage or an invalid option value
3     unreadable or invalid input file
4     the input cannot give what was asked (no foot; an AFO from a foot-only scan)
5     output written but a check failed; in a batch, some scans failed
====  =====================================================================

Every non-zero exit prints one line on stderr saying what is wrong and what
to do; never a traceback (``ORTHOFIT_DEBUG=1`` shows one for internal errors).
No geometry happens here.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import CheckFailedError, OrthofitError, UsageError, validation_problems
from .params import Side, UpAxis, Units, WeightBearing
from .prescription import Device, MaterialName, PrinterName
from .settings import redact_url

__all__ = ["app", "main"]

log = logging.getLogger(__name__)

app = typer.Typer(
    name="orthofit",
    help="From a raw foot-and-ankle scan to a checked, printable orthosis.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


UnitsOpt = Annotated[Units, typer.Option("--units", help="Units of the scan file.")]
UpOpt = Annotated[UpAxis, typer.Option("--up", help="Up axis of the scan file.")]
SideOpt = Annotated[Side, typer.Option("--side", help="Which leg was scanned.")]
WeightOpt = Annotated[WeightBearing, typer.Option(
    "--weight-bearing", help="Load on the foot while scanning (recorded with the scan).")]
MaxMbOpt = Annotated[float, typer.Option(
    "--max-file-mb", min=0.001, help="Refuse scan files larger than this.")]


def _print_version(value: bool) -> None:
    if value:
        _out.print(f"orthofit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.",
                                          is_eager=True, callback=_print_version)] = False,
) -> None:
    """orthofit: scan intake, orthosis design and checks."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@app.command()
def inspect(
    scan: Annotated[Path, typer.Argument(help="Raw scan: STL, OBJ, PLY, OFF, GLB, PCD or XYZ.")],
    units: UnitsOpt = "auto",
    up: UpOpt = "auto",
    side: SideOpt = "auto",
    weight_bearing: WeightOpt = "none",
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object on stdout.")] = False,
    outdir: Annotated[Path | None, typer.Option(
        "-o", "--outdir", help="Also write limb.ply and intake.json here.")] = None,
    max_file_mb: MaxMbOpt = 500.0,
) -> None:
    """Read, clean, align and measure a raw scan of the foot, ankle and leg."""
    from .intake import STAGES
    from .params import IntakeOptions
    from .pipeline import inspect_file, write_intake

    options = _options(IntakeOptions, units=units, up=up, side=side,
                       weight_bearing=weight_bearing, max_file_mb=max_file_mb)
    result = _with_progress(lambda progress: inspect_file(scan, options, progress=progress),
                            STAGES)
    data = result.to_json()
    if outdir is not None:
        write_intake(outdir, result)
        _err.print(f"wrote {outdir / 'limb.ply'} and {outdir / 'intake.json'}")
    if as_json:
        from .io import dumps_json

        sys.stdout.write(dumps_json(data))
    else:
        _render_intake(data)


@app.command()
def design(
    scan: Annotated[Path, typer.Argument(help="Raw scan: STL, OBJ, PLY, OFF, GLB, PCD or XYZ.")],
    outdir: Annotated[Path, typer.Option("-o", "--outdir", help="Where to write the device.")],
    prescription: Annotated[Path | None, typer.Option(
        "--prescription", help="Prescription file (.json, .yaml); flags override it.")] = None,
    device: Annotated[Device | None, typer.Option("--device", help="Device type.")] = None,
    thickness: Annotated[float | None, typer.Option("--thickness", help="Wall, mm.")] = None,
    clearance: Annotated[float | None, typer.Option("--clearance", help="Gap to skin, mm.")] = None,
    material: Annotated[MaterialName | None, typer.Option("--material")] = None,
    printer: Annotated[PrinterName | None, typer.Option("--printer")] = None,
    units: Annotated[Units | None, typer.Option("--units", help="Units of the scan.")] = None,
    up: Annotated[UpAxis | None, typer.Option("--up", help="Up axis of the scan.")] = None,
    side: Annotated[Side | None, typer.Option("--side", help="Which leg was scanned.")] = None,
    weight_bearing: Annotated[WeightBearing | None, typer.Option("--weight-bearing")] = None,
    case_ref: Annotated[str | None, typer.Option(
        "--case-ref", help="Case reference (never a patient's name).")] = None,
    predict_stiffness: Annotated[bool | None, typer.Option(
        "--stiffness/--no-stiffness",
        help="Predict the ankle stiffness of an AFO (default: on).")] = None,
    target_stiffness: Annotated[float | None, typer.Option(
        "--target-stiffness", help="Design to this sagittal stiffness, Nm/deg.")] = None,
) -> None:
    """Design the prescribed orthosis from a raw scan; check it; write the files."""
    from .design import DESIGN_STAGES
    from .intake import STAGES
    from .pipeline import checks_failed, design_file, write_design

    rx = _prescription(prescription, device=device, thickness_mm=thickness,
                       clearance_mm=clearance, material=material, printer=printer,
                       predict_stiffness=predict_stiffness,
                       target_stiffness_nm_per_deg=target_stiffness,
                       scan={"units": units, "up": up, "side": side,
                             "weight_bearing": weight_bearing, "case_ref": case_ref})
    _warn_case_ref(rx.scan.case_ref)
    result = _with_progress(lambda progress: design_file(scan, rx, progress=progress),
                            STAGES + DESIGN_STAGES)
    paths = write_design(outdir, result)
    _render_checks(result.checks)
    for warning in result.all_warnings:
        _out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for name, path in paths.items():
        _err.print(f"wrote {path}")
    failure = checks_failed(result, outdir)
    if failure is not None:
        raise failure


@app.command()
def check(
    mesh: Annotated[Path, typer.Argument(help="Device mesh to check (STL, PLY, OBJ, 3MF...).")],
    limb: Annotated[Path | None, typer.Option(
        "--limb", help="The limb (limb.ply) for thickness and clearance.")] = None,
    thickness: Annotated[float, typer.Option("--thickness", help="Prescribed wall, mm.")] = 3.5,
    clearance: Annotated[float, typer.Option("--clearance", help="Prescribed gap, mm.")] = 2.0,
    material: Annotated[MaterialName, typer.Option("--material")] = "PA12",
    printer: Annotated[PrinterName, typer.Option("--printer")] = "hp-mjf-5200",
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Run the device checks on any mesh."""
    from .checks import run_checks
    from .io import dumps_json, read_limb_ply, read_mesh
    from .prescription import MATERIALS, PRINTERS

    device = read_mesh(mesh)
    limb_mesh = read_limb_ply(limb)[0] if limb is not None else None
    checks = run_checks(device, limb_mesh, clearance_mm=clearance, thickness_mm=thickness,
                        material=MATERIALS[material], printer=PRINTERS[printer])
    if as_json:
        sys.stdout.write(dumps_json(checks))
    else:
        _render_checks(checks)
    failed = [n for n, c in checks.items() if not c["passed"]]
    if failed:
        raise CheckFailedError(f"failed checks: {', '.join(failed)}")


@app.command()
def report(
    outdir: Annotated[Path, typer.Argument(help="A design's output folder.")],
) -> None:
    """Rebuild the fit report (report.html) from a design's saved files."""
    from .pipeline import rebuild_fit_report

    path = rebuild_fit_report(outdir)
    _out.print(f"wrote {path}")


@app.command()
def stiffness(
    outdir: Annotated[Path, typer.Argument(help="A design's output folder.")],
    element_mm: Annotated[float | None, typer.Option(
        "--element-mm", min=0.5, max=10.0,
        help="Element size, mm (default: min(4, wall thickness)).")] = None,
    layers: Annotated[int, typer.Option("--layers", min=1, max=4,
                                        help="Element layers through the wall.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Predict the device's ankle stiffness by finite elements; writes stiffness.json."""
    from .femesh import FEMeshParams
    from .io import dumps_json
    from .pipeline import folder_stiffness

    with _err.status("stiffness: meshing and solving…"):
        block = folder_stiffness(outdir, FEMeshParams(element_mm=element_mm, layers=layers))
    if as_json:
        sys.stdout.write(dumps_json(block))
        return
    _render_stiffness(block)
    _out.print(f"wrote {outdir / 'stiffness.json'}")


def _render_stiffness(block: dict[str, Any]) -> None:
    """Stiffness per plane with the method beside it."""
    if not block.get("reported"):
        _out.print(f"stiffness not reported: {block['reason']}")
        return
    table = Table(title=f"Ankle stiffness ({block['unit']})")
    for column in ("plane", "k_free", "k_axis"):
        table.add_column(column)
    for plane, values in block["planes"].items():
        table.add_row(plane, f"{values['k_free']:.3g}", f"{values['k_axis']:.3g}")
    _out.print(table)
    target = block.get("target")
    if target:
        _out.print(f"designed to {target['target_nm_per_deg']:g} {block['unit']} "
                   f"({target['measure']}): {target['achieved_nm_per_deg']:g} "
                   f"({target['error_percent']:+g} %), side trimline "
                   f"{target['anterior_offset_mm']['designed']:+g} mm from the malleoli, "
                   f"{target['thickness_mm']['designed']:g} mm thick")
    method, material = block["method"], block["material"]
    _out.print(f"k_free: {method['load_cases']['k_free']}")
    _out.print(f"k_axis: {method['load_cases']['k_axis']}")
    _out.print(f"clamped: {method['boundary_conditions']['clamped']}")
    _out.print(f"tied: {method['boundary_conditions']['tied']}")
    _out.print(f"axes: {block['axes']['from']}; axis point {block['axes']['point_mm']} mm")
    _out.print(f"material: {material['name']}, E = {material['elastic_modulus_mpa']:g} MPa, "
               f"ν = {material['poisson_ratio']:g} ({escape(material['source'])})")
    _out.print(f"model: {method['model']}; {method['elements']:,} elements of "
               f"{method['element_mm']:g} mm")
    _out.print(f"accuracy: {block['accuracy']}")


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="Which schema: 'prescription'.")],
) -> None:
    """Print a JSON Schema (the prescription's)."""
    from .io import dumps_json
    from .prescription import prescription_schema

    if name != "prescription":
        raise UsageError(f"no schema named {name!r}; the one schema is 'prescription'")
    sys.stdout.write(dumps_json(prescription_schema()))


def _prescription(path: Path | None, *, scan: dict[str, Any], **fields: Any) -> Any:
    """The prescription: a file's, with any flags given laid over it."""
    from .pipeline import load_prescription

    return load_prescription(path, scan=scan, **fields)


def _warn_case_ref(case_ref: str) -> None:
    """Say so on stderr when a case reference looks like a name or a date of birth."""
    from .prescription import case_ref_warnings

    for warning in case_ref_warnings(case_ref):
        _err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _render_checks(checks: dict[str, dict]) -> None:
    table = Table(title="Checks", title_justify="left")
    for col in ("check", "value", "limit", "passed"):
        table.add_column(col)
    for name, c in checks.items():
        mark = "[green]yes[/green]" if c["passed"] else "[red]NO[/red]"
        table.add_row(name, str(c["value"]), "" if c["limit"] is None else str(c["limit"]), mark)
    _out.print(table)


def _options(model: Any, **values: Any) -> Any:
    """Build a pydantic options model; invalid values become a UsageError (exit 2)."""
    import pydantic

    try:
        return model(**values)
    except pydantic.ValidationError as exc:
        raise UsageError("invalid " + "; ".join(validation_problems(exc.errors()))) from exc


def _with_progress(job, stages: tuple[str, ...]):
    """Run ``job(progress)`` showing each finished stage on stderr."""
    with _err.status(f"{stages[0]}…") as status:
        def progress(stage: str, summary: str, seconds: float) -> None:
            _err.print(f"[green]✓[/green] {stage:<10} {summary}  [dim]({seconds:.1f} s)[/dim]")
            following = stages.index(stage) + 1 if stage in stages else len(stages)
            if following < len(stages):
                status.update(f"{stages[following]}…")

        return job(progress)


def _render_intake(data: dict[str, Any]) -> None:
    """Human-readable intake summary on stdout."""
    head = Table.grid(padding=(0, 2))
    for key in ("units", "up", "side"):
        item = data[key]
        extra = f", confidence {item['confidence']:.2f}" if "confidence" in item else ""
        head.add_row(key, f"{item['value']} ({item['source']}{extra})")
    head.add_row("weight bearing", data["weight_bearing"])
    head.add_row("input sha256", data["input_sha256"][:16] + "…")
    _out.print(head)

    table = Table(title="Landmarks (device frame, mm)", title_justify="left")
    for col in ("landmark", "x", "y", "z"):
        table.add_column(col, justify="left" if col == "landmark" else "right")
    for name, p in data["landmarks"].items():
        table.add_row(name, *(("—",) * 3 if p is None else tuple(f"{c:.1f}" for c in p)))
    _out.print(table)

    table = Table(title="Measurements", title_justify="left")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    for name, v in data["measurements"].items():
        table.add_row(name, "—" if v is None else f"{v:.1f}")
    _out.print(table)

    c = data["cleaning"]
    _out.print(f"cleaning: {c['input_points']:,} points in; downsampled to "
               f"{c['downsample']['points_after']:,} "
               f"({c['downsample']['voxel_mm']:.1f} mm voxels); "
               f"floor removed {c['floor']['removed']:,}; outliers {c['outliers']['removed']:,}; "
               f"clutter {c['clutter']['removed']:,}; limb {c['limb_points']:,} points; "
               f"closed surface {c['closed_surface']['faces']:,} triangles "
               f"({c['closed_surface']['filled_vertices']:,} vertices filled in)")
    for warning in data["warnings"]:
        _out.print(f"[yellow]warning:[/yellow] {warning}")


@app.command()
def batch(
    source: Annotated[Path, typer.Argument(
        help="A folder of scans, or a manifest (.csv or .jsonl) with the columns scan, "
             "prescription, side, units, up, weight_bearing, case_ref.")],
    outdir: Annotated[Path, typer.Option("-o", "--outdir", help="Where to write the results.")],
    prescription: Annotated[Path | None, typer.Option(
        "--prescription", help="Prescription for scans the manifest gives none.")] = None,
    jobs: Annotated[int | None, typer.Option(
        "-j", "--jobs", min=1, help="Design processes at once (default: the cores).")] = None,
    broker: Annotated[str | None, typer.Option(
        "--broker", help="Celery broker (redis://... or amqp://...): run on 'orthofit "
                         "worker' processes instead; default ORTHOFIT_BROKER_URL.")] = None,
) -> None:
    """Design a folder or manifest of scans; resumable; summary.csv and summary.json."""
    from .batch import CeleryRunner, LocalRunner, default_jobs, run_batch
    from .settings import Settings

    settings = Settings.from_env()
    broker = broker or settings.broker_url
    if broker:
        settings = Settings(**{**settings.__dict__, "broker_url": broker})
        runner = CeleryRunner(settings)
        where = f"Celery workers via {redact_url(broker)}"
    else:
        runner = LocalRunner(jobs or default_jobs(), timeout_s=settings.job_timeout_s,
                             max_attempts=settings.max_attempts)
        where = f"{runner.jobs} local processes"
    progress = _BatchBar(where)
    try:
        rows = run_batch(source, outdir, runner=runner, prescription=prescription,
                         progress=progress)
    finally:
        progress.close()
    for ref in dict.fromkeys(r.case_ref for r in rows if r.case_ref):
        _warn_case_ref(ref)
    failed = [r for r in rows if r.status != "ok"]
    reused = sum(r.reused for r in rows)
    _err.print(f"{len(rows) - len(failed)} ok, {len(failed)} failed"
               f"{f', {reused} unchanged from an earlier run' if reused else ''}; "
               f"wrote {outdir / 'summary.csv'} and summary.json")
    if failed:
        raise CheckFailedError(f"{len(failed)} of {len(rows)} scans failed; see "
                               f"{outdir / 'summary.csv'}")


class _BatchBar:
    """A progress bar on stderr: done, failed, remaining and the time left."""

    def __init__(self, where: str):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.where = where
        self.bar = Progress(TextColumn("[bold]batch[/bold]"), BarColumn(),
                            TextColumn("{task.fields[counts]}"), TextColumn("ETA"),
                            TimeRemainingColumn(), console=_err, transient=False)
        self.task = None
        self.ok = self.failed = self.total = 0

    def start(self, total: int, reused: list) -> None:
        _err.print(f"{total} scans on {self.where}"
                   f"{f'; {len(reused)} unchanged from an earlier run' if reused else ''}")
        self.total = total
        self.ok = sum(r.status == "ok" for r in reused)
        self.failed = len(reused) - self.ok
        self.bar.start()
        self.task = self.bar.add_task("batch", total=total, completed=len(reused),
                                      counts=self._counts())

    def advance(self, result) -> None:
        if result.status == "ok":
            self.ok += 1
        else:
            self.failed += 1
            self.bar.console.print(f"[red]✗[/red] {result.scan}: {result.reason} "
                                   f"(exit {result.exit_code}): {result.message}",
                                   markup=True, highlight=False)
        self.bar.update(self.task, advance=1, counts=self._counts())

    def _counts(self) -> str:
        left = self.total - self.ok - self.failed
        return f"done {self.ok} · failed {self.failed} · remaining {left}"

    def close(self) -> None:
        self.bar.stop()


@app.command()
def worker(
    broker: Annotated[str | None, typer.Option(
        "--broker", help="Celery broker (redis://... or amqp://...); default "
                         "ORTHOFIT_BROKER_URL.")] = None,
    concurrency: Annotated[int, typer.Option(
        "-c", "--concurrency", min=1, help="Design jobs at once in this worker.")] = 1,
    name: Annotated[str | None, typer.Option(
        "-n", "--name", help="Worker name (default: orthofit-<pid>@<host>).")] = None,
) -> None:
    """Run a Celery worker for design jobs (shares ORTHOFIT_DATA_DIR and the database)."""
    import socket

    from .settings import Settings
    from .tasks import QUEUE, celery_app

    settings = Settings.from_env()
    broker = broker or settings.broker_url
    if not broker:
        raise UsageError("a worker needs a broker: give --broker redis://... or amqp://..., "
                         "or set ORTHOFIT_BROKER_URL")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    name = name or f"orthofit-{os.getpid()}@{socket.gethostname()}"
    _err.print(f"orthofit worker {name} on {redact_url(broker)} (data {settings.data_dir}, "
               f"{concurrency} at once, limit {settings.job_timeout_s:.0f} s, "
               f"{settings.max_attempts} attempts)")
    celery_app(broker).worker_main(["worker", "--loglevel=INFO", "--pool=prefork",
                                    f"--concurrency={concurrency}", "-Q", QUEUE, "-n", name,
                                    "--without-gossip", "--without-mingle",
                                    "--without-heartbeat"])


keys_app = typer.Typer(help="Create and revoke the review service's API keys "
                             "(on the server machine).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option("--org", help="Organisation: a clinic or a lab.")],
    role: Annotated[str, typer.Option("--role", help="orthotist, lab or admin.")],
) -> None:
    """Create a key; it is shown once, and stored only as its hash."""
    from service.db import ROLES, connect
    from service.keys import create_key
    from .settings import Settings

    if role not in ROLES:
        raise UsageError(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with connect(settings.database_url)() as session:
        try:
            key, token = create_key(session, org, role)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _out.print(f"{role} key for {org} (prefix {key.prefix}); shown once, store it now:")
    _out.print(token, markup=False)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key, or the prefix shown when it was made.")],
) -> None:
    """Revoke a key at once."""
    from service.db import connect
    from service.keys import revoke_key
    from .settings import Settings

    with connect(Settings.from_env().database_url)() as session:
        try:
            revoked = revoke_key(session, key)
        except LookupError as exc:
            raise UsageError(f"{exc}; list keys with the audit log or give the whole key") \
                from None
    _out.print(f"revoked key {revoked.prefix}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
) -> None:
    """Run the review service (SQLite and a data folder by default; see the README)."""
    import uvicorn

    from service.app import create_app
    from .settings import Settings

    settings = Settings.from_env()
    jobs = (f"design jobs to Celery workers via {redact_url(settings.broker_url)}"
            if settings.broker_url else f"{settings.workers} design workers")
    _out.print(f"orthofit review service on http://{host}:{port}  "
               f"(data {settings.data_dir}, {jobs})")
    _out.print("first key: orthofit keys create --org 'Your clinic' --role admin")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every error into its exit code and one line."""
    try:
        result = app(args=argv, standalone_mode=False, prog_name="orthofit")
    except typer.TyperException as exc:  # typer's usage errors: bad option, missing argument
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            return exc.exit_code  # typer has printed the help already
        command = ctx.command_path if ctx is not None else "orthofit"
        _fail(f"{exc.format_message()} (see '{command} --help')")
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted")
        return 130
    except OrthofitError as exc:
        _fail(str(exc))
        return exc.exit_code
    except MemoryError:
        _fail("ran out of memory; decimate the scan or run on a larger machine")
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place internal errors are caught
        if os.environ.get("ORTHOFIT_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {exc}); please report it, "
              "and rerun with ORTHOFIT_DEBUG=1 for details")
        return 1
    return result if isinstance(result, int) else 0


def _fail(message: str) -> None:
    _err.print(f"orthofit: error: {message}", markup=False, highlight=False, soft_wrap=True)

