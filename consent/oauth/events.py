"""Consent events that have no grant change of their own (a reused refresh token, a replayed code):
remembered, and appended to the consent ledger, once per token family.

A token family is an authorization code and every token issued from it (refresh rotation keeps
the family). Whoever holds a spent code or refresh token can present it again and again; the
first time is worth recording (the family is revoked then), the rest only say the same thing
again, and would let anyone with a client id grow the append-only ledger at will. So the event
row is inserted with ``ON CONFLICT (family_id) DO NOTHING`` and the ledger entry is appended
only when the row went in: one unique index decides, so replays arriving at once on separate
connections still yield exactly one event and one entry (on PostgreSQL a second insert of the
same family waits for the first transaction and then does nothing; SQLite has one writer).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.ledger.store import record, vendor_pseudonym_for
from consent.oauth.models import ConsentEvent
from vault.base import utcnow
from vault.runtime import Runtime

EVENT_TYPES = frozenset({"token.reuse_detected", "code.replayed"})

log = logging.getLogger("vrm.consent")


def _claim_family(
    conn: Connection,
    event_type: str,
    family_id: uuid.UUID,
    app_id: uuid.UUID | None,
    grant_id: uuid.UUID | None,
) -> uuid.UUID | None:
    """Insert the family's event unless it has one; its id, or None when it had one."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(ConsentEvent)
        .values(
            id=uuid.uuid4(),
            event_type=event_type,
            app_id=app_id,
            grant_id=grant_id,
            occurred_at=utcnow(),
            family_id=family_id,
        )
        .on_conflict_do_nothing(index_elements=[ConsentEvent.family_id])
        .returning(ConsentEvent.id)
    )
    return conn.execute(statement).scalar_one_or_none()


def record_event(
    db: Session,
    event_type: str,
    *,
    family_id: uuid.UUID,
    app_id: uuid.UUID | None,
    grant_id: uuid.UUID | None,
    rt: Runtime | None = None,
) -> uuid.UUID | None:
    """Remember a security event about a token family and append it to the consent ledger
    (same transaction), if it is the family's first: the event's id. None, and nothing
    written, when the family has its event already. Every occurrence is logged."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown consent event {event_type!r}")
    log.warning("%s app=%s family=%s", event_type, app_id, family_id)
    event_id = _claim_family(db.connection(), event_type, family_id, app_id, grant_id)
    if event_id is None:
        return None  # recorded already: by an earlier replay, or one in flight beside this

    grant = db.get(Grant, grant_id) if grant_id else None
    record(
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
    return event_id
