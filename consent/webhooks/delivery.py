"""Delivery: due messages claimed (a conditional ``UPDATE``: two workers never deliver one message
at the same time), posted signed, apps served concurrently and each app's messages in order
(only an app's oldest unsettled message is ever due: see ``attempts``).

Each claim, and then each attempt and its outcome, commit on their own; no transaction is open
during a POST.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Final, TypeVar

import httpx
from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from consent.vendors.models import VendorApp
from consent.vendors.urls import CheckedUrl, check_webhook_url
from consent.webhooks.attempts import (
    CLAIM_FOR,
    DeliveryOutcome,
    _body,
    _due,
    _post,
    _record,
    _unsettled,
)
from consent.webhooks.models import WebhookMessage
from consent.webhooks.pinning import pinned, pinned_transport
from consent.webhooks.signing import sign, webhook_secret_for
from vault.base import utcnow
from vault.metrics import WEBHOOK_DELIVERIES
from vault.runtime import Runtime

CONCURRENCY: Final = 16
"""Messages in flight at once, each to a different app."""


_T = TypeVar("_T")


def deliver_due(
    session_factory: sessionmaker[Session],
    rt: Runtime,
    *,
    now: datetime | None = None,
    batch: int = 20,
    http_client: httpx.AsyncClient | None = None,
    on_outcome: Callable[[DeliveryOutcome], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    deadline: float | None = None,
) -> int:
    """Attempt up to ``batch`` due messages; returns how many this call attempted.

    Messages to different apps go out at the same time (at most :data:`CONCURRENCY`), each
    app's in the order they were queued, one at a time; a failure ends the app's turn (what
    follows waits for it). A success makes the endpoint's waiting messages due at once, and
    they go out in the same call. Every attempt ends within ``deadline``
    seconds (by default the ``webhook_deadline_seconds`` setting), so a slow endpoint holds up
    only its own app's messages. Each message's claim, and then its attempt and outcome,
    commit on their own; no database transaction is open during a POST. ``now`` fixes the
    clock (tests simulate time with it).
    """
    dispatcher = Dispatcher(
        session_factory,
        rt,
        http_client=http_client,
        on_outcome=on_outcome,
        should_stop=should_stop,
        deadline=deadline,
    )
    # Its own event loop on a thread of its own: the caller's thread may already run one (an
    # async caller, or a library that keeps a loop running there).
    with ThreadPoolExecutor(1, thread_name_prefix="webhook-delivery") as runner:
        return runner.submit(asyncio.run, dispatcher.deliver_once(now=now, batch=batch)).result()


def due_heads(
    db: Session, now: datetime, limit: int, busy: frozenset[uuid.UUID] = frozenset()
) -> dict[uuid.UUID, uuid.UUID]:
    """Each app's due head (its oldest waiting message, if due) by app, leaving out the apps in
    ``busy``; the longest-waiting first.

    Each app's first waiting moment comes from the partial index of waiting messages, then the
    message there if it is due: a few rows per app, whatever the history and queue lengths
    (``bench/webhook_queue.py``).
    """
    firsts = (
        select(WebhookMessage.app_id, func.min(WebhookMessage.created_at).label("first"))
        .where(*_unsettled(WebhookMessage))
        .group_by(WebhookMessage.app_id)
        .subquery()
    )
    query = (
        select(WebhookMessage.id, WebhookMessage.app_id)
        .join(
            firsts,
            and_(
                WebhookMessage.app_id == firsts.c.app_id,
                WebhookMessage.created_at == firsts.c.first,
            ),
        )
        .where(*_due(now))
        .order_by(WebhookMessage.next_attempt_at, WebhookMessage.created_at)
        .limit(limit)
    )
    if busy:
        query = query.where(WebhookMessage.app_id.not_in(busy))
    return {app_id: message_id for message_id, app_id in db.execute(query).all()}


@dataclass(frozen=True, slots=True)
class _Claimed:
    message_id: uuid.UUID
    app_id: uuid.UUID
    client_id: str
    event_type: str
    url: str | None
    secret: str
    payload: dict[str, Any]
    now: datetime
    lock: datetime


class Dispatcher:
    """Delivers due messages concurrently across apps and one at a time within an app.

    Database work (claims, outcomes) runs on one thread of its own, one statement group at a
    time, so the event loop only waits on endpoints. ``deliver_once`` takes what is due now;
    ``run`` keeps going until told to stop, picking up newly due messages of apps that are not
    already being served while slow ones are still in flight.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        rt: Runtime,
        *,
        http_client: httpx.AsyncClient | None = None,
        on_outcome: Callable[[DeliveryOutcome], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_problem: Callable[[str], None] | None = None,
        deadline: float | None = None,
        concurrency: int = CONCURRENCY,
    ) -> None:
        """``on_problem`` hears of a database outage while :meth:`run` keeps going (without
        it, the outage is raised)."""
        self.on_problem = on_problem
        self.sessions = session_factory
        self.rt = rt
        self.http_client = http_client
        self.on_outcome = on_outcome
        self.should_stop = should_stop or (lambda: False)
        self.deadline = deadline or rt.settings.webhook_deadline_seconds
        self.concurrency = concurrency
        self._db = ThreadPoolExecutor(1, thread_name_prefix="webhook-db")

    async def _in_db(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._db, work)

    def _client(self) -> httpx.AsyncClient:
        """The caller's client, or one that connects only to the addresses each delivery's
        check accepted (``pinning``)."""
        return self.http_client or httpx.AsyncClient(
            timeout=self.deadline,
            follow_redirects=False,
            trust_env=False,
            transport=pinned_transport(),
        )

    def _due_heads(
        self, now: datetime, limit: int, busy: frozenset[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID]:
        with self.sessions() as db:
            return due_heads(db, now, limit, busy)

    def _next_head(self, app_id: uuid.UUID, now: datetime) -> uuid.UUID | None:
        with self.sessions() as db:
            return db.scalar(
                select(WebhookMessage.id).where(WebhookMessage.app_id == app_id, *_due(now))
            )

    async def deliver_once(self, *, now: datetime | None = None, batch: int = 20) -> int:
        try:
            client = self._client()
            budget = [batch]
            served: set[uuid.UUID] = set()
            attempted = 0
            try:
                # Rounds: a success may make another app's messages to the same endpoint due.
                while budget[0] > 0:
                    clock = now or utcnow()
                    heads = await self._in_db(
                        partial(self._due_heads, clock, budget[0], frozenset(served))
                    )
                    if not heads:
                        break
                    served.update(heads)
                    gate = asyncio.Semaphore(self.concurrency)
                    done = await asyncio.gather(
                        *(
                            self._lane(client, app_id, head, now, gate, budget)
                            for app_id, head in heads.items()
                        )
                    )
                    attempted += sum(done)
            finally:
                if self.http_client is None:
                    await client.aclose()
            return attempted
        finally:
            self._db.shutdown(wait=True)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish the attempts in flight and return."""
        client = self._client()
        inflight: dict[uuid.UUID, asyncio.Task[int]] = {}
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                free = self.concurrency - len(inflight)
                heads: dict[uuid.UUID, uuid.UUID] = {}
                if free > 0:
                    try:
                        heads = await self._in_db(
                            partial(self._due_heads, utcnow(), free, frozenset(inflight))
                        )
                    except OperationalError as exc:
                        self._outage(exc)
                    for app_id, head in heads.items():
                        inflight[app_id] = asyncio.create_task(
                            self._lane(client, app_id, head, None)
                        )
                await asyncio.wait(
                    {stopping, *inflight.values()},
                    timeout=interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for app_id, task in list(inflight.items()):
                    if task.done():
                        del inflight[app_id]
                        task.result()  # a bug in a lane surfaces here, not silently
            if inflight:
                await asyncio.gather(*inflight.values())
        finally:
            stopping.cancel()
            await client.aclose()
            self._db.shutdown(wait=True)

    async def _lane(
        self,
        client: httpx.AsyncClient,
        app_id: uuid.UUID,
        head: uuid.UUID,
        now: datetime | None,
        gate: asyncio.Semaphore | None = None,
        budget: list[int] | None = None,
    ) -> int:
        """One app's messages, in queue order, one at a time, from ``head`` on: while they
        are delivered (or given up), the next goes; a failure ends the turn. ``budget`` (shared
        by the lanes of one pass) bounds the attempts."""
        attempted = 0
        message_id: uuid.UUID | None = head
        while message_id is not None:
            if self.should_stop() or (budget is not None and budget[0] <= 0):
                break
            if budget is not None:
                budget[0] -= 1
            clock = now or utcnow()
            try:
                if gate is not None:
                    async with gate:
                        outcome = await self._deliver_one(client, message_id, clock)
                else:
                    outcome = await self._deliver_one(client, message_id, clock)
                if outcome is not None:
                    attempted += 1
                    if self.on_outcome is not None:
                        self.on_outcome(outcome)
                if outcome is None or outcome.result not in ("delivered", "abandoned"):
                    break
                message_id = await self._in_db(partial(self._next_head, app_id, now or utcnow()))
            except OperationalError as exc:
                # The database went away (restart, failover): leave the rest of this app's
                # messages for a later pass; a claim taken stays until it expires.
                self._outage(exc)
                break
        return attempted

    def _outage(self, exc: OperationalError) -> None:
        if self.on_problem is None:
            raise exc
        self.on_problem(f"database unavailable ({type(exc.orig).__name__}); retrying")

    def _claim(self, message_id: uuid.UUID, now: datetime) -> _Claimed | None:
        lock = now + CLAIM_FOR
        with self.sessions() as db, db.begin():
            claimed = db.execute(
                update(WebhookMessage)
                .where(WebhookMessage.id == message_id, *_due(now))
                .values(locked_until=lock)
                .execution_options(synchronize_session=False)
            )
            if int(claimed.rowcount) != 1:  # type: ignore[attr-defined]
                return None  # another worker has it, or it is no longer due
            message = db.get_one(WebhookMessage, message_id)
            app = db.get_one(VendorApp, message.app_id)
            return _Claimed(
                message_id=message_id,
                app_id=app.id,
                client_id=app.client_id,
                event_type=message.event_type,
                url=app.webhook_url,
                secret=webhook_secret_for(self.rt, app),
                payload=message.payload,
                now=now,
                lock=lock,
            )

    async def _deliver_one(
        self, client: httpx.AsyncClient, message_id: uuid.UUID, now: datetime
    ) -> DeliveryOutcome | None:
        claimed = await self._in_db(lambda: self._claim(message_id, now))
        if claimed is None:
            return None
        started = time.monotonic()
        url = claimed.url
        checked = (
            await self._in_db(
                lambda: check_webhook_url(
                    url, allow_loopback_http=not self.rt.settings.is_production
                )
            )
            if url
            else CheckedUrl("the app has no webhook URL", "", ())
        )
        problem = checked.problem
        status: int | None = None
        if problem is None:
            assert url is not None
            body = _body(claimed.payload)
            timestamp = int(utcnow().timestamp())
            headers = {
                "content-type": "application/json",
                "webhook-id": str(message_id),
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(claimed.secret, str(message_id), timestamp, body),
            }
            # The connection goes to the addresses just checked, not to a second lookup's.
            with pinned(checked.host, checked.addresses):
                status, problem = await _post(client, url, headers, body, self.deadline)
        duration_ms = int((time.monotonic() - started) * 1000)
        outcome = await self._in_db(
            lambda: _record(
                self.sessions,
                message_id=message_id,
                now=now,
                lock=claimed.lock,
                status=status,
                error=problem,
                duration_ms=duration_ms,
                client_id=claimed.client_id,
                event_type=claimed.event_type,
                url=claimed.url,
            )
        )
        WEBHOOK_DELIVERIES.labels(outcome.result.replace(" ", "_")).inc()
        return outcome
