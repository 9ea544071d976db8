"""Scheduled work of the mail channel: the batched notices that are due, then the outbox."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vault.jobs import Job
from vault.mail.delivery import deliver_due
from vault.mail.notices import send_due_notices
from vault.runtime import Runtime


def _notices(db: Session, rt: Runtime) -> str | None:
    queued = send_due_notices(db, rt)
    return f"queued {queued} offer notice mail(s)" if queued else None


def _send(_db: Session, rt: Runtime) -> str | None:
    # Sending happens outside the job's transaction: each message is claimed and its outcome
    # recorded in short transactions of their own, so no row stays locked while a mail
    # server answers.
    outcomes = deliver_due(rt)
    return "\n".join(outcome.line() for outcome in outcomes) or None


SEND_NOTICES = Job("queue due notice mail", _notices)
SEND_MAIL = Job("send mail", _send)
