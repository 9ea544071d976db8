"""Queueing mail: in the caller's transaction, so a message exists if and only if what caused
it was committed. The message is encrypted under the data key of the account it concerns."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Session

from vault.base import utcnow
from vault.crypto import Binding
from vault.keystore import KeyStore
from vault.mail.compose import Letter, render
from vault.mail.models import MailMessage
from vault.runtime import Runtime


def message_binding(account_id: uuid.UUID, message_id: uuid.UUID, kind: str) -> Binding:
    return Binding(account_id, "mail_outbox", "message_ct", message_id, kind)


def queue_mail(
    db: Session,
    rt: Runtime,
    account_id: uuid.UUID,
    kind: str,
    to: str,
    letter: Letter,
    *,
    now: datetime | None = None,
) -> MailMessage:
    """Queue ``letter`` to ``to`` about ``account_id`` (flushed, not committed)."""
    now = now or utcnow()
    message_id = uuid.uuid4()
    raw = render(letter, rt.settings, to).as_bytes()
    ciphertext = KeyStore(db, rt.keys).encrypt(message_binding(account_id, message_id, kind), raw)
    message = MailMessage(
        id=message_id,
        account_id=account_id,
        kind=kind,
        message_ct=ciphertext,
        created_at=now,
        next_attempt_at=now,
        attempts=0,
    )
    db.add(message)
    db.flush()
    return message
