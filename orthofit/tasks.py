"""Celery tasks: design jobs fanned out over worker processes on many machines.

The broker carries a job's id and nothing else; the job's scan, prescription
and output folder are keys under the shared data folder, and its attempts
are counted in the database (``orthofit.jobstore``).  Worker settings follow
what keeps a job from being lost or run forever:

- ``task_acks_late`` and ``task_reject_on_worker_lost``: a task whose pool
  child dies is put back on the queue, not dropped;
- ``worker_prefetch_multiplier = 1``: a worker holds one job at a time, so a
  long job does not keep others waiting behind it;
- hard and soft time limits: the prefork pool kills a child stuck in native
  code; a job past its limit counts as a lost attempt and is sent again;
- ``worker_max_tasks_per_child``: a fresh child now and then, so memory a
  native library keeps is given back;
- a bounded number of attempts, counted in the database at each start (Celery
  does not count redeliveries): a scan that keeps killing its worker fails;
- with Redis, a ``visibility_timeout`` above the longest job, so a slow job
  is not handed to a second worker; RabbitMQ redelivers without one.
"""

from __future__ import annotations

import logging
import os
import shutil
from functools import cache

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from .jobs import DesignJob, JobOutcome, run_in_process
from .jobstore import JobStore, SharedFolder
from .settings import Settings

__all__ = ["DESIGN_TASK", "QUEUE", "celery_app", "worker_config"]

log = logging.getLogger(__name__)

#: The task's name and queue, as producers send it.
DESIGN_TASK = "orthofit.design"
QUEUE = "orthofit-design"
# The soft limit comes this long before the hard one (s) [eng].
_SOFT_BEFORE_HARD_S = 30.0
# Redis hands an unacknowledged job to another worker after this long past
# the hard limit (s) [eng].
_VISIBILITY_MARGIN_S = 600.0
# A pool child is replaced after this many jobs [eng].
_TASKS_PER_CHILD = 20


def worker_config(settings: Settings) -> dict:
    """Celery's settings for design jobs under ``settings``."""
    hard = float(settings.job_timeout_s)
    return {
        "broker_url": settings.broker_url,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": hard,
        "task_soft_time_limit": max(hard - _SOFT_BEFORE_HARD_S, hard * 0.9),
        "worker_max_tasks_per_child": _TASKS_PER_CHILD,
        "broker_transport_options": {"visibility_timeout": int(hard + _VISIBILITY_MARGIN_S)},
        "broker_connection_retry_on_startup": True,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


@cache
def celery_app(broker_url: str | None = None) -> Celery:
    """The Celery app for ``broker_url`` (or ``ORTHOFIT_BROKER_URL``), with the design task."""
    settings = Settings.from_env()
    if broker_url is not None:
        settings = Settings(**{**settings.__dict__, "broker_url": broker_url})
    app = Celery("orthofit", set_as_current=False)
    app.conf.update(worker_config(settings))
    app.task(name=DESIGN_TASK, bind=True, base=_DesignTask)(_design)
    return app


class _DesignTask(Task):
    """Counts a job past the hard time limit as a lost attempt."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if isinstance(exc, TimeLimitExceeded) and args:
            _lost(self, args[0], f"the design ran longer than {exc.args[0]:.0f} s and its "
                                 f"worker process was stopped", timed_out=True)


def _design(task: Task, job_id: str) -> str:
    """Run one design job by its id: count the attempt, run, record."""
    settings = Settings.from_env()
    store = _store()
    row = store.start(job_id)
    if row is None:
        return "gone"
    if row.attempts > settings.max_attempts:
        # Redelivered after its worker died on the last allowed attempt.
        store.finish(job_id, JobOutcome(
            -9, f"the design's worker process was lost on each of {row.attempts - 1} "
                f"attempts; gave up", 0.0))
        return "gave up"
    shared = SharedFolder(settings.data_dir)
    job = DesignJob(scan=shared.path(row.scan_key), prescription=shared.path(row.prescription_key),
                    outdir=shared.path(row.out_key))
    shutil.rmtree(job.outdir, ignore_errors=True)
    log.info("design job %s (%s) attempt %d started", job_id, row.ref, row.attempts)
    try:
        outcome = run_in_process(job, passthrough=(SoftTimeLimitExceeded,))
    except SoftTimeLimitExceeded:
        _lost(task, job_id, f"the design ran longer than {settings.job_timeout_s:.0f} s and "
                            f"was stopped", timed_out=True)
        return "timed out"
    store.finish(job_id, outcome)
    log.info("design job %s attempt %d: exit %d", job_id, row.attempts, outcome.exit_code)
    return "done"


def _lost(task: Task, job_id: str, message: str, *, timed_out: bool) -> None:
    """An attempt ended without an outcome: send the job again, or give up after the last."""
    store = _store()
    row = store.get(job_id)
    if row is None or row.status == "done":
        return
    attempts = Settings.from_env().max_attempts
    if row.attempts >= attempts:
        store.finish(job_id, JobOutcome(-9, f"{message}; gave up after {row.attempts} attempts",
                                        0.0, timed_out=timed_out))
        return
    store.requeue(job_id, message)
    task.apply_async(args=[job_id])


_STORES: dict[int, JobStore] = {}


def _store() -> JobStore:
    """This process's job store (a forked pool child opens its own connections)."""
    pid = os.getpid()
    if pid not in _STORES:
        _STORES[pid] = JobStore(Settings.from_env().database_url)
    return _STORES[pid]
