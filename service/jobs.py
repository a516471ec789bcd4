"""Design jobs of the service: an embedded pool of worker processes, or Celery workers.

Without a broker, threads each drive one ``orthofit design`` process at a
time (``orthofit.jobs.run_in_subprocess``), so a crash or a hang in native
code takes down only that process.  Versions are claimed from the database
(an atomic queued -> running update, so several runners can share one
database) and their attempts counted there; a job that kills its process or
runs past the time limit goes back to the queue until ``max_attempts``,
then fails with the reason.  A claimed job holds a lease that a heartbeat
thread renews every third of ``job_lease_s`` while its process runs; a job
whose runner stopped renewing (a service killed outright; its design process
died with it, ``orthofit.jobs``) is taken over once its lease has lapsed, and
never before, so a job never runs twice at once.  A runner that cannot renew
a lease kills that job's process.  Nothing is lost.

With a broker (``ORTHOFIT_BROKER_URL``) the same claim sends the version to
``orthofit worker`` processes as a design job (``orthofit.jobstore``), its
inputs and outputs in the data folder the workers share; the job's attempts
are counted in the database by the workers, and a dispatcher thread copies
each finished job's outcome onto its version.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import uuid
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker

from orthofit.jobs import DesignJob, JobOutcome, kill_process_group, run_in_subprocess
from orthofit.settings import Settings

from .db import Version, now
from .storage import Storage

__all__ = ["JobRunner", "public_message"]

log = logging.getLogger(__name__)

# The dispatcher looks for finished Celery jobs this often (s).
_POLL_S = 0.5


class JobRunner:
    """Runs the service's design jobs: embedded threads, or Celery through a broker."""

    def __init__(self, settings: Settings, sessions: sessionmaker, storage: Storage):
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._celery = None
        # This runner's name on the leases it holds.
        self.owner = uuid.uuid4().hex

    @property
    def uses_broker(self) -> bool:
        return bool(self.settings.broker_url)

    def start(self) -> None:
        if self.uses_broker:
            from orthofit.jobstore import JobStore

            self._celery = JobStore(self.settings.database_url)
            self._resume_sent()
            targets = [self._dispatch]
        else:
            self._take_over_lapsed()
            targets = [self._loop] * max(1, self.settings.workers) + [self._heartbeat]
        for i, target in enumerate(targets):
            thread = threading.Thread(target=target, name=f"orthofit-job-{i}", daemon=True)
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
                    kill_process_group(self._procs[version_id])

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            stopped = list(self._procs)
            for proc in self._procs.values():
                kill_process_group(proc)
        for thread in self._threads:
            thread.join(timeout=10)
        if stopped and not self.uses_broker:
            # Stopped by us, not lost: back to the queue at once, the attempt not counted.
            with self.sessions() as s:
                s.execute(update(Version).where(Version.id.in_(stopped),
                                                Version.lease_owner == self.owner,
                                                Version.status == "running")
                          .values(status="queued", attempts=Version.attempts - 1,
                                  lease_owner=None, lease_expires_at=None))
                s.commit()

    # Leases.

    def _lease_until(self):
        return now() + timedelta(seconds=self.settings.job_lease_s)

    def _take_over_lapsed(self) -> None:
        """Take over the running jobs whose lease has lapsed (their runner is gone):
        queued again, or failed once they have had every attempt."""
        lapsed = (Version.status == "running",
                  or_(Version.lease_expires_at.is_(None), Version.lease_expires_at < now()))
        with self.sessions() as s:
            for version in s.scalars(select(Version).where(*lapsed)):
                last = version.attempts >= self.settings.max_attempts
                values = {"status": "queued", "lease_owner": None, "lease_expires_at": None}
                if last:
                    values.update(status="failed", exit_code=-9, reason="worker lost",
                                  finished_at=now(), message=(
                                      "the design's worker process was lost with its service; "
                                      f"gave up after {version.attempts} attempts"))
                taken = s.execute(update(Version).where(Version.id == version.id, *lapsed)
                                  .values(**values)).rowcount
                s.commit()
                if taken:
                    log.info("jobs: case %s v%d: its runner stopped renewing its lease; %s",
                             version.case_id, version.number,
                             "failed" if last else "queued again")

    def _heartbeat(self) -> None:
        """Renew the leases of the jobs this runner runs; kill a job whose lease is lost."""
        interval = max(0.1, self.settings.job_lease_s / 3)
        while not self._stop.wait(interval):
            with self._lock:
                running = dict(self._procs)
            if not running:
                continue
            try:
                with self.sessions() as s:
                    for version_id, proc in running.items():
                        renewed = s.execute(update(Version).where(
                            Version.id == version_id, Version.lease_owner == self.owner,
                            Version.status == "running").values(
                            lease_expires_at=self._lease_until(), heartbeat_at=now())
                        ).rowcount
                        if not renewed:
                            log.warning("jobs: version %d's lease was lost; its design "
                                        "is stopped", version_id)
                            kill_process_group(proc)
                    s.commit()
            except Exception:  # noqa: BLE001 - a database hiccup: retried next beat
                log.exception("jobs: renewing leases failed")

    # The embedded pool.

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._take_over_lapsed()
                job = self._claim()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the runner
                log.exception("jobs: claiming a job failed")
                job = None
            if job is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._run(*job)

    def _claim(self, count_attempt: bool = True) -> tuple[int, str, int, str, int] | None:
        with self.sessions() as s:
            for version in s.scalars(select(Version).where(Version.status == "queued")
                                     .order_by(Version.id).limit(5)):
                values = {"status": "running", "started_at": now()}
                if count_attempt:
                    values.update(attempts=Version.attempts + 1, lease_owner=self.owner,
                                  lease_expires_at=self._lease_until(), heartbeat_at=now())
                claimed = s.execute(update(Version).where(Version.id == version.id,
                                                          Version.status == "queued")
                                    .values(**values)).rowcount
                s.commit()
                if claimed == 1:
                    s.refresh(version)
                    return (version.id, version.case_id, version.number,
                            version.case.scan_format, version.attempts)
        return None

    def _job(self, case_id: str, number: int, fmt: str) -> DesignJob:
        return DesignJob(scan=self.storage.scan_path(case_id, fmt),
                         prescription=self.storage.prescription_path(case_id, number),
                         outdir=self.storage.out_dir(case_id, number))

    def _run(self, version_id: int, case_id: str, number: int, fmt: str,
             attempt: int) -> None:
        job = self._job(case_id, number, fmt)
        shutil.rmtree(job.outdir, ignore_errors=True)
        job.outdir.parent.mkdir(parents=True, exist_ok=True)
        log.info("jobs: case %s v%d attempt %d started", case_id, number, attempt)

        def started(proc: subprocess.Popen) -> None:
            with self._lock:
                self._procs[version_id] = proc

        try:
            outcome = run_in_subprocess(job, timeout_s=self.settings.job_timeout_s,
                                        started=started)
        finally:
            with self._lock:
                self._procs.pop(version_id, None)
        if self._stop.is_set() and outcome.exit_code < 0:
            return  # stopped with the service; queued again by stop()
        retry = outcome.crashed and attempt < self.settings.max_attempts
        self._record(version_id, case_id, number, outcome, attempt, retry=retry)

    def _record(self, version_id: int, case_id: str, number: int, outcome: JobOutcome,
                attempt: int, *, retry: bool) -> None:
        with self.sessions() as s:
            version = s.get(Version, version_id)
            if version is None:  # the case was deleted meanwhile: leave nothing behind
                self.storage.delete_case(case_id)
                return
            if version.lease_owner not in (None, self.owner):
                log.warning("jobs: case %s v%d is another runner's now; this outcome is "
                            "dropped", case_id, number)
                return
            outcome = JobOutcome(outcome.exit_code,
                                 public_message(outcome.message, self.storage.root),
                                 outcome.seconds, outcome.timed_out)
            version.exit_code = outcome.exit_code
            version.attempts = attempt
            version.reason = outcome.reason
            version.lease_owner = version.lease_expires_at = None
            report = self.storage.out_dir(case_id, number) / "report.json"
            if outcome.exit_code == 0:
                version.status, version.message = "ready", None
                version.side = _side(report)
            elif retry:
                version.status = "queued"
                version.message = f"{outcome.message} on attempt {attempt}"
            else:
                version.status = "failed"
                version.message = outcome.message or f"orthofit design exited with " \
                                                     f"{outcome.exit_code}"
                if outcome.crashed and "gave up" not in version.message:
                    version.message += f"; gave up after {attempt} attempts"
                if outcome.exit_code == 5:
                    version.side = _side(report)
            version.finished_at = now()
            s.commit()
            log.info("jobs: case %s v%d attempt %d: %s (exit %s)", case_id, number, attempt,
                     version.status, outcome.exit_code)
        if retry:
            self._wake.set()

    # Celery workers, through the broker.

    def _ref(self, case_id: str, number: int) -> str:
        return f"case/{case_id}/v{number}"

    def _resume_sent(self) -> None:
        """Versions left running whose job never reached the database go back to the queue."""
        sent = {row.ref for row in self._celery.with_ref("case/")}
        with self.sessions() as s:
            for version in s.scalars(select(Version).where(Version.status == "running")):
                if self._ref(version.case_id, version.number) not in sent:
                    version.status = "queued"
            s.commit()

    def _dispatch(self) -> None:
        from orthofit.jobstore import SharedFolder
        from orthofit.tasks import DESIGN_TASK, QUEUE, celery_app

        app = celery_app(self.settings.broker_url)
        shared = SharedFolder(self.settings.data_dir)
        while not self._stop.is_set():
            try:
                while (claimed := self._claim(count_attempt=False)) is not None:
                    version_id, case_id, number, fmt, _ = claimed
                    job = self._job(case_id, number, fmt)
                    job_id = self._celery.add(self._ref(case_id, number),
                                              shared.key(job.scan), shared.key(job.prescription),
                                              shared.key(job.outdir))
                    app.send_task(DESIGN_TASK, args=[job_id], queue=QUEUE)
                    log.info("jobs: case %s v%d sent to the workers", case_id, number)
                self._collect()
            except Exception:  # noqa: BLE001 - a database or broker hiccup must not end it
                log.exception("jobs: dispatching failed")
            self._wake.wait(timeout=_POLL_S)
            self._wake.clear()

    def _collect(self) -> None:
        """Copy finished jobs' outcomes onto their versions."""
        for row in self._celery.done_with_ref("case/"):
            _, case_id, number = row.ref.split("/")
            with self.sessions() as s:
                version = s.scalars(select(Version).where(
                    Version.case_id == case_id, Version.number == int(number[1:]))).first()
                version_id = version.id if version is not None else -1
            self._record(version_id, case_id, int(number[1:]),
                         JobOutcome(row.exit_code, row.message or "", row.seconds or 0.0),
                         row.attempts, retry=False)
            self._celery.delete([row.id])


# An absolute path of two or more names (not a fraction, a URL or a relative path).
_PATH = re.compile(r"(?<![\w:/.~-])(?:/[^\s'\"/:;,()]+){2,}/?")


def public_message(message: str, data_dir) -> str:
    """``message`` without server paths: a design's report is named, other files by name.

    >>> public_message("failed these checks: mass_g; see /srv/data/cases/ab/v1/out/report.json",
    ...                "/srv/data")
    'failed these checks: mass_g; see the fit report (report.html)'
    >>> public_message("internal error (OSError: [Errno 2] '/tmp/x/limb.ply')", "/srv")
    "internal error (OSError: [Errno 2] 'limb.ply')"
    """
    message = re.sub(r"see \S*report\.json", "see the fit report (report.html)", message or "")
    message = message.replace(str(data_dir), "")

    def name(match: re.Match) -> str:
        return match.group(0).rstrip("/").rsplit("/", 1)[-1]

    return _PATH.sub(name, message)


def _side(report_path) -> str | None:
    try:
        return json.loads(report_path.read_text())["side"]["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
