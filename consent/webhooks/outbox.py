"""The outbox: a message is queued in the transaction of the change it reports, so it exists if and
only if that change was committed, and that commit wakes the delivery loop (``wake``). The
vendor's console can queue a message again (a copy, at the end of the app's queue) and ask for
the waiting ones to be tried at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.events import WebhookEvent
from consent.webhooks.models import WebhookMessage
from consent.webhooks.wake import queued
from vault.base import utcnow
from vault.errors import Conflict, NotFound


class Addressee(Protocol):
    """What queueing needs of an app: its id and webhook URL (a :class:`VendorApp`, or a row
    of those two columns)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def webhook_url(self) -> str | None: ...


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
    return _queue(db, app, event.event_type, _payload(event, now), now)


def enqueue_many(
    db: Session, events: Sequence[tuple[Addressee, WebhookEvent]], *, now: datetime | None = None
) -> int:
    """Queue one event for each of many apps, as :func:`enqueue` does, in one INSERT (one
    round trip however many apps: what publishing an intent to its subscribers needs).
    Apps without a webhook URL are skipped; returns how many messages were queued."""
    now = now or utcnow()
    last: dict[uuid.UUID, datetime] = db.info.setdefault("webhook_queued_at", {})
    rows = []
    for app, event in events:
        if not app.webhook_url:
            continue
        created_at = max(now, last[app.id] + timedelta(microseconds=1)) if app.id in last else now
        last[app.id] = created_at
        rows.append(
            {
                "id": uuid.uuid4(),
                "app_id": app.id,
                "event_type": event.event_type,
                "payload": _payload(event, now),
                "created_at": created_at,
                "next_attempt_at": now,
                "attempts": 0,
            }
        )
    if rows:
        # One executemany of a Core INSERT: SQLAlchemy batches it into multi-row VALUES
        # statements ("insertmanyvalues"), a round trip for the usual fan-out.
        db.connection().execute(insert(WebhookMessage), rows)
        queued(db)
    return len(rows)


def _payload(event: WebhookEvent, now: datetime) -> dict[str, Any]:
    return {"type": event.event_type, "timestamp": _iso(now), "data": event.model_dump(mode="json")}


def _queue(
    db: Session, app: VendorApp, event_type: str, payload: dict[str, Any], now: datetime | None
) -> WebhookMessage:
    now = now or utcnow()
    # The app's messages are delivered in ``created_at`` order: two queued in one session (one
    # transaction) at the same clock reading keep the order they were queued in.
    last: dict[uuid.UUID, datetime] = db.info.setdefault("webhook_queued_at", {})
    created_at = max(now, last[app.id] + timedelta(microseconds=1)) if app.id in last else now
    last[app.id] = created_at
    message = WebhookMessage(
        id=uuid.uuid4(),
        app_id=app.id,
        event_type=event_type,
        payload=payload,
        created_at=created_at,
        next_attempt_at=now,
        attempts=0,
    )
    db.add(message)
    db.flush()
    queued(db)
    return message


def resend(
    db: Session, app: VendorApp, message_id: str | uuid.UUID, *, now: datetime | None = None
) -> WebhookMessage:
    """Queue a delivered or given-up message of ``app`` again: a copy with a new ``webhook-id``
    (so a receiver that deduplicates takes it) and the same payload (its ``timestamp`` still
    says when the event happened), at the end of the app's queue, so it does not pass the
    messages queued before it."""
    try:
        key = message_id if isinstance(message_id, uuid.UUID) else uuid.UUID(message_id)
    except ValueError:
        raise NotFound("There is no such webhook message for this app.") from None
    message = db.get(WebhookMessage, key)
    if message is None or message.app_id != app.id:
        raise NotFound("There is no such webhook message for this app.")
    if message.delivered_at is None and message.abandoned_at is None:
        raise Conflict("This message is still waiting to be delivered; it cannot be resent.")
    if not app.webhook_url:
        raise Conflict("The app has no webhook URL: set one before resending.")
    return _queue(db, app, message.event_type, dict(message.payload), now)


def retry_now(db: Session, app: VendorApp, *, now: datetime | None = None) -> int:
    """Make every message waiting for ``app`` due at once (the endpoint is back); returns how
    many were waiting. They still go out in order."""
    now = now or utcnow()
    waiting = db.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.app_id == app.id,
            WebhookMessage.delivered_at.is_(None),
            WebhookMessage.abandoned_at.is_(None),
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    count = int(waiting.rowcount)  # type: ignore[attr-defined]
    if count:
        queued(db)
    return count


@dataclass(frozen=True)
class QueueStats:
    waiting: int
    """Messages neither delivered nor abandoned, over every app."""
    oldest_age_seconds: float | None
    """How long the oldest of them has waited; None when none waits."""


def queue_stats(db: Session, now: datetime | None = None) -> QueueStats:
    """The waiting messages, from the partial index of waiting messages (small however long
    the history grows): one statement."""
    now = now or utcnow()
    waiting, oldest = db.execute(
        select(func.count(), func.min(WebhookMessage.created_at)).where(
            WebhookMessage.delivered_at.is_(None), WebhookMessage.abandoned_at.is_(None)
        )
    ).one()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
    return QueueStats(int(waiting), age)
