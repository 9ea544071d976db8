"""Scheduled work of intents: closing those past their closing time."""

from __future__ import annotations

from sqlalchemy.orm import Session

from intents.service import IntentService
from vault.jobs import Job
from vault.runtime import Runtime


def _close_intents(db: Session, rt: Runtime) -> str | None:
    closed = IntentService(db, rt).expire_due()
    return f"{closed} intents reached their closing date; their offers lapsed" if closed else None


CLOSE_INTENTS = Job("close intents", _close_intents)
