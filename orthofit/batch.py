"""Batches: many scans designed in one command, resumable, on one machine or many.

This module owns a batch's life: planning (each scan's output folder, input
hash and resolved prescription), skipping what an earlier run finished for
the same inputs, running the rest through a runner, and recording each
scan's result atomically (its folder written aside, the completion marker
``batch.json`` last, then moved into place) and the batch's
``summary.csv`` and ``summary.json``.

Two runners: :class:`LocalRunner` runs ``-j`` design processes on this
machine; :class:`CeleryRunner` sends the jobs to ``orthofit worker``
processes through a broker, inputs and outputs passing through the shared
data folder and the database.  A scan that fails, or crashes or hangs its
worker, is recorded with the reason and exit code, and the rest carry on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .errors import UsageError
from .jobs import FINAL_EXIT_CODES, DesignJob, JobOutcome, kill_process_group, run_in_subprocess
from .manifest import BatchItem, read_batch_input
from .settings import Settings, redact_url

__all__ = ["MARKER", "SUMMARY_COLUMNS", "Work", "ItemResult", "BatchProgress", "Runner",
           "LocalRunner", "CeleryRunner", "run_batch", "default_jobs"]

#: The completion marker in each scan's output folder, written last.
MARKER = "batch.json"
#: ``summary.csv``'s columns, in order.
SUMMARY_COLUMNS = ("scan", "case_ref", "status", "exit_code", "reason", "message", "side",
                   "foot_length_mm", "forefoot_width_mm", "ankle_circumference_mm",
                   "calf_circumference_mm", "mass_g", "checks_passed", "checks_failed",
                   "attempts", "seconds", "device_sha256", "output", "reused", "warnings")
_MEASUREMENTS = ("foot_length_mm", "forefoot_width_mm", "ankle_circumference_mm",
                 "calf_circumference_mm")
_STAGING = ".staging"


@dataclass(frozen=True)
class Work:
    """A scan to design: its resolved prescription file and the folder to write."""

    label: str
    scan: Path
    prescription: Path
    out: Path


@dataclass
class ItemResult:
    """One summary row."""

    scan: str
    case_ref: str | None
    status: str
    exit_code: int | None
    reason: str | None
    message: str | None
    attempts: int
    seconds: float
    output: str
    key: dict[str, str | None]
    side: str | None = None
    measurements: dict[str, float | None] = field(default_factory=dict)
    mass_g: float | None = None
    checks_passed: int | None = None
    checks_failed: list[str] = field(default_factory=list)
    device_sha256: str | None = None
    reused: bool = False
    #: What the design warns the clinician of (side confidence, estimated landmarks...).
    warnings: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        data = {"scan": self.scan, "case_ref": self.case_ref, "status": self.status,
                "exit_code": self.exit_code, "reason": self.reason, "message": self.message,
                "side": self.side, **{m: self.measurements.get(m) for m in _MEASUREMENTS},
                "mass_g": self.mass_g, "checks_passed": self.checks_passed,
                "checks_failed": self.checks_failed, "attempts": self.attempts,
                "seconds": self.seconds, "device_sha256": self.device_sha256,
                "output": self.output, "reused": self.reused, "warnings": self.warnings}
        return data

    def marker(self) -> dict[str, Any]:
        return {**self.row(), "key": self.key}


class BatchProgress(Protocol):
    """Told the batch's size, then each scan's result as it comes."""

    def start(self, total: int, reused: list[ItemResult]) -> None: ...

    def advance(self, result: ItemResult) -> None: ...


class Runner(Protocol):
    """Runs design work, calling ``done(work, outcome, attempts)`` as each ends."""

    def run(self, work: list[Work],
            done: Callable[[Work, JobOutcome, int], None]) -> None: ...


@dataclass
class _Planned:
    item: BatchItem
    label: str
    case_ref: str | None
    key: dict[str, str | None]
    prescription_json: str | None = None
    problem: JobOutcome | None = None


def run_batch(source: Path, outdir: Path, *, runner: Runner,
              prescription: Path | None = None,
              progress: BatchProgress | None = None) -> list[ItemResult]:
    """Design every scan of ``source`` (a folder or a manifest) into ``outdir``.

    Returns the summary rows in the input's order, also written to
    ``summary.csv`` and ``summary.json``.  Scans whose folder holds a
    complete result for the same input hash, prescription and orthofit
    version are not run again.

    Raises
    ------
    UsageError
        When the input is not a folder of scans or a valid manifest, or the
        default prescription cannot be read.
    """
    items = read_batch_input(source)
    if prescription is not None and not Path(prescription).is_file():
        raise UsageError(f"the prescription file does not exist: {prescription}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    staging = outdir / _STAGING
    staging.mkdir(exist_ok=True)
    planned = _plan(items, prescription)
    results: dict[str, ItemResult] = {}
    to_run: list[Work] = []
    for plan in planned:
        earlier = _earlier_result(outdir / plan.label, plan.key)
        if earlier is not None:
            results[plan.label] = earlier
        elif plan.problem is None:
            rx_file = staging / f"{plan.label}.prescription.json"
            rx_file.write_text(plan.prescription_json)
            to_run.append(Work(plan.label, plan.item.path, rx_file, staging / plan.label))
    if progress is not None:
        progress.start(len(planned), list(results.values()))
    lock = threading.Lock()
    by_label = {plan.label: plan for plan in planned}

    def record(plan: _Planned, outcome: JobOutcome, attempts: int, staged: Path) -> None:
        result = _finish(plan, outcome, attempts, staged, outdir)
        with lock:
            results[plan.label] = result
            if progress is not None:
                progress.advance(result)

    for plan in planned:
        if plan.label not in results and plan.problem is not None:
            record(plan, plan.problem, 0, staging / plan.label)
    if to_run:
        runner.run(to_run, lambda work, outcome, attempts: record(
            by_label[work.label], outcome, attempts, work.out))
    rows = [results[plan.label] for plan in planned]
    _write_summary(outdir, rows)
    shutil.rmtree(staging, ignore_errors=True)
    return rows


def _plan(items: list[BatchItem], default_rx: Path | None) -> list[_Planned]:
    from .pipeline import load_prescription

    planned, taken = [], set()
    for item in items:
        case_ref = item.scan_options.get("case_ref")
        label = _unique(_label(case_ref or Path(item.scan).stem), taken)
        problem, rx_json, rx_hash = None, None, None
        scan_hash = _sha256(item.path) if item.path.is_file() else None
        if scan_hash is None:
            problem = JobOutcome(3, f"the scan file does not exist: {item.scan}", 0.0)
        try:
            rx = load_prescription(item.prescription or default_rx, scan=item.scan_options)
            rx_json = json.dumps(rx.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"
            rx_hash = hashlib.sha256(rx_json.encode()).hexdigest()
            case_ref = rx.scan.case_ref if rx.scan.case_ref != "case" else case_ref
        except UsageError as exc:
            problem = problem or JobOutcome(exc.exit_code, str(exc), 0.0)
        key = {"input_sha256": scan_hash, "prescription_sha256": rx_hash,
               "orthofit_version": __version__}
        planned.append(_Planned(item, label, case_ref, key, rx_json, problem))
    return planned


def _label(name: str) -> str:
    """A folder name a lab can read and every file system takes."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "scan"
    return safe[:80]


