"""The service's records: organisations, keys, cases, versions and the audit log.

SQLAlchemy 2 models; SQLite by default, PostgreSQL by URL.  Timestamps are
UTC and come back with their offset on every database (SQLite keeps none,
so :class:`UTCDateTime` restores it).  Nothing here holds a patient's name:
cases carry a case reference.  SQLite runs with ``secure_delete`` (the
pragmas of :func:`orthofit.jobstore.sqlite_pragmas`), and :func:`forget`
checkpoints the write-ahead log after a deletion, so a deleted case's rows
cannot be read back from the database files.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import (JSON, DateTime, ForeignKey, Integer, String, Text, TypeDecorator,
                        UniqueConstraint, create_engine, event, inspect, text)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from orthofit.jobstore import sqlite_pragmas

__all__ = ["Base", "Organisation", "ApiKey", "Case", "Version", "AuditEntry", "UTCDateTime",
           "connect", "engine_of", "forget", "now"]

log = logging.getLogger(__name__)

ROLES = ("orthotist", "lab", "admin")
STATUSES = ("queued", "running", "ready", "failed")


def now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and read back as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    """A clinic or a lab."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class ApiKey(Base):
    """A bearer key: shown once, stored as its SHA-256."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters, to tell keys apart in lists and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    org: Mapped[Organisation] = relationship()


class Case(Base):
    """One patient's device, over its versions; ``lab`` once released."""

    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    case_ref: Mapped[str] = mapped_column(String(64))
    scan_format: Mapped[str] = mapped_column(String(8))
    # SHA-256 of the scan as it was uploaded (what outputs record as their input).
    scan_sha256: Mapped[str] = mapped_column(String(64))
    # SHA-256 of the scan as stored: its headers and comments dropped.
    stored_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lab_org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"),
                                                   nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    versions: Mapped[list["Version"]] = relationship(
        back_populates="case", order_by="Version.number", cascade="all, delete-orphan")


class Version(Base):
    """A prescription for a case and its design job.

    A running job holds a lease: the runner that claimed it (``lease_owner``)
    renews ``lease_expires_at`` with each heartbeat, and another runner takes
    the job over only once the lease has lapsed.
    """

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("case_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    prescription: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    side: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    case: Mapped[Case] = relationship(back_populates="versions")


class AuditEntry(Base):
    """One request that touched a case or an admin route: who, what, how it ended, when."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, index=True)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    key_prefix: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    org: Mapped[str | None] = mapped_column(String(100), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # The route's path template, e.g. /cases/{case_id}/approve.
    route: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)


def connect(url: str) -> sessionmaker:
    """A session factory on ``url``, with the tables created (and columns added since)."""
    kwargs = {}
    if url.startswith("sqlite"):
        # Worker threads share the engine; SQLite waits for a writer instead of failing.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", sqlite_pragmas)
    Base.metadata.create_all(engine)
    _add_new_columns(engine)
    return sessionmaker(engine, expire_on_commit=False)


def engine_of(factory: sessionmaker) -> Engine:
    return factory.kw["bind"]


def forget(engine: Engine) -> None:
    """After a deletion: fold SQLite's write-ahead log into the database and empty it.

    With ``secure_delete`` on, the freed pages were zeroed; the checkpoint
    takes the old page images out of the WAL file too.  PostgreSQL: nothing.
    """
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if busy:
            log.warning("db: the write-ahead log could not be emptied now (a reader is busy); "
                        "it is emptied at the next deletion or restart")


def _add_new_columns(engine: Engine) -> None:
    """Add the nullable columns later versions brought to a database made before them."""
    existing = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name in have or not column.nullable:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN '
                                        f'"{column.name}" {kind}'))
