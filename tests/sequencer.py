"""The ledger's sequencer for tests: events are recorded pending and get their index when
:func:`consent.ledger.store.integrate` runs (``vrm worker`` runs it several times a second).
Tests that need an index right away record and integrate in one step here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from consent.ledger.models import LedgerEntry
from consent.ledger.store import Integrated, integrate, record
from vault.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Appended:
    index: int
    leaf_hash: bytes


def sequence(db: Session) -> Integrated:
    """Integrate every pending event now, in the test's transaction."""
    return integrate(db)


def run_sequencer(rt: Runtime) -> Integrated:
    """Integrate every pending event in a transaction of its own, as ``vrm worker`` does."""
    with rt.sessions() as session, session.begin():
        return integrate(session)


def append(db: Session, event: dict[str, Any], *, now: datetime | None = None) -> Appended:
    """Record ``event`` and integrate it (with anything else pending) at once."""
    pending = record(db, event, now=now)
    index = integrate(db).indexes[pending.id]
    return Appended(index, bytes(db.get_one(LedgerEntry, index).leaf_hash))


def append_events(
    db: Session, n: int, kind: Callable[[int], str] = lambda _: "grant.given"
) -> None:
    """``n`` events shaped like real consent events (pseudonymous subjects ``p-<i>``), each
    appended at once; ``kind(i)`` names the i-th one's type."""
    for i in range(n):
        append(
            db,
            {
                "event_type": kind(i),
                "vendor_id": None,
                "subject": f"p-{i:032x}",
                "fields": ["email"],
                "purpose": "Deliver your orders to your door.",
                "agreement_id": "service-only",
                "consent_text_hash": None,
            },
        )