def _unique(label: str, taken: set[str]) -> str:
    out, n = label, 2
    while out.lower() in taken or out.lower() in ("summary.csv", "summary.json", _STAGING):
        out, n = f"{label}_{n}", n + 1
    taken.add(out.lower())
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _earlier_result(folder: Path, key: dict) -> ItemResult | None:
    """The result in ``folder`` when complete for the same key and worth keeping."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key or not (data.get("status") == "ok"
                                      or data.get("exit_code") in FINAL_EXIT_CODES):
        return None
    fields = {k: v for k, v in data.items() if k in ItemResult.__dataclass_fields__}
    fields["measurements"] = {m: data.get(m) for m in _MEASUREMENTS}
    return ItemResult(**{**fields, "reused": True})


def _finish(plan: _Planned, outcome: JobOutcome, attempts: int, staged: Path,
            outdir: Path) -> ItemResult:
    """Record one scan's result: marker last, then the folder moved into place."""
    staged.mkdir(parents=True, exist_ok=True)
    result = ItemResult(scan=plan.item.scan, case_ref=plan.case_ref,
                        status="ok" if outcome.exit_code == 0 else "failed",
                        exit_code=outcome.exit_code, reason=outcome.reason,
                        message=outcome.message or None, attempts=attempts,
                        seconds=outcome.seconds, output=plan.label, key=plan.key)
    report = staged / "report.json"
    if report.is_file():
        data = json.loads(report.read_text())
        result.side = (data.get("side") or {}).get("value")
        result.measurements = {m: (data.get("measurements") or {}).get(m) for m in _MEASUREMENTS}
        result.mass_g = (data.get("print") or {}).get("mass_g")
        checks = data.get("checks") or {}
        result.checks_passed = sum(1 for c in checks.values() if c.get("passed"))
        result.checks_failed = sorted(n for n, c in checks.items() if not c.get("passed"))
        result.warnings = list(data.get("warnings") or [])
    if (staged / "device.stl").is_file():
        result.device_sha256 = _sha256(staged / "device.stl")
    marker = staged / MARKER
    marker.write_text(json.dumps(result.marker(), indent=2, sort_keys=True) + "\n")
    final = outdir / plan.label
    if final.exists():
        old = staged.parent / f"{plan.label}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    staged.rename(final)
    return result


