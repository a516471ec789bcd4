"""The service's records: organisations, keys, cases, versions and the audit log.

SQLAlchemy 2 models; SQLite by default, PostgreSQL by URL.  Timestamps are
UTC.  Nothing here holds a patient's name: cases carry a case reference.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint,
                        create_engine, event)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from orthofit.jobstore import sqlite_pragmas

__all__ = ["Base", "Organisation", "ApiKey", "Case", "Version", "AuditEntry", "connect", "now"]

ROLES = ("orthotist", "lab", "admin")
STATUSES = ("queued", "running", "ready", "failed")


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Organisation(Base):
    """A clinic or a lab."""

    __tablename__ = "organisations"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ApiKey(Base):
    """A bearer key: shown once, stored as its SHA-256."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters, to tell keys apart in lists and logs.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    org: Mapped[Organisation] = relationship()


class Case(Base):
    """One patient's device, over its versions; ``lab`` once released."""

    __tablename__ = "cases"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    case_ref: Mapped[str] = mapped_column(String(64))
    scan_format: Mapped[str] = mapped_column(String(8))
    scan_sha256: Mapped[str] = mapped_column(String(64))
    approved_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lab_org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"),
                                                   nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    versions: Mapped[list["Version"]] = relationship(
        back_populates="case", order_by="Version.number", cascade="all, delete-orphan")


class Version(Base):
    """A prescription for a case and its design job."""

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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    case: Mapped[Case] = relationship(back_populates="versions")


class AuditEntry(Base):
    """Who did what to which case, and when."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    org: Mapped[str | None] = mapped_column(String(100), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    case_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)


def connect(url: str) -> sessionmaker:
    """A session factory on ``url``, with the tables created."""
    kwargs = {}
    if url.startswith("sqlite"):
        # Worker threads share the engine; SQLite waits for a writer instead of failing.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", sqlite_pragmas)
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


def engine_of(factory: sessionmaker) -> Engine:
    return factory.kw["bind"]
