"""One delivery attempt: the POST with an overall deadline, its outcome recorded, and the backoff
before the next.

Order: each app's messages go out in the order they were queued. Only the oldest unsettled
message of an app (its head: not delivered, not given up) is ever due, so a failing message
holds back the later ones of its app until it is delivered or given up; other apps are not
held back. When a delivery succeeds, every waiting message to the same webhook URL is due at
once instead of at its own backoff time. A message given up after :data:`MAX_ATTEMPTS` does
not block its queue for days per message: what was queued behind it before then gets one
attempt each, in order, and is given up too if that fails (a dead endpoint's queue drains);
what is queued later is retried as usual.

Delivery is at least once: a worker that dies after the POST but before recording it leaves the
message to be delivered again once its claim expires. Receivers deduplicate on ``webhook-id``,
which stays the same across retries.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import ColumnElement, and_, exists, insert, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from consent.vendors.models import VendorApp
from consent.webhooks.models import WebhookAttempt, WebhookMessage

MAX_ATTEMPTS: Final = 10
"""After this many failed attempts a message is abandoned (about three and a half days)."""


BACKOFF_BASE: Final = timedelta(seconds=30)


BACKOFF_FACTOR: Final = 4


BACKOFF_CAP: Final = timedelta(hours=24)


BACKOFF_JITTER: Final = 0.1
"""Each delay is lengthened by up to this fraction, so failed messages do not retry in step."""


CLAIM_FOR: Final = timedelta(seconds=60)
"""How long a claim keeps other workers away; longer than one attempt can take (the
address check's DNS lookup and the ``webhook_deadline_seconds`` setting, at most 60 s)."""


_ERROR_MAX: Final = 300


def backoff(attempts: int) -> timedelta:
    """The delay after the ``attempts``-th failure, before jitter: 30 s, 2 m, 8 m, 32 m, ...,
    at most 24 h."""
    exponent = min(max(attempts, 1) - 1, 16)
    factor = int(BACKOFF_FACTOR**exponent)
    return min(BACKOFF_BASE * factor, BACKOFF_CAP)


def _with_jitter(delay: timedelta) -> timedelta:
    spread = int(delay.total_seconds() * 1000 * BACKOFF_JITTER)
    return delay + timedelta(milliseconds=secrets.randbelow(spread + 1))


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one attempt did; what ``vrm worker`` prints (never the payload)."""

    message_id: uuid.UUID
    client_id: str
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    result: str
    """``delivered``, ``retrying``, ``abandoned``, or ``claim expired`` when the attempt took
    so long that another worker took the message over (the attempt is logged all the same)."""
    next_attempt_at: datetime | None


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _short(text: str) -> str:
    return text if len(text) <= _ERROR_MAX else text[: _ERROR_MAX - 1] + "…"


async def _post(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, deadline: float
) -> tuple[int | None, str | None]:
    """POST and return (status code, error). The response body is never read.

    ``deadline`` bounds the whole attempt (connecting, sending, waiting for the status line),
    not each read: an endpoint that trickles a byte now and then is cut off all the same.
    """
    try:
        async with asyncio.timeout(deadline):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        return None, "timed out waiting for an answer"
    except httpx.ConnectError:
        return None, "could not connect"
    except httpx.HTTPError as exc:
        return None, f"request failed ({type(exc).__name__})"
    if 200 <= status < 300:
        return status, None
    if 300 <= status < 400:
        return status, f"HTTP {status}: redirects are not followed"
    return status, f"HTTP {status}"


def _unsettled(message: type[WebhookMessage]) -> tuple[ColumnElement[bool], ...]:
    return (message.delivered_at.is_(None), message.abandoned_at.is_(None))


def _is_head() -> ColumnElement[bool]:
    """The message is its app's oldest unsettled one (queue order: ``created_at``, then id)."""
    earlier = aliased(WebhookMessage)
    return ~exists().where(
        earlier.app_id == WebhookMessage.app_id,
        *_unsettled(earlier),
        or_(
            earlier.created_at < WebhookMessage.created_at,
            and_(earlier.created_at == WebhookMessage.created_at, earlier.id < WebhookMessage.id),
        ),
    )


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return (
        *_unsettled(WebhookMessage),
        WebhookMessage.next_attempt_at <= now,
        or_(WebhookMessage.locked_until.is_(None), WebhookMessage.locked_until < now),
        _is_head(),
    )


def _waited_behind_a_given_up_message(db: Session, message: WebhookMessage) -> bool:
    """Whether a message ahead of ``message`` in its app's queue was given up after
    ``message`` was queued."""
    earlier = aliased(WebhookMessage)
    return bool(
        db.scalar(
            select(
                exists().where(
                    earlier.app_id == message.app_id,
                    earlier.abandoned_at >= message.created_at,
                    or_(
                        earlier.created_at < message.created_at,
                        and_(earlier.created_at == message.created_at, earlier.id < message.id),
                    ),
                )
            )
        )
    )


def _send_waiting_now(db: Session, urls: Collection[str], now: datetime) -> None:
    """The endpoints answered: every message waiting for one of them is due now."""
    db.execute(
        update(WebhookMessage)
        .where(
            *_unsettled(WebhookMessage),
            WebhookMessage.next_attempt_at > now,
            WebhookMessage.app_id.in_(
                select(VendorApp.id).where(VendorApp.webhook_url.in_(list(urls)))
            ),
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class Attempted:
    """One POST's result, waiting to be recorded (never the payload)."""

    message_id: uuid.UUID
    now: datetime
    """The clock the message was claimed at: the attempt's time."""
    lock: datetime
    """The claim (``locked_until``) taken for it."""
    status: int | None
    error: str | None
    duration_ms: int
    client_id: str
    event_type: str
    url: str | None


def _record_many(
    session_factory: sessionmaker[Session], attempted: Sequence[Attempted]
) -> list[DeliveryOutcome]:
    """Record many attempts and their outcomes in one transaction, in the order given.

    Every attempt is logged (one multi-row INSERT); the delivered messages are settled by one
    ``UPDATE`` per claim (the messages claimed together share it); a failure is settled on
    its own (retry with backoff, or give up), as is the rest of the rare cases. Each message
    is settled only while its claim holds: if the claim expired and another worker took the
    message, that worker decides its state. A delivery makes every message waiting for the
    same endpoint due at once (one ``UPDATE`` for all the endpoints that answered).
    """
    if not attempted:
        return []
    outcomes: dict[uuid.UUID, DeliveryOutcome] = {}
    with session_factory() as db, db.begin():
        db.execute(
            insert(WebhookAttempt),
            [
                {
                    "id": uuid.uuid4(),
                    "message_id": a.message_id,
                    "attempted_at": a.now,
                    "status_code": a.status,
                    "error": _short(a.error) if a.error else None,
                    "duration_ms": a.duration_ms,
                }
                for a in attempted
            ],
        )
        for a in attempted:
            if a.error is not None:
                outcomes[a.message_id] = _settle_failure(db, a)
        claims: dict[tuple[datetime, datetime], list[Attempted]] = {}
        for a in attempted:
            if a.error is None:
                claims.setdefault((a.lock, a.now), []).append(a)
        for (lock, now), group in claims.items():
            settled: dict[uuid.UUID, int] = dict(
                db.execute(
                    update(WebhookMessage)
                    .where(
                        WebhookMessage.id.in_([a.message_id for a in group]),
                        WebhookMessage.locked_until == lock,
                    )
                    .values(
                        attempts=WebhookMessage.attempts + 1, locked_until=None, delivered_at=now
                    )
                    .returning(WebhookMessage.id, WebhookMessage.attempts)
                    .execution_options(synchronize_session=False)
                ).all()
            )
            for a in group:
                attempt = settled.get(a.message_id)
                if attempt is None:  # our claim expired: another worker has the message
                    taken = db.scalar(
                        select(WebhookMessage.attempts).where(WebhookMessage.id == a.message_id)
                    )
                    outcomes[a.message_id] = _outcome(a, (taken or 0) + 1, "claim expired", None)
                else:
                    outcomes[a.message_id] = _outcome(a, attempt, "delivered", None)
        answered = {a.url for group in claims.values() for a in group if a.url}
        if answered:
            _send_waiting_now(db, answered, max(a.now for a in attempted))
    return [outcomes[a.message_id] for a in attempted]


def _outcome(
    a: Attempted, attempt: int, result: str, next_attempt_at: datetime | None
) -> DeliveryOutcome:
    return DeliveryOutcome(
        message_id=a.message_id,
        client_id=a.client_id,
        event_type=a.event_type,
        attempt=attempt,
        status_code=a.status,
        error=a.error,
        result=result,
        next_attempt_at=next_attempt_at,
    )


def _settle_failure(db: Session, a: Attempted) -> DeliveryOutcome:
    """A failed attempt: retry after the backoff, or give up (after :data:`MAX_ATTEMPTS`, or
    at once for a message that waited behind one given up)."""
    message = db.get_one(WebhookMessage, a.message_id)
    attempt = message.attempts + 1
    next_attempt_at: datetime | None = None
    values: dict[str, Any] = {"attempts": attempt, "locked_until": None}
    if attempt >= MAX_ATTEMPTS or (
        message.attempts == 0 and _waited_behind_a_given_up_message(db, message)
    ):
        result = "abandoned"
        values["abandoned_at"] = a.now
    else:
        result = "retrying"
        next_attempt_at = a.now + _with_jitter(backoff(attempt))
        values["next_attempt_at"] = next_attempt_at
    settled = db.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == a.message_id, WebhookMessage.locked_until == a.lock)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if int(settled.rowcount) != 1:  # type: ignore[attr-defined]
        result, next_attempt_at = "claim expired", None
    return _outcome(a, attempt, result, next_attempt_at)