def _write_summary(outdir: Path, rows: list[ItemResult]) -> None:
    from .pipeline import atomic_write

    data = [row.row() for row in rows]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in data:
        # Warnings are sentences with their own semicolons: one per " | ".
        writer.writerow({k: " | ".join(v) if k == "warnings" else _csv_value(v)
                         for k, v in row.items()})
    atomic_write(outdir / "summary.csv", lambda p: Path(p).write_text(text.getvalue()))
    atomic_write(outdir / "summary.json", lambda p: Path(p).write_text(
        json.dumps(data, indent=2) + "\n"))


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


class LocalRunner:
    """``jobs`` design processes at once on this machine, each attempt in its own process."""

    def __init__(self, jobs: int, *, timeout_s: float, max_attempts: int):
        self.jobs = max(1, jobs)
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def run(self, work: list[Work], done: Callable[[Work, JobOutcome, int], None]) -> None:
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="orthofit-batch")
        futures = [pool.submit(self._one, w, done) for w in work]
        try:
            for future in futures:
                future.result()
        except BaseException:
            # Interrupted: stop what runs; finished scans keep their results.
            self._stopping.set()
            for future in futures:
                future.cancel()
            with self._lock:
                for proc in self._procs:
                    kill_process_group(proc)
            raise
        finally:
            pool.shutdown(wait=True)

    def _one(self, work: Work, done: Callable[[Work, JobOutcome, int], None]) -> None:
        outcome, attempt = None, 0
        for attempt in range(1, self.max_attempts + 1):
            if self._stopping.is_set():
                return
            shutil.rmtree(work.out, ignore_errors=True)
            outcome = run_in_subprocess(DesignJob(work.scan, work.prescription, work.out),
                                        timeout_s=self.timeout_s, started=self._started)
            if self._stopping.is_set():
                return
            if not outcome.crashed:
                break
        if outcome.crashed:
            outcome = JobOutcome(outcome.exit_code,
                                 f"{outcome.message}; gave up after {attempt} attempts",
                                 outcome.seconds, outcome.timed_out)
        done(work, outcome, attempt)

    def _started(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs = {p for p in self._procs if p.poll() is None} | {proc}


class CeleryRunner:
    """Sends design jobs to Celery workers; waits for them in the database.

    Inputs are copied into the shared data folder, and outputs copied back
    from it, so workers on other machines need only that folder, the
    database and the broker.
    """

    def __init__(self, settings: Settings, *, poll_s: float = 0.5):
        if not settings.broker_url:
            raise UsageError("a broker is needed to run on Celery workers: give --broker "
                             "redis://... or amqp://..., or set ORTHOFIT_BROKER_URL")
        self.settings = settings
        self.poll_s = poll_s

    def run(self, work: list[Work], done: Callable[[Work, JobOutcome, int], None]) -> None:
        from kombu.exceptions import OperationalError

        from .jobstore import JobStore, SharedFolder
        from .tasks import DESIGN_TASK, QUEUE, celery_app

        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(self.settings.database_url)
        shared = SharedFolder(self.settings.data_dir)
        batch = uuid.uuid4().hex
        app = celery_app(self.settings.broker_url)
        jobs: dict[str, Work] = {}
        for w in work:
            folder = shared.path(f"batches/{batch}/{w.label}")
            folder.mkdir(parents=True)
            scan = folder / f"scan{w.scan.suffix.lower()}"
            shutil.copyfile(w.scan, scan)
            shutil.copyfile(w.prescription, folder / "prescription.json")
            job_id = store.add(f"batch/{batch}/{w.label}", shared.key(scan),
                               shared.key(folder / "prescription.json"),
                               f"batches/{batch}/{w.label}/out")
            jobs[job_id] = w
        try:
            try:
                for job_id in jobs:
                    app.send_task(DESIGN_TASK, args=[job_id], queue=QUEUE)
            except OperationalError as exc:
                store.delete(list(jobs))
                raise UsageError(f"cannot reach the broker at "
                                 f"{redact_url(self.settings.broker_url)} ({exc}); start it, "
                                 f"or check --broker or ORTHOFIT_BROKER_URL") from exc
            waiting = dict(jobs)
            while waiting:
                for row in store.done(list(waiting)):
                    w = waiting.pop(row.id)
                    produced = shared.path(row.out_key)
                    shutil.rmtree(w.out, ignore_errors=True)
                    if produced.is_dir():
                        shutil.copytree(produced, w.out)
                    outcome = JobOutcome(row.exit_code, row.message or "", row.seconds or 0.0)
                    done(w, outcome, row.attempts)
                    store.delete([row.id])
                if waiting:
                    time.sleep(self.poll_s)
        finally:
            shutil.rmtree(shared.path(f"batches/{batch}"), ignore_errors=True)


def default_jobs() -> int:
    """``-j``'s default: one design process per core."""
    return os.cpu_count() or 1
