"""API keys: random, shown once, stored as their SHA-256, with a role and an organisation."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import ROLES, ApiKey, Organisation, now

__all__ = ["create_key", "revoke_key", "find_key", "hash_key"]

_PREFIX = "ofk_"


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(session: Session, org_name: str, role: str) -> tuple[ApiKey, str]:
    """A new key for ``org_name`` (created if new); returns the record and the key itself."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    org_name = org_name.strip()
    if not org_name or len(org_name) > 100:
        raise ValueError("the organisation name must be 1 to 100 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in org_name):
        raise ValueError("the organisation name must not hold control characters "
                         "(a NUL, a tab or a line break); type it as it is written")
    org = session.scalar(select(Organisation).where(Organisation.name == org_name))
    if org is None:
        org = Organisation(name=org_name)
        session.add(org)
        session.flush()
    token = _PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(org_id=org.id, role=role, key_hash=hash_key(token),
                 prefix=token[:len(_PREFIX) + 6])
    session.add(key)
    session.commit()
    return key, token


def revoke_key(session: Session, key_or_prefix: str) -> ApiKey:
    """Revoke a key given whole or by the prefix lists show."""
    if key_or_prefix.startswith(_PREFIX) and len(key_or_prefix) > 20:
        matches = list(session.scalars(select(ApiKey).where(
            ApiKey.key_hash == hash_key(key_or_prefix))))
    else:
        matches = list(session.scalars(select(ApiKey).where(ApiKey.prefix == key_or_prefix)))
    if len(matches) != 1:
        raise LookupError(f"no single key matches {key_or_prefix!r}")
    key = matches[0]
    if key.revoked_at is None:
        key.revoked_at = now()
        session.commit()
    return key


def find_key(session: Session, token: str) -> ApiKey | None:
    """The live key for a bearer token, or None."""
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token)))
    if key is None or key.revoked_at is not None:
        return None
    return key
