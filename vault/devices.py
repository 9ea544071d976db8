"""Known devices: the browsers an account was signed in from, so that a sign-in from another
one sends the "new sign-in" security notice (which cannot be switched off).

A device is a browser holding the long-lived, HttpOnly device cookie: a random token the vault
sets on the first successful sign-in and keeps for 400 days (the most browsers allow). Each
account stores only a keyed hash of the token bound to the account id, so the same browser's
rows under two accounts cannot be linked, and neither the user agent nor the client address
is stored. The notice names the browser by a coarse label (``Firefox on Linux``) derived from
the user agent at that moment, only in the mail (encrypted in the outbox), never in a log.

Above accounts and the mail channel, like :mod:`vault.signup`."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vault.accounts.models import Account, KnownDevice
from vault.base import utcnow
from vault.crypto import new_token
from vault.mail.notices import queue_security_notice
from vault.runtime import Runtime

DEVICE_COOKIE: Final = "vrm_device"
COOKIE_MAX_AGE: Final = 400 * 86400
"""Seconds: browsers cap a cookie's lifetime at 400 days."""
FORGET_AFTER: Final = timedelta(days=400)
"""A device not seen for this long is forgotten (its cookie has expired anyway)."""
MAX_DEVICES: Final = 50
"""Per account: beyond it, the least recently seen is forgotten."""
_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")


def device_hash(rt: Runtime, account_id: uuid.UUID, token: str) -> bytes:
    return hmac.new(
        rt.secrets.token_hash_key,
        b"device\x00" + account_id.bytes + token.encode(),
        hashlib.sha256,
    ).digest()


_BROWSERS: Final = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS: Final = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def browser_label(user_agent: str) -> str:
    """A coarse name for the browser (``Chrome on Windows``), never the user agent itself."""
    ua = user_agent[:512]
    browser = next((name for mark, name in _BROWSERS if mark in ua), "A browser")
    system = next((name for mark, name in _SYSTEMS if mark in ua), "")
    return f"{browser} on {system}" if system else browser


def signed_in_from(
    db: Session,
    rt: Runtime,
    account: Account,
    token: str | None,
    user_agent: str,
    *,
    now: datetime | None = None,
) -> str:
    """A sign-in of ``account`` succeeded in a browser whose device cookie holds ``token``
    (or none). Returns the token the cookie must hold from now on. A browser the account has
    not seen gets the new-device notice, recorded and queued in the sign-in's transaction."""
    now = now or utcnow()
    if not token or not _TOKEN.match(token):
        token = new_token(32)
    digest = device_hash(rt, account.id, token)
    known = db.scalars(select(KnownDevice).where(KnownDevice.device_hash == digest)).first()
    if known is not None:
        known.last_seen_at = now
        db.flush()
        return token
    try:
        with db.begin_nested():
            db.add(
                KnownDevice(
                    id=uuid.uuid4(),
                    account_id=account.id,
                    device_hash=digest,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
    except IntegrityError:  # the same browser's other sign-in at this moment recorded it
        return token
    _forget_old(db, account.id, now)
    queue_security_notice(
        db, rt, account.id, "new_device", detail=browser_label(user_agent), now=now
    )
    return token


def _forget_old(db: Session, account_id: uuid.UUID, now: datetime) -> None:
    keep = (
        select(KnownDevice.id)
        .where(KnownDevice.account_id == account_id, KnownDevice.last_seen_at > now - FORGET_AFTER)
        .order_by(KnownDevice.last_seen_at.desc())
        .limit(MAX_DEVICES)
    )
    kept = set(db.scalars(keep))
    db.execute(
        delete(KnownDevice)
        .where(KnownDevice.account_id == account_id, KnownDevice.id.not_in(kept))
        .execution_options(synchronize_session=False)
    )


def forget_devices(db: Session, account_id: uuid.UUID) -> int:
    """Every device of the account (erasure)."""
    result = db.execute(
        delete(KnownDevice)
        .where(KnownDevice.account_id == account_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
