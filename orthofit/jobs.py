"""Design jobs: one scan and one prescription to one output folder, run apart.

This module owns how a design runs outside the caller and what its outcome
means: in a child process (``python -m orthofit design``, so a crash or a
hang in native code takes down only that process, which a time limit kills)
or in the calling process (a Celery worker's pool child, whose own hard time
limit and redelivery do that job).  A child process dies with the thread that
started it, even when that thread's process is killed outright: on Linux the
kernel sends it SIGKILL then (``PR_SET_PDEATHSIG``), so no design outlives a
service or batch that was SIGKILLed and then runs a second time beside its
restart.  Both give the same files and the same
exit code and one-line message as the command line.  It does not queue jobs
or keep attempts (``orthofit.batch``, ``orthofit.tasks`` and the service do).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import OrthofitError

__all__ = ["DesignJob", "JobOutcome", "EXIT_REASONS", "run_in_subprocess", "run_in_process",
           "kill_process_group"]

#: What each of the command line's exit codes means for a job that failed.
EXIT_REASONS = {1: "internal error", 2: "invalid prescription", 3: "unreadable scan",
                4: "cannot serve", 5: "checks failed"}

#: Exit codes that the same inputs give again: not worth another attempt.
FINAL_EXIT_CODES = frozenset({2, 3, 4, 5})


@dataclass(frozen=True)
class DesignJob:
    """A scan file, a prescription file (JSON or YAML) and the folder to write."""

    scan: Path
    prescription: Path
    outdir: Path

    def command(self) -> list[str]:
        return [sys.executable, "-m", "orthofit", "design", str(self.scan),
                "-o", str(self.outdir), "--prescription", str(self.prescription)]


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: the CLI's exit code (negative: killed by that signal)."""

    exit_code: int
    message: str
    seconds: float
    timed_out: bool = False

    @property
    def crashed(self) -> bool:
        """The worker died or hung: another attempt may succeed."""
        return self.timed_out or self.exit_code < 0

    @property
    def reason(self) -> str | None:
        if self.exit_code == 0:
            return None
        if self.crashed:
            return "worker lost"
        return EXIT_REASONS.get(self.exit_code, "internal error")


# prctl(2) option: the signal a process gets when the thread that forked it dies.
_PR_SET_PDEATHSIG = 1


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    return libc.prctl


# Bound once here: the child calls it between fork and exec, and must not load libraries.
_prctl = _libc_prctl()


def _die_with_parent(parent: int):
    """The child's set-up between fork and exec: SIGKILL when its parent thread dies."""
    def set_up() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call above took effect
            os._exit(1)
    return set_up


def run_in_subprocess(job: DesignJob, *, timeout_s: float,
                      started: Callable[[subprocess.Popen], None] | None = None
                      ) -> JobOutcome:
    """Run ``orthofit design`` for ``job`` in a child process, killed after ``timeout_s``.

    ``started`` is given the process as soon as it runs (to cancel it).
    """
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    begin = time.perf_counter()
    proc = subprocess.Popen(job.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True,
                            preexec_fn=_die_with_parent(os.getpid()))
    if started is not None:
        started(proc)
    timed_out = False
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_process_group(proc)
        _, stderr = proc.communicate()
    seconds = time.perf_counter() - begin
    code = proc.returncode
    if timed_out:
        message = f"the design ran longer than {timeout_s:.0f} s and was stopped"
    elif code < 0:
        message = f"the design's worker process died ({_signal_name(-code)})"
    else:
        message = last_error(stderr.decode("utf-8", "replace"))
        if code != 0 and not message:
            message = f"orthofit design exited with {code}"
    return JobOutcome(code, message, round(seconds, 3), timed_out)


def run_in_process(job: DesignJob, *,
                   passthrough: tuple[type[BaseException], ...] = ()) -> JobOutcome:
    """Run the design of ``job`` here, as ``orthofit design`` would, errors as exit codes.

    Exceptions of the ``passthrough`` types (a worker's time limit) are raised.
    """
    from .pipeline import checks_failed, design_file, load_prescription, write_design

    begin = time.perf_counter()
    try:
        result = design_file(job.scan, load_prescription(job.prescription))
        write_design(job.outdir, result)
        failure = checks_failed(result, job.outdir)
        code, message = (0, "") if failure is None else (failure.exit_code, str(failure))
    except OrthofitError as exc:
        code, message = exc.exit_code, str(exc)
    except MemoryError:
        code, message = 1, "ran out of memory; decimate the scan or run on a larger machine"
    except Exception as exc:  # noqa: BLE001 - reported as the command line reports it
        if isinstance(exc, passthrough):
            raise
        code, message = 1, (f"internal error ({type(exc).__name__}: {exc}); please report it, "
                            "and rerun with ORTHOFIT_DEBUG=1 for details")
    return JobOutcome(code, message, round(time.perf_counter() - begin, 3))


def kill_process_group(proc: subprocess.Popen) -> None:
    """Kill a job's process and anything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def last_error(stderr: str) -> str:
    """The CLI's one-line error, as a clinician sees it on the command line."""
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith("orthofit: error: "):
            return line[len("orthofit: error: "):]
    return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
