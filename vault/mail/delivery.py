"""Sending what the outbox holds: claim what is due, send it outside any transaction, record
the outcome. A failure is retried with backoff; a server that is down loses nothing (the
message waits, encrypted, in the database). After :data:`MAX_ATTEMPTS` the message is given
up and its content dropped."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import or_, select, update

from vault.base import utcnow
from vault.crypto import DecryptionError
from vault.keystore import KeyStore
from vault.mail.models import MailMessage
from vault.mail.outbox import message_binding
from vault.mail.transport import SendFailed, send
from vault.runtime import Runtime

MAX_ATTEMPTS: Final = 12
"""About two days of retries (30 s, 2 m, 8 m, ... at most 6 h apart)."""

BACKOFF_BASE: Final = timedelta(seconds=30)
BACKOFF_CAP: Final = timedelta(hours=6)
CLAIM_FOR: Final = timedelta(minutes=2)
BATCH: Final = 50


def backoff(attempts: int) -> timedelta:
    """The delay after the ``attempts``-th failure, before jitter."""
    exponent = min(max(attempts, 1) - 1, 12)
    factor: int = 4**exponent
    return min(BACKOFF_BASE * factor, BACKOFF_CAP)


@dataclass(frozen=True, slots=True)
class MailOutcome:
    """What one attempt did; printed by the worker (never an address or a link)."""

    message_id: uuid.UUID
    kind: str
    attempt: int
    result: str
    """``sent``, ``retrying`` or ``abandoned``."""
    error: str | None
    next_attempt_at: datetime | None

    def line(self) -> str:
        text = f"mail {self.message_id} {self.kind} attempt {self.attempt}: {self.result}"
        if self.error:
            text += f" ({self.error})"
        if self.next_attempt_at is not None:
            text += f", next at {self.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
        return text


def _claim(rt: Runtime, now: datetime) -> list[tuple[uuid.UUID, str, int, bytes | None]]:
    """Claim up to :data:`BATCH` due messages (each by one conditional update, so two workers
    never send one message) and decrypt them; committed before anything is sent."""
    claimed: list[tuple[uuid.UUID, str, int, bytes | None]] = []
    with rt.sessions() as db, db.begin():
        due = db.execute(
            select(MailMessage.id, MailMessage.account_id, MailMessage.kind)
            .where(
                MailMessage.sent_at.is_(None),
                MailMessage.abandoned_at.is_(None),
                MailMessage.next_attempt_at <= now,
                or_(MailMessage.locked_until.is_(None), MailMessage.locked_until < now),
            )
            .order_by(MailMessage.next_attempt_at)
            .limit(BATCH)
        ).all()
        keys = KeyStore(db, rt.keys)
        for message_id, account_id, kind in due:
            taken = db.execute(
                update(MailMessage)
                .where(
                    MailMessage.id == message_id,
                    MailMessage.sent_at.is_(None),
                    MailMessage.abandoned_at.is_(None),
                    or_(MailMessage.locked_until.is_(None), MailMessage.locked_until < now),
                )
                .values(locked_until=now + CLAIM_FOR, attempts=MailMessage.attempts + 1)
                .returning(MailMessage.attempts, MailMessage.message_ct)
                .execution_options(synchronize_session=False)
            ).first()
            if taken is None:
                continue  # another worker took it
            attempts, ciphertext = taken
            raw: bytes | None = None
            if ciphertext is not None:
                try:
                    raw = keys.decrypt(message_binding(account_id, message_id, kind), ciphertext)
                except DecryptionError:
                    raw = None
            claimed.append((message_id, kind, int(attempts), raw))
    return claimed


def _record(rt: Runtime, message_id: uuid.UUID, error: str | None, attempts: int) -> MailOutcome:
    now = utcnow()
    values: dict[str, object] = {"locked_until": None}
    next_at: datetime | None = None
    kind = ""
    if error is None:
        values.update(sent_at=now, message_ct=None, last_error=None)
        result = "sent"
    elif attempts >= MAX_ATTEMPTS:
        values.update(abandoned_at=now, message_ct=None, last_error=error)
        result = "abandoned"
    else:
        delay = backoff(attempts)
        jitter = timedelta(milliseconds=secrets.randbelow(int(delay.total_seconds() * 100) + 1))
        next_at = now + delay + jitter
        values.update(next_attempt_at=next_at, last_error=error)
        result = "retrying"
    with rt.sessions() as db, db.begin():
        kind = db.scalar(select(MailMessage.kind).where(MailMessage.id == message_id)) or ""
        db.execute(
            update(MailMessage)
            .where(MailMessage.id == message_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    return MailOutcome(message_id, kind, attempts, result, error, next_at)


def deliver_due(rt: Runtime) -> list[MailOutcome]:
    """Send every message due now (one batch); returns what each attempt did."""
    outcomes = []
    for message_id, _kind, attempts, raw in _claim(rt, utcnow()):
        error: str | None = None
        if raw is None:
            # The key that opens it is gone (the vault was erased): nothing can be sent.
            error = "content unreadable"
            attempts = MAX_ATTEMPTS
        else:
            try:
                send(rt.settings, raw, f"{utcnow():%Y%m%d-%H%M%S}-{message_id}")
            except SendFailed as exc:
                error = str(exc)
        outcomes.append(_record(rt, message_id, error, attempts))
    return outcomes
