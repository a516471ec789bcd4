"""What the service's requests carry and its answers hold, split by direction.

``...Create`` models are what a client sends; ``...Public`` models what the
service answers.  They are the OpenAPI schema's contract: JSON keys here are
never renamed, only added.  Every timestamp carries its UTC offset.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["ErrorPublic", "HealthPublic", "CaseCreatedPublic", "VersionPublic", "CasePublic",
           "LabCasePublic", "ApprovalCreate", "KeyCreate", "KeyCreatedPublic",
           "KeyRevokedPublic", "KeySummaryPublic", "OrganisationPublic", "AuditEntryPublic",
           "CaseDeletedPublic", "JobSheetPublic", "ReviewPublic", "ORG_NAME_PATTERN",
           "MAX_VERSION", "MAX_AUDIT_LIMIT", "TEXT_PATTERN", "KEY_PATTERN"]

# An organisation's name: printable characters, no control characters (NUL, newlines).
ORG_NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
#: Text a query may hold: no control characters (PostgreSQL refuses a NUL outright).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: A key or its prefix, as keys are written.
KEY_PATTERN = r"^[A-Za-z0-9_-]+$"
#: The highest version number a query may name.
MAX_VERSION = 100_000
#: The most audit entries one page returns.
MAX_AUDIT_LIMIT = 10_000


class ErrorPublic(BaseModel):
    """Every error answer: what is wrong and what to do, and a stable code."""

    detail: str = Field(description="What is wrong and what to do, for a clinician.")
    code: str = Field(description="A stable word for programs, e.g. not_found, invalid.")


class HealthPublic(BaseModel):
    status: Literal["ok"]
    version: str


class CaseCreatedPublic(BaseModel):
    """A case or version accepted: its design job is queued."""

    case_id: str
    version: int
    status: str
    links: dict[str, str]
    warnings: list[str] = Field(
        default_factory=list,
        description="Things to correct that did not stop the upload, e.g. a case_ref "
                    "that looks like a patient's name or date of birth.")


class VersionPublic(BaseModel):
    version: int
    status: Literal["queued", "running", "ready", "failed"]
    attempts: int
    exit_code: int | None
    reason: str | None
    message: str | None
    side: str | None
    device: str | None
    approved: bool
    created_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    links: dict[str, str]


class CasePublic(BaseModel):
    """A case as its clinic sees it: every version."""

    case_id: str
    case_ref: str
    approved_version: int | None
    created_at: AwareDatetime
    versions: list[VersionPublic]
    links: dict[str, str]


class LabCasePublic(BaseModel):
    """A case as its print lab sees it: the approved version only."""

    case_id: str
    case_ref: str
    approved_version: int | None
    side: str | None
    device: str | None
    links: dict[str, str]


class ApprovalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=MAX_VERSION)
    lab: str = Field(min_length=1, max_length=100, pattern=ORG_NAME_PATTERN,
                     description="The print lab's organisation name.")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    org: str = Field(min_length=1, max_length=100, pattern=ORG_NAME_PATTERN)
    role: Literal["orthotist", "lab", "admin"]


class KeyCreatedPublic(BaseModel):
    key: str = Field(description="The key itself: shown once, store it now.")
    prefix: str
    org: str
    role: str
    note: str


class KeyRevokedPublic(BaseModel):
    prefix: str
    revoked: bool


class KeySummaryPublic(BaseModel):
    prefix: str
    role: str
    created_at: AwareDatetime
    revoked: bool


class OrganisationPublic(BaseModel):
    name: str
    created_at: AwareDatetime
    keys: list[KeySummaryPublic]


class AuditEntryPublic(BaseModel):
    """One request that touched a case or an admin route."""

    id: int
    at: AwareDatetime
    key_prefix: str | None = Field(description="The acting key's prefix; null without a "
                                               "known key.")
    org: str | None
    role: str | None
    method: str | None
    route: str | None = Field(description="The route's path template.")
    status: int | None = Field(description="The HTTP status the request was answered.")
    action: str = Field(description="What was done, or 'denied' for any refusal.")
    case_id: str | None
    detail: dict[str, Any] | None


class CaseDeletedPublic(BaseModel):
    case_id: str
    deleted: bool


class JobSheetPublic(BaseModel):
    """What a print lab needs, and nothing about the patient but the case reference."""

    case_ref: str
    version: int
    side: str | None
    device: str
    material: str
    printer: str
    orientation: list[dict[str, Any]] | None
    shank_to_layers_deg: float | None
    thickness_mm: float
    mass_g: float | None
    volume_cm3: float | None
    checks_passed: bool
    files: dict[str, str]


class ReviewPublic(BaseModel):
    """The review page's data for one version; the figures once it is ready."""

    model_config = ConfigDict(extra="allow")
    case_id: str
    case_ref: str
    version: int
    status: str
    reason: str | None
    message: str | None
    approved_version: int | None
    versions: list[int]
    side: str | None
    device: str | None
    prescription: dict[str, Any]
    checks: dict[str, Any] | None = None
    measurements: dict[str, Any] | None = None
    stiffness: dict[str, Any] | None = None
    #: What the clinician must check before approving (side, estimated landmarks...).
    warnings: list[str] | None = None
    passed: bool | None = None
    glb: str | None = None

