"""The outbox: a message is queued in the transaction of the change it reports, so it exists if and
only if that change was committed.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.events import WebhookEvent
from consent.webhooks.models import WebhookMessage
from vault.base import utcnow


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def enqueue(
    db: Session, app: VendorApp, event: WebhookEvent, *, now: datetime | None = None
) -> WebhookMessage | None:
    """Queue ``event`` for ``app`` in the caller's transaction (flushed, not committed).

    Returns ``None`` when the app has no webhook URL. The message is ``{"type", "timestamp",
    "data"}``: the event's type and its model as JSON, which names the individual only as the
    vendor already knows them (a pseudonym), never with personal data.
    """
    if not app.webhook_url:
        return None
    now = now or utcnow()
    # The app's messages are delivered in ``created_at`` order: two queued in one session (one
    # transaction) at the same clock reading keep the order they were queued in.
    last: dict[uuid.UUID, datetime] = db.info.setdefault("webhook_queued_at", {})
    created_at = max(now, last[app.id] + timedelta(microseconds=1)) if app.id in last else now
    last[app.id] = created_at
    message = WebhookMessage(
        id=uuid.uuid4(),
        app_id=app.id,
        event_type=event.event_type,
        payload={
            "type": event.event_type,
            "timestamp": _iso(now),
            "data": event.model_dump(mode="json"),
        },
        created_at=created_at,
        next_attempt_at=now,
        attempts=0,
    )
    db.add(message)
    db.flush()
    return message
