"""The outbox: a message is queued in the transaction of the change it reports, so it exists if and
only if that change was committed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.models import WebhookMessage
from vault.base import utcnow

EVENT_TYPES: Final = frozenset(
    {
        "consent.granted",
        "consent.changed",
        "consent.revoked",
        "offer.accepted",
        "offer.declined",
        "offer.lapsed",
        "intent.withdrawn",
        "subject.erased",
    }
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def enqueue(
    db: Session,
    app: VendorApp,
    event_type: str,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
) -> WebhookMessage | None:
    """Queue ``event_type`` for ``app`` in the caller's transaction (flushed, not committed).

    Returns ``None`` when the app has no webhook URL. ``data`` is sent to the vendor as is:
    it must be JSON and must name the individual only as the vendor already knows them (the
    pairwise subject), never with personal data.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(
            f"unknown webhook event type {event_type!r}; expected one of {sorted(EVENT_TYPES)}"
        )
    if not app.webhook_url:
        return None
    now = now or utcnow()
    message = WebhookMessage(
        id=uuid.uuid4(),
        app_id=app.id,
        event_type=event_type,
        payload={"type": event_type, "timestamp": _iso(now), "data": data},
        created_at=now,
        next_attempt_at=now,
        attempts=0,
    )
    db.add(message)
    db.flush()
    return message
