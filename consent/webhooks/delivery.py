"""Delivery: due messages claimed (a conditional ``UPDATE``: two workers never deliver one message
at the same time), posted signed, apps served concurrently and each app's messages in order
(only an app's oldest unsettled message is ever due: see ``attempts``).

Claims and outcomes are batched: the due heads of many apps are claimed in one statement, and
the outcomes of the attempts that ended meanwhile are recorded together in one transaction; no
transaction is open during a POST. The running loop looks at the outbox when a commit queued
messages (``wake``), when an app's lane frees, and at least every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
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
    Attempted,
    DeliveryOutcome,
    _body,
    _due,
    _post,
    _record_many,
    _unsettled,
)
from consent.webhooks.models import WebhookMessage
from consent.webhooks.pinning import pinned, pinned_transport
from consent.webhooks.signing import derive_webhook_secret, sign
from consent.webhooks.wake import OutboxWaker
from vault.base import utcnow
from vault.metrics import WEBHOOK_DELIVERIES
from vault.runtime import Runtime

CONCURRENCY: Final = 64
"""Messages in flight at once, each to a different app (an app's go one at a time)."""


RECORD_BATCH: Final = 256
"""At most this many outcomes recorded in one transaction."""


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
    only its own app's messages. The due heads are claimed together, and the outcomes
    recorded together as the attempts end; no database transaction is open during a POST.
    ``now`` fixes the clock (tests simulate time with it).
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

    Database work (claims, outcomes) runs on one thread of its own, one batch at a time, so
    the event loop only waits on endpoints. ``deliver_once`` takes what is due now, round by
    round; ``run`` keeps going until told to stop: it claims the due heads of the apps not
    already in flight whenever messages are queued or a lane frees, while slow endpoints are
    still being waited for, and records outcomes as the attempts end.
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

    def _claim_due(
        self, now: datetime, limit: int, busy: frozenset[uuid.UUID]
    ) -> tuple[list[uuid.UUID], list[_Claimed]]:
        """The apps with a due head (up to ``limit``, leaving out ``busy``) and the heads
        claimed (those another worker took meanwhile are left out)."""
        heads = self._due_heads(now, limit, busy)
        return list(heads), self._claim(list(heads.values()), now) if heads else []

    def _claim(self, message_ids: list[uuid.UUID], now: datetime) -> list[_Claimed]:
        """Claim the messages still due among ``message_ids`` (one ``UPDATE``: the others
        were taken by another worker meanwhile), and read what their attempts need."""
        lock = now + CLAIM_FOR
        with self.sessions() as db, db.begin():
            claimed = (
                db.execute(
                    update(WebhookMessage)
                    .where(WebhookMessage.id.in_(message_ids), *_due(now))
                    .values(locked_until=lock)
                    .returning(WebhookMessage.id)
                    .execution_options(synchronize_session=False)
                )
                .scalars()
                .all()
            )
            if not claimed:
                return []
            rows = db.execute(
                select(
                    WebhookMessage.id,
                    WebhookMessage.event_type,
                    WebhookMessage.payload,
                    VendorApp.id,
                    VendorApp.client_id,
                    VendorApp.webhook_url,
                    VendorApp.webhook_secret_version,
                )
                .join(VendorApp, VendorApp.id == WebhookMessage.app_id)
                .where(WebhookMessage.id.in_(claimed))
                .order_by(WebhookMessage.next_attempt_at, WebhookMessage.created_at)
            ).all()
            key = self.rt.secrets.webhook_key
            return [
                _Claimed(
                    message_id=message_id,
                    app_id=app_id,
                    client_id=client_id,
                    event_type=event_type,
                    url=url,
                    secret=derive_webhook_secret(key, app_id, version),
                    payload=payload,
                    now=now,
                    lock=lock,
                )
                for message_id, event_type, payload, app_id, client_id, url, version in rows
            ]

    def _record(self, attempted: list[Attempted]) -> list[DeliveryOutcome]:
        outcomes = _record_many(self.sessions, attempted)
        for outcome in outcomes:
            WEBHOOK_DELIVERIES.labels(outcome.result.replace(" ", "_")).inc()
        return outcomes

    async def deliver_once(self, *, now: datetime | None = None, batch: int = 20) -> int:
        """Attempt what is due now, at most ``batch`` messages, and return how many were
        attempted: an app whose message was delivered (or given up) has its next one tried
        in the same call; a failure ends the app's turn."""
        try:
            client = self._client()
            try:
                return await self._pump(client, now=now, budget=batch)
            finally:
                if self.http_client is None:
                    await client.aclose()
        finally:
            self._db.shutdown(wait=True)

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish the attempts in flight, record them and
        return.

        The loop looks at the outbox when woken: by a commit that queued messages (a
        PostgreSQL notification, or the same process's commit on SQLite: ``wake``), by a
        lane freed (the app's next message may be due), and every ``interval`` seconds in
        any case (a lost notification waits no longer than that).
        """
        loop = asyncio.get_running_loop()
        client = self._client()
        changed = asyncio.Event()

        def wake() -> None:  # from any thread
            with suppress(RuntimeError):  # the loop has closed: nothing to wake
                loop.call_soon_threadsafe(changed.set)

        bind = self.sessions.kw.get("bind")  # an Engine or a Connection: either has .engine
        waker = OutboxWaker(getattr(bind, "engine", None) or self.rt.engine, wake)
        waker.start()
        try:
            await self._pump(client, stop=stop, interval=interval, changed=changed)
        finally:
            waker.stop()
            await client.aclose()
            self._db.shutdown(wait=True)

    async def _pump(
        self,
        client: httpx.AsyncClient,
        *,
        now: datetime | None = None,
        budget: int | None = None,
        stop: asyncio.Event | None = None,
        interval: float | None = None,
        changed: asyncio.Event | None = None,
    ) -> int:
        """The delivery loop; returns how many attempts it recorded.

        Whenever it looks, one query finds the due heads of the apps not in flight (at most
        as many as there are free lanes) and one ``UPDATE`` claims them; each is posted at
        once. The attempts that ended are recorded together (whatever ended while the last
        batch was being recorded, up to :data:`RECORD_BATCH`), and each recording frees the
        lanes and looks again. With ``stop`` (:meth:`run`) it keeps going, looking at least
        every ``interval`` seconds; without, it returns once nothing is due nor in flight,
        or ``budget`` attempts were made, and an app whose turn ended (a failure, a claim
        another worker holds) is not looked at again.
        """
        running = stop is not None
        changed = changed or asyncio.Event()
        stop = stop or asyncio.Event()
        busy: set[uuid.UUID] = set()
        ended: set[uuid.UUID] = set()
        posts: set[asyncio.Task[None]] = set()
        finished: asyncio.Queue[tuple[uuid.UUID, Attempted]] = asyncio.Queue()
        attempted = 0
        left = budget

        async def post(claimed: _Claimed) -> None:
            finished.put_nowait((claimed.app_id, await self._attempt(client, claimed)))

        async def record() -> None:
            nonlocal attempted
            while True:
                results = [await finished.get()]
                while not finished.empty() and len(results) < RECORD_BATCH:
                    results.append(finished.get_nowait())
                try:
                    outcomes = await self._in_db(partial(self._record, [r for _, r in results]))
                except OperationalError as exc:
                    # The claims stay until they expire; then the messages go again.
                    outcomes = []
                    if not running:
                        ended.update(app_id for app_id, _ in results)
                    self._outage(exc)
                finally:
                    for app_id, _ in results:
                        busy.discard(app_id)
                        finished.task_done()
                    changed.set()
                attempted += len(outcomes)
                for (app_id, _), outcome in zip(results, outcomes, strict=True):
                    if not running and outcome.result not in ("delivered", "abandoned"):
                        ended.add(app_id)
                    if self.on_outcome is not None:
                        self.on_outcome(outcome)

        broken: list[asyncio.Task[None]] = []

        def settled(task: asyncio.Task[None]) -> None:
            posts.discard(task)
            if not task.cancelled() and task.exception() is not None:
                broken.append(task)  # a bug in an attempt: surfaces in the loop below
                changed.set()

        recorder = asyncio.create_task(record())
        stopping = asyncio.ensure_future(stop.wait())
        look = True
        try:
            while not stop.is_set() and not self.should_stop():
                free = self.concurrency - len(busy)
                if left is not None:
                    free = min(free, left)
                if look and free > 0:
                    look = False
                    heads: list[uuid.UUID] = []
                    claimed: list[_Claimed] = []
                    try:
                        heads, claimed = await self._in_db(
                            partial(self._claim_due, now or utcnow(), free, frozenset(busy | ended))
                        )
                    except OperationalError as exc:
                        self._outage(exc)
                    look = len(heads) >= free  # more may be due than there was room for
                    if not running:
                        ended.update(set(heads) - {c.app_id for c in claimed})
                    if left is not None:
                        left -= len(claimed)
                    for c in claimed:
                        busy.add(c.app_id)
                        task = asyncio.create_task(post(c))
                        posts.add(task)
                        task.add_done_callback(settled)
                    if look and self.concurrency - len(busy) > 0 and left != 0:
                        continue
                if not running and not busy and (not look or left == 0):
                    break  # nothing in flight and nothing more to do now
                woken = asyncio.ensure_future(changed.wait())
                await asyncio.wait(
                    {stopping, woken, recorder},
                    timeout=interval if running else None,
                    return_when=FIRST_COMPLETED,
                )
                woken.cancel()
                changed.clear()
                look = True  # woken, a lane freed, or the periodic look
                if recorder.done():
                    recorder.result()  # a failure in recording surfaces here, not silently
                if broken:
                    broken[0].result()
            if posts:
                await asyncio.gather(*posts)
            # Every attempt made is recorded before returning (unless recording itself fails).
            recorded = asyncio.ensure_future(finished.join())
            await asyncio.wait({recorded, recorder}, return_when=FIRST_COMPLETED)
            recorded.cancel()
            if recorder.done():
                recorder.result()
        finally:
            stopping.cancel()
            recorder.cancel()
            with suppress(asyncio.CancelledError):
                await recorder
        return attempted

    def _outage(self, exc: OperationalError) -> None:
        if self.on_problem is None:
            raise exc
        self.on_problem(f"database unavailable ({type(exc.orig).__name__}); retrying")

    async def _attempt(self, client: httpx.AsyncClient, claimed: _Claimed) -> Attempted:
        """Check the URL (its host name resolved off the event loop), post the signed
        message; the result, to be recorded."""
        started = time.monotonic()
        url = claimed.url
        checked = (
            await asyncio.to_thread(
                check_webhook_url, url, allow_loopback_http=not self.rt.settings.is_production
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
            message_id = str(claimed.message_id)
            headers = {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(claimed.secret, message_id, timestamp, body),
            }
            # The connection goes to the addresses just checked, not to a second lookup's.
            with pinned(checked.host, checked.addresses):
                status, problem = await _post(client, url, headers, body, self.deadline)
        return Attempted(
            message_id=claimed.message_id,
            now=claimed.now,
            lock=claimed.lock,
            status=status,
            error=problem,
            duration_ms=int((time.monotonic() - started) * 1000),
            client_id=claimed.client_id,
            event_type=claimed.event_type,
            url=url,
        )
