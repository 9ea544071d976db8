"""Consent events that have no grant change of their own (a reused refresh token, a replayed code):
remembered, and appended to the consent ledger.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.ledger.store import append, vendor_pseudonym_for
from consent.oauth.models import ConsentEvent
from vault.base import utcnow
from vault.runtime import Runtime

EVENT_TYPES = frozenset({"token.reuse_detected", "code.replayed"})


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
