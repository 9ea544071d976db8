"""API tokens for auditors' scripts: made by an operator, shown once, stored as keyed hashes.

A token stands for its auditor account on the audit API and the log's tiles, beside the portal
session. Revoking one is a conditional ``UPDATE`` that takes effect on the next request: every
use looks the token up, nothing caches it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vault.accounts.models import Account, AccountStatus, ApiToken, Role
from vault.accounts.service import email_index
from vault.base import utcnow
from vault.crypto import hash_token, new_token
from vault.errors import InvalidInput, NotFound
from vault.runtime import Runtime

TOKEN_PREFIX = "vrm_at_"  # noqa: S105 (a public prefix, not a secret)
"""Every auditor token starts so: a secret scanner can find one pasted where it should not be."""
MAX_TOKEN_CHARS = 128
MAX_LABEL = 64
MAX_DAYS = 3650
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just made: ``token`` is its only clear copy."""

    row: ApiToken
    token: str


def _hash(rt: Runtime, token: str) -> bytes:
    return hash_token(rt.secrets.token_hash_key, token)


def auditor_by_email(db: Session, rt: Runtime, email: str) -> Account:
    """The auditor account signing in with ``email``; :class:`NotFound` when there is none."""
    account = db.scalars(
        select(Account).where(Account.email_index == email_index(rt, email.strip()))
    ).one_or_none()
    if account is None or account.role != Role.AUDITOR:
        raise NotFound("There is no auditor account with this address.")
    return account


def issue_token(
    db: Session, rt: Runtime, account: Account, *, label: str, days: int
) -> IssuedToken:
    """Make a token for an auditor ``account``, valid for ``days`` days."""
    label = label.strip()
    if not label or len(label) > MAX_LABEL or not label.isprintable():
        raise InvalidInput(
            f"Give the token a label of 1 to {MAX_LABEL} printable characters.", field="label"
        )
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"A token lives 1 to {MAX_DAYS} days.", field="days")
    if account.role != Role.AUDITOR:
        raise InvalidInput("API tokens are for auditor accounts.", field="email")
    now = utcnow()
    token = TOKEN_PREFIX + new_token()
    row = ApiToken(
        id=uuid.uuid4(),
        account_id=account.id,
        token_hash=_hash(rt, token),
        label=label,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.add(row)
    db.flush()
    return IssuedToken(row, token)


def tokens_of(db: Session, account_id: uuid.UUID) -> list[ApiToken]:
    return list(
        db.scalars(
            select(ApiToken).where(ApiToken.account_id == account_id).order_by(ApiToken.created_at)
        )
    )


def revoke_token(db: Session, token_id: uuid.UUID) -> bool:
    """Revoke the token ``token_id``: True when this call revoked it, False when it already
    was; :class:`NotFound` when there is no such token."""
    revoked = db.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if revoked.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if db.get(ApiToken, token_id) is None:
        raise NotFound("There is no API token with this id.")
    return False


def token_state(row: ApiToken, now: datetime | None = None) -> str:
    now = now or utcnow()
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if row.expires_at <= now else "active"


def lookup_hash(rt: Runtime, token: str) -> bytes | None:
    """The keyed hash a token is looked up by, or None for what cannot be a token (no
    prefix, too long): refused without a query."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        return None
    return _hash(rt, token)


def is_live(
    revoked_at: datetime | None, expires_at: datetime, account_status: str, now: datetime
) -> bool:
    """Whether a token found by its hash still stands for its account: neither revoked nor
    expired, its account active."""
    return revoked_at is None and expires_at > now and account_status == AccountStatus.ACTIVE


def touch_due(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether ``last_used_at`` is to be written now (at most once a minute)."""
    return last_used_at is None or now - last_used_at >= _LAST_USED_RESOLUTION


def resolve_token(db: Session, rt: Runtime, token: str) -> Account | None:
    """The active account a live token stands for, or None (unknown, revoked, expired, or its
    account disabled). One query; ``last_used_at`` is written at most once a minute."""
    token_hash = lookup_hash(rt, token)
    if token_hash is None:
        return None
    found = db.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == token_hash)
    ).first()
    if found is None:
        return None
    row, account = found
    now = utcnow()
    if not is_live(row.revoked_at, row.expires_at, account.status, now):
        return None
    if touch_due(row.last_used_at, now):
        row.last_used_at = now
    return account
