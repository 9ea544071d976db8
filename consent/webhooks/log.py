"""The delivery log on the vendor's console page: recent messages with their attempts, and the
health of the app's endpoint."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.webhooks.models import WebhookAttempt, WebhookMessage


@dataclass(frozen=True, slots=True)
class AttemptLogEntry:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryLogEntry:
    message_id: uuid.UUID
    event_type: str
    created_at: datetime
    status: str
    """``pending`` (not tried yet), ``retrying``, ``delivered`` or ``abandoned``."""
    next_attempt_at: datetime | None
    """When the worker tries again; ``None`` once delivered or abandoned."""
    delivered_at: datetime | None
    abandoned_at: datetime | None
    payload: dict[str, Any]
    """What the vendor's endpoint receives (the same for every attempt)."""
    attempts: list[AttemptLogEntry] = field(default_factory=list)
    """Oldest first."""


@dataclass(frozen=True, slots=True)
class EndpointHealth:
    """How the app's webhook endpoint has been answering."""

    last_success_at: datetime | None
    """The last attempt it answered with 2xx."""
    failures_in_a_row: int
    """Failed attempts since then (or ever, when it never answered)."""
    waiting: int
    """Messages not yet delivered nor given up (the queue depth)."""
    oldest_waiting_since: datetime | None
    next_attempt_at: datetime | None
    """When the first waiting message (which holds back the others) is tried next."""


def endpoint_health(db: Session, app_id: uuid.UUID) -> EndpointHealth:
    """Four small queries on the app's messages and attempts."""
    of_app = select(WebhookMessage.id).where(WebhookMessage.app_id == app_id)
    last_success = db.scalar(
        select(func.max(WebhookAttempt.attempted_at)).where(
            WebhookAttempt.message_id.in_(of_app), WebhookAttempt.error.is_(None)
        )
    )
    failures = select(func.count()).where(
        WebhookAttempt.message_id.in_(of_app), WebhookAttempt.error.is_not(None)
    )
    if last_success is not None:
        failures = failures.where(WebhookAttempt.attempted_at > last_success)
    waiting = (
        WebhookMessage.app_id == app_id,
        WebhookMessage.delivered_at.is_(None),
        WebhookMessage.abandoned_at.is_(None),
    )
    count, oldest = db.execute(
        select(func.count(), func.min(WebhookMessage.created_at)).where(*waiting)
    ).one()
    head = db.scalar(
        select(WebhookMessage.next_attempt_at)
        .where(*waiting)
        .order_by(WebhookMessage.created_at, WebhookMessage.id)
        .limit(1)
    )
    return EndpointHealth(
        last_success_at=last_success,
        failures_in_a_row=int(db.scalar(failures) or 0),
        waiting=int(count),
        oldest_waiting_since=oldest,
        next_attempt_at=head,
    )


def delivery_log(db: Session, app_id: uuid.UUID, limit: int = 50) -> list[DeliveryLogEntry]:
    """The app's most recent messages, newest first, each with its attempts."""
    limit = max(1, min(limit, 500))
    messages = list(
        db.scalars(
            select(WebhookMessage)
            .where(WebhookMessage.app_id == app_id)
            .order_by(WebhookMessage.created_at.desc(), WebhookMessage.id)
            .limit(limit)
        )
    )
    by_message: dict[uuid.UUID, list[AttemptLogEntry]] = {m.id: [] for m in messages}
    if messages:
        for attempt in db.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id.in_(list(by_message)))
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        ):
            by_message[attempt.message_id].append(
                AttemptLogEntry(
                    attempted_at=attempt.attempted_at,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    duration_ms=attempt.duration_ms,
                )
            )
    return [
        DeliveryLogEntry(
            message_id=m.id,
            event_type=m.event_type,
            created_at=m.created_at,
            status=_status(m),
            next_attempt_at=None if m.delivered_at or m.abandoned_at else m.next_attempt_at,
            delivered_at=m.delivered_at,
            abandoned_at=m.abandoned_at,
            payload=m.payload,
            attempts=by_message[m.id],
        )
        for m in messages
    ]


def _status(message: WebhookMessage) -> str:
    if message.delivered_at is not None:
        return "delivered"
    if message.abandoned_at is not None:
        return "abandoned"
    return "retrying" if message.attempts else "pending"
