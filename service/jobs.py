"""Design jobs, run outside the web process in a pool of worker processes.

Each job is ``orthofit design`` in its own process (``python -m orthofit``),
so a crash or a hang in native code takes down only that process.  Jobs are
claimed from the database (an atomic queued -> running update, so several
runners can share one database), their attempts counted there; a job that
kills its process or runs past the time limit goes back to the queue until
``max_attempts``, then fails with the reason.  On start, jobs left running by
a stopped service are queued again: nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from .db import Version, now
from orthofit.settings import Settings
from .storage import Storage

__all__ = ["JobRunner", "EXIT_REASONS"]

log = logging.getLogger(__name__)

#: What each of the CLI's exit codes means for a version that failed.
EXIT_REASONS = {1: "internal error", 2: "invalid prescription", 3: "unreadable scan",
                4: "cannot serve", 5: "checks failed"}


class JobRunner:
    """Threads that each drive one worker process at a time."""

    def __init__(self, settings: Settings, sessions: sessionmaker, storage: Storage):
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        with self.sessions() as s:
            resumed = s.execute(update(Version).where(Version.status == "running")
                                .values(status="queued")).rowcount
            s.commit()
        if resumed:
            log.info("jobs: %d interrupted jobs queued again", resumed)
        for i in range(max(1, self.settings.workers)):
            thread = threading.Thread(target=self._loop, name=f"orthofit-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """A job was queued: wake an idle runner."""
        self._wake.set()

    def cancel(self, version_ids: list[int]) -> None:
        """Stop the jobs of these versions (their case is being deleted)."""
        with self._lock:
            for version_id in version_ids:
                if version_id in self._procs:
                    _kill(self._procs[version_id])

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            for proc in self._procs.values():
                _kill(proc)
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._claim()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the runner
                log.exception("jobs: claiming a job failed")
                job = None
            if job is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._run(*job)

    def _claim(self) -> tuple[int, str, int, str, int] | None:
        with self.sessions() as s:
            for version in s.scalars(select(Version).where(Version.status == "queued")
                                     .order_by(Version.id).limit(5)):
                claimed = s.execute(
                    update(Version).where(Version.id == version.id,
                                          Version.status == "queued")
                    .values(status="running", attempts=Version.attempts + 1,
                            started_at=now())).rowcount
                s.commit()
                if claimed == 1:
                    s.refresh(version)
                    return (version.id, version.case_id, version.number,
                            version.case.scan_format, version.attempts)
        return None

    def _run(self, version_id: int, case_id: str, number: int, fmt: str,
             attempt: int) -> None:
        out = self.storage.out_dir(case_id, number)
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "orthofit", "design",
                   str(self.storage.scan_path(case_id, fmt)), "-o", str(out),
                   "--prescription", str(self.storage.prescription_path(case_id, number))]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        log.info("jobs: case %s v%d attempt %d started", case_id, number, attempt)
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
        with self._lock:
            self._procs[version_id] = proc
        timed_out = False
        try:
            _, stderr = proc.communicate(timeout=self.settings.job_timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            _, stderr = proc.communicate()
        finally:
            with self._lock:
                self._procs.pop(version_id, None)
        if self._stop.is_set() and proc.returncode and proc.returncode < 0:
            return  # stopped with the service; queued again on the next start
        self._record(version_id, case_id, number, proc.returncode, timed_out,
                     _last_error(stderr.decode("utf-8", "replace")), attempt)

    def _record(self, version_id: int, case_id: str, number: int, code: int,
                timed_out: bool, message: str, attempt: int) -> None:
        crashed = timed_out or code < 0
        with self.sessions() as s:
            version = s.get(Version, version_id)
            if version is None:  # the case was deleted meanwhile: leave nothing behind
                self.storage.delete_case(case_id)
                return
            version.exit_code = code
            if code == 0:
                version.status, version.reason, version.message = "ready", None, None
                version.side = _side(self.storage.out_dir(case_id, number) / "report.json")
            elif crashed and attempt < self.settings.max_attempts:
                version.status = "queued"
                version.reason = "worker lost"
                version.message = _crash_message(timed_out, code, attempt,
                                                 self.settings.job_timeout_s)
            elif crashed:
                version.status, version.reason = "failed", "worker lost"
                version.message = (_crash_message(timed_out, code, attempt,
                                                  self.settings.job_timeout_s)
                                   + f"; gave up after {attempt} attempts")
            else:
                version.status = "failed"
                version.reason = EXIT_REASONS.get(code, "internal error")
                version.message = message or f"orthofit design exited with {code}"
                if code == 5:
                    version.side = _side(self.storage.out_dir(case_id, number) / "report.json")
            version.finished_at = now()
            s.commit()
            log.info("jobs: case %s v%d attempt %d: %s (exit %s)", case_id, number, attempt,
                     version.status, code)
        if crashed:
            self._wake.set()


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_error(stderr: str) -> str:
    """The CLI's one-line error, as a clinician sees it on the command line."""
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith("orthofit: error: "):
            return line[len("orthofit: error: "):]
    return ""


def _crash_message(timed_out: bool, code: int, attempt: int, timeout: float) -> str:
    if timed_out:
        return f"the design ran longer than {timeout:.0f} s and was stopped (attempt {attempt})"
    name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else code
    return f"the design's worker process died ({name}) on attempt {attempt}"


def _side(report_path) -> str | None:
    try:
        return json.loads(report_path.read_text())["side"]["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
