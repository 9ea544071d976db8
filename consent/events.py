"""Consent events that have no grant change of their own (e.g. refresh-token reuse).

Grant changes are reported to vendors by webhooks; this table keeps the security events the
vault itself must remember. The verifiable consent ledger builds on these records.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from vault.base import Base, IdMixin, utcnow
from vault.runtime import Runtime

EVENT_TYPES = frozenset({"token.reuse_detected", "code.replayed"})


class ConsentEvent(IdMixin, Base):
    __tablename__ = "consent_events"

    event_type: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="SET NULL"), index=True
    )
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("grants.id", ondelete="SET NULL"), index=True
    )
    occurred_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"ConsentEvent(id={self.id}, type={self.event_type})"


def record_event(
    db: Session,
    event_type: str,
    *,
    app_id: uuid.UUID | None,
    grant_id: uuid.UUID | None,
    rt: Runtime | None = None,
) -> ConsentEvent:
    """Remember a security event and append it to the consent ledger (same transaction)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown consent event {event_type!r}")
    event = ConsentEvent(
        event_type=event_type, app_id=app_id, grant_id=grant_id, occurred_at=utcnow()
    )
    db.add(event)
    db.flush()
    from consent.ledger.store import append, vendor_pseudonym_for
    from consent.models import Grant

    grant = db.get(Grant, grant_id) if grant_id else None
    append(
        db,
        {
            "event_type": event_type,
            "vendor_id": str(app_id) if app_id else None,
            "subject": (
                vendor_pseudonym_for(db, rt, grant.individual_id, grant.app_id)
                if grant and rt
                else None
            ),
            "grant_id": str(grant_id) if grant_id else None,
            "fields": list(grant.fields) if grant else [],
            "purpose": grant.purpose if grant else None,
            "agreement_id": grant.agreement_id if grant else None,
            "consent_text_hash": None,
        },
    )
    return event
