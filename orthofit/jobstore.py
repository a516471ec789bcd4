"""The design jobs that Celery workers run, kept in the database every worker reaches.

A broker message carries only a job's id; the job's inputs and outputs are
named here by keys under the shared data folder (``ORTHOFIT_DATA_DIR``), and
its status and attempts live here.  Celery redelivers a task whose worker
died but does not count those redeliveries: each start is counted here, so a
scan that keeps killing its worker fails after ``max_attempts``.  Both
``orthofit batch --broker`` and the service's job runner (with a broker)
queue jobs here; the SQLite file in the data folder is the default and
PostgreSQL serves many machines.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (DateTime, Float, Integer, String, Text, create_engine, delete, event,
                        select, update)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from .jobs import JobOutcome

__all__ = ["JobRow", "JobStore", "SharedFolder", "sqlite_pragmas"]


class _Base(DeclarativeBase):
    pass


class JobRow(_Base):
    """One design job: its input and output keys, status and attempts."""

    __tablename__ = "design_jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Who queued it: ``batch/<id>/<label>`` or ``case/<id>/v<n>``.
    ref: Mapped[str] = mapped_column(String(200), index=True)
    scan_key: Mapped[str] = mapped_column(String(300))
    prescription_key: Mapped[str] = mapped_column(String(300))
    out_key: Mapped[str] = mapped_column(String(300))
    #: queued, running, done (exit_code tells how it ended)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class SharedFolder:
    """Storage every worker reaches: a folder (shared over the network when workers are
    on several machines), addressed by relative keys."""

    root: Path

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key {key!r} leaves the data folder")
        return path

    def key(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()


class JobStore:
    """Design jobs in a database, claimed and finished atomically."""

    def __init__(self, url: str):
        engine = create_engine(url, future=True, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", sqlite_pragmas)
        _Base.metadata.create_all(engine)
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def add(self, ref: str, scan_key: str, prescription_key: str, out_key: str) -> str:
        job_id = uuid.uuid4().hex
        with self.sessions() as s:
            s.add(JobRow(id=job_id, ref=ref, scan_key=scan_key,
                         prescription_key=prescription_key, out_key=out_key,
                         status="queued", attempts=0, created_at=_now()))
            s.commit()
        return job_id

    def start(self, job_id: str) -> JobRow | None:
        """Count an attempt and mark the job running; None when it is done or gone."""
        with self.sessions() as s:
            started = s.execute(update(JobRow).where(JobRow.id == job_id,
                                                     JobRow.status != "done")
                                .values(status="running", attempts=JobRow.attempts + 1)
                                ).rowcount
            s.commit()
            return s.get(JobRow, job_id) if started else None

    def requeue(self, job_id: str, message: str) -> None:
        """The attempt was lost (the worker died or hung): another may follow."""
        with self.sessions() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.status != "done")
                      .values(status="queued", reason="worker lost", message=message))
            s.commit()

    def finish(self, job_id: str, outcome: JobOutcome) -> None:
        with self.sessions() as s:
            s.execute(update(JobRow).where(JobRow.id == job_id).values(
                status="done", exit_code=outcome.exit_code, reason=outcome.reason,
                message=outcome.message or None, seconds=outcome.seconds,
                finished_at=_now()))
            s.commit()

    def get(self, job_id: str) -> JobRow | None:
        with self.sessions() as s:
            return s.get(JobRow, job_id)

    def done(self, job_ids: list[str]) -> list[JobRow]:
        """Those of ``job_ids`` that are done."""
        found: list[JobRow] = []
        with self.sessions() as s:
            for start in range(0, len(job_ids), 500):
                found += s.scalars(select(JobRow).where(JobRow.id.in_(job_ids[start:start + 500]),
                                                        JobRow.status == "done")).all()
        return found

    def with_ref(self, prefix: str) -> list[JobRow]:
        """Every job whose ref starts with ``prefix``."""
        with self.sessions() as s:
            return list(s.scalars(select(JobRow).where(JobRow.ref.startswith(prefix))))

    def done_with_ref(self, prefix: str) -> list[JobRow]:
        """The done jobs whose ref starts with ``prefix``."""
        with self.sessions() as s:
            return list(s.scalars(select(JobRow).where(JobRow.ref.startswith(prefix),
                                                       JobRow.status == "done")
                                  .order_by(JobRow.finished_at)))

    def delete(self, job_ids: list[str]) -> None:
        """Forget jobs whose outcome has been taken."""
        with self.sessions() as s:
            s.execute(delete(JobRow).where(JobRow.id.in_(job_ids)))
            s.commit()


def _now() -> datetime:
    return datetime.now(UTC)


def sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite settings for every orthofit database: WAL (readers never wait for the
    writer), foreign keys enforced, a writer waits up to 30 s for another, and deleted
    rows are overwritten with zeros (``secure_delete``), not left readable in free pages."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
