"""Single-use links sent by mail. The token is random (256 bits) and only its keyed hash is
stored; a link is claimed by one conditional ``UPDATE ... WHERE used_at IS NULL AND
expires_at > now`` with a row count check, so two clicks cannot both use it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vault.base import utcnow
from vault.crypto import Binding, hash_token, new_token
from vault.errors import InvalidInput
from vault.keystore import KeyStore
from vault.mail.models import AccountLink
from vault.runtime import Runtime

MAX_TOKEN = 128


class LinkUnusable(InvalidInput):
    """Unknown, used or expired: never says which."""

    code = "link_unusable"

    def __init__(self) -> None:
        super().__init__(
            "This link has expired or was already used. Ask for a new one.", field="form"
        )


def _binding(link: AccountLink) -> Binding:
    return Binding(link.account_id, "account_links", "payload_ct", link.id, link.purpose)


def issue(
    db: Session,
    rt: Runtime,
    account_id: uuid.UUID,
    purpose: str,
    valid_for: timedelta,
    *,
    payload: str | None = None,
) -> str:
    """Make a link token (returned once, to be mailed); ``payload`` is kept encrypted."""
    token = new_token()
    now = utcnow()
    link = AccountLink(
        id=uuid.uuid4(),
        account_id=account_id,
        purpose=purpose,
        token_hash=hash_token(rt.secrets.token_hash_key, token),
        created_at=now,
        expires_at=now + valid_for,
    )
    if payload is not None:
        link.payload_ct = KeyStore(db, rt.keys).encrypt(_binding(link), payload.encode())
    db.add(link)
    db.flush()
    return token


def peek(db: Session, rt: Runtime, token: str, purpose: str) -> AccountLink:
    """The usable link for ``token`` (not claimed), or :class:`LinkUnusable`."""
    if not token or len(token) > MAX_TOKEN:
        raise LinkUnusable()
    link = db.scalars(
        select(AccountLink).where(
            AccountLink.token_hash == hash_token(rt.secrets.token_hash_key, token),
            AccountLink.purpose == purpose,
        )
    ).first()
    if link is None or link.used_at is not None or link.expires_at <= utcnow():
        raise LinkUnusable()
    return link


def claim(db: Session, rt: Runtime, token: str, purpose: str) -> AccountLink:
    """Use the link once: the first caller gets it, every later one :class:`LinkUnusable`."""
    link = peek(db, rt, token, purpose)
    now = utcnow()
    used = db.execute(
        update(AccountLink)
        .where(
            AccountLink.id == link.id,
            AccountLink.used_at.is_(None),
            AccountLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise LinkUnusable()
    db.refresh(link)
    return link


def payload_of(db: Session, rt: Runtime, link: AccountLink) -> str:
    if link.payload_ct is None:
        raise LinkUnusable()
    return KeyStore(db, rt.keys).decrypt(_binding(link), link.payload_ct).decode()


def retire(db: Session, account_id: uuid.UUID, purpose: str, now: datetime | None = None) -> None:
    """Use up every outstanding link of ``purpose`` (a newer one, or the thing was done)."""
    db.execute(
        update(AccountLink)
        .where(
            AccountLink.account_id == account_id,
            AccountLink.purpose == purpose,
            AccountLink.used_at.is_(None),
        )
        .values(used_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
