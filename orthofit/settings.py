"""Settings of the service, batches and workers, from the environment, with visible defaults.

Every process that runs design jobs (the service, ``orthofit batch`` with a
broker, ``orthofit worker``) reads the same variables, so they agree on
where data lives, which database counts attempts and which broker carries
the tasks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "redact_url"]


@dataclass(frozen=True)
class Settings:
    """Where data lives and how design jobs run."""

    data_dir: Path
    database_url: str
    # Largest scan upload (bytes); a dense 3M-point binary PLY is about 40 MB.
    max_upload_bytes: int = 200 * 1024 * 1024
    # Worker processes running design jobs at once (default: one per core).
    workers: int = 2
    # A job running longer than this is killed and counts as a failed attempt (s).
    job_timeout_s: float = 600.0
    # Attempts before a job that crashes or hangs its worker is marked failed.
    max_attempts: int = 3
    # A Celery broker (redis://... or amqp://...): design jobs go to
    # ``orthofit worker`` processes; None runs them in an embedded pool.
    broker_url: str | None = None
    # A running job's lease (s): its runner renews it every third of this
    # while the design runs; a restarted service takes the job over only
    # once the lease has lapsed, so a job never runs twice at once.
    job_lease_s: float = 30.0
    # Failed authentications a client may make in a minute before the
    # service answers it 429 (with Retry-After) until the minute has passed.
    auth_failures_per_minute: int = 20

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("ORTHOFIT_DATA_DIR", "orthofit-data")).resolve()
        url = env.get("ORTHOFIT_DATABASE_URL") or f"sqlite:///{data_dir / 'orthofit.db'}"
        return cls(
            data_dir=data_dir,
            database_url=url,
            max_upload_bytes=int(float(env.get("ORTHOFIT_MAX_UPLOAD_MB", "200")) * 1024 * 1024),
            workers=int(env.get("ORTHOFIT_WORKERS", str(os.cpu_count() or 1))),
            job_timeout_s=float(env.get("ORTHOFIT_JOB_TIMEOUT_S", "600")),
            max_attempts=int(env.get("ORTHOFIT_MAX_ATTEMPTS", "3")),
            broker_url=env.get("ORTHOFIT_BROKER_URL") or None,
            job_lease_s=float(env.get("ORTHOFIT_JOB_LEASE_S", "30")),
            auth_failures_per_minute=int(env.get("ORTHOFIT_AUTH_FAILURES_PER_MINUTE", "20")),
        )


def redact_url(url: str) -> str:
    """A URL without its password, for printing.

    >>> redact_url("redis://:secret@broker:6379/0")
    'redis://:***@broker:6379/0'
    """
    return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
