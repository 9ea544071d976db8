"""Webhook order and recovery after an outage: each app's messages reach its endpoint in the
order they were queued; a failing message holds back the later ones of its app (no other
app's); a success sends what waited at once; a message given up does not block forever.

Time is simulated with ``now``; the receiver is a real HTTP endpoint that answers 503 while
it is "down".
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from consent.grants.events import ConsentChangedData, ConsentRevokedData
from consent.vendors.models import VendorApp
from consent.webhooks import attempts
from consent.webhooks.attempts import MAX_ATTEMPTS
from consent.webhooks.delivery import Dispatcher, deliver_due
from consent.webhooks.models import WebhookMessage
from consent.webhooks.outbox import enqueue
from tests.consent.test_webhooks import consent_event, make_app, reload, t0
from tests.webhook_receiver import Receiver
from vault.runtime import Runtime


def _revoked(n: int) -> ConsentRevokedData:
    revoked = consent_event(ConsentRevokedData, n=n, reason="revoked")
    assert isinstance(revoked, ConsentRevokedData)
    return revoked


def _seen(receiver: Receiver) -> list[tuple[str, str]]:
    """(event type, grant id) of every request the receiver got, in arrival order."""
    return [
        (body["type"], body["data"]["grant_id"][-2:])
        for body in (json.loads(r.body) for r in receiver.requests)
    ]


def test_after_an_outage_each_apps_messages_arrive_in_the_order_they_were_queued(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app, other = make_app(db, receiver.url), make_app(db, receiver.url + "/other")
    start = t0()
    queued: list[tuple[str, str]] = []
    receiver.default = 503  # the vendor's endpoint is down
    for n in range(1, 4):
        at = start + timedelta(seconds=n)
        enqueue(db, app, consent_event(ConsentChangedData, n=n), now=at)
        queued.append(("consent.changed", f"{n:02d}"))
    deliver_due(rt.sessions, rt, now=start + timedelta(seconds=4))  # fails, backs off 30 s
    for n in range(1, 4):
        enqueue(db, app, _revoked(n), now=start + timedelta(seconds=10 + n))
        queued.append(("consent.revoked", f"{n:02d}"))
    enqueue(db, other, consent_event(n=9), now=start + timedelta(seconds=15))
    receiver.default = 200  # back up, before the first message's retry is due

    deliver_due(rt.sessions, rt, now=start + timedelta(seconds=20))

    # The other app is not held back by this one's failed message; this one's later messages
    # are, though they are due and the endpoint now answers.
    other_seen = [r for r in receiver.requests if r.path.endswith("/other")]
    assert len(other_seen) == 1
    assert [r for r in receiver.requests if not r.path.endswith("/other")][1:] == []

    deliver_due(rt.sessions, rt, now=start + timedelta(seconds=40))

    mine = [
        (json.loads(r.body)["type"], json.loads(r.body)["data"]["grant_id"][-2:])
        for r in receiver.requests
        if not r.path.endswith("/other")
    ]
    assert mine[0] == queued[0]  # the first attempt, refused
    assert mine[1:] == queued  # then everything, in order, the first one again included


def test_a_failing_message_is_not_passed_by_a_later_one_even_when_that_one_is_due_first(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    start = t0()
    first = enqueue(db, app, consent_event(ConsentChangedData, n=1), now=start)
    second = enqueue(db, app, _revoked(1), now=start + timedelta(seconds=1))
    assert first is not None and second is not None
    receiver.answer(503)

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=2)) == 1

    assert reload(db, second).attempts == 0  # held back, not attempted
    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=20)) == 0
    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=40)) == 2
    assert _seen(receiver) == [("consent.changed", "01")] * 2 + [("consent.revoked", "01")]


def test_a_success_sends_the_endpoints_waiting_messages_at_once_not_at_their_backoff(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    """Two apps of one vendor share an endpoint; its outage ends; the first retry that gets
    through sends every waiting message to that endpoint in the same pass, though some were
    not due for minutes."""
    one, two = make_app(db, receiver.url), make_app(db, receiver.url)
    start = t0()
    early = enqueue(db, one, consent_event(ConsentChangedData, n=1), now=start)
    late = enqueue(db, two, consent_event(ConsentChangedData, n=2), now=start)
    behind = enqueue(db, two, _revoked(2), now=start + timedelta(seconds=1))
    assert early is not None and late is not None and behind is not None
    # After the outage's failures, one app's retry is due in 10 s, the other's in 8 minutes.
    for message, tries, due in ((early, 2, 10), (late, 3, 480)):
        db.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message.id)
            .values(attempts=tries, next_attempt_at=start + timedelta(seconds=due))
        )

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=10)) == 3

    assert _seen(receiver) == [
        ("consent.changed", "01"),
        ("consent.changed", "02"),
        ("consent.revoked", "02"),
    ]
    assert all(reload(db, m).delivered_at is not None for m in (early, late, behind))


def test_a_success_sends_the_apps_later_messages_that_had_their_own_backoff(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    """Messages queued before order was kept may each have a retry time of their own."""
    app = make_app(db, receiver.url)
    start = t0()
    messages = [
        enqueue(db, app, consent_event(ConsentChangedData, n=n), now=start + timedelta(seconds=n))
        for n in range(1, 4)
    ]
    for message, due in zip(messages, (10, 600, 120), strict=True):
        assert message is not None
        db.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message.id)
            .values(attempts=3, next_attempt_at=start + timedelta(seconds=due))
        )

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=10)) == 3
    assert _seen(receiver) == [("consent.changed", f"{n:02d}") for n in range(1, 4)]


def _give_up(db: Session, message: WebhookMessage) -> None:
    """Bring ``message`` to its last attempt, due now."""
    db.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == message.id)
        .values(attempts=MAX_ATTEMPTS - 1)
    )


def test_what_waited_behind_a_message_given_up_gets_one_attempt_each_in_order(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    start = t0()
    head = enqueue(db, app, consent_event(ConsentChangedData, n=1), now=start)
    waiting = [enqueue(db, app, _revoked(n), now=start + timedelta(seconds=n)) for n in range(1, 4)]
    assert head is not None and all(m is not None for m in waiting)
    _give_up(db, head)
    receiver.default = 503  # still down when the last attempt is made

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=5)) == 4

    assert reload(db, head).abandoned_at is not None
    # Each waited behind a message that was given up: one attempt each, then given up too,
    # so a dead endpoint's queue drains instead of blocking for days per message.
    assert [reload(db, m).attempts for m in waiting if m] == [1, 1, 1]
    assert all(reload(db, m).abandoned_at is not None for m in waiting if m)
    # A message queued after that is retried as usual.
    fresh = enqueue(db, app, consent_event(ConsentChangedData, n=7), now=start + timedelta(1))
    assert fresh is not None
    deliver_due(rt.sessions, rt, now=start + timedelta(days=1))
    state = reload(db, fresh)
    assert (state.attempts, state.abandoned_at) == (1, None)


def test_what_waited_behind_a_message_given_up_is_delivered_in_order_when_the_endpoint_is_back(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    start = t0()
    head = enqueue(db, app, consent_event(ConsentChangedData, n=1), now=start)
    for n in range(1, 4):
        enqueue(db, app, _revoked(n), now=start + timedelta(seconds=n))
    assert head is not None
    _give_up(db, head)
    receiver.answer(503)  # the last attempt of the first fails; the endpoint is back after

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=5)) == 4

    assert reload(db, head).abandoned_at is not None
    assert _seen(receiver) == [("consent.changed", "01")] + [
        ("consent.revoked", f"{n:02d}") for n in range(1, 4)
    ]


def test_two_messages_queued_at_one_clock_reading_keep_their_order(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    start = t0()
    for n in range(1, 6):
        enqueue(db, app, consent_event(ConsentChangedData, n=n), now=start)
        enqueue(db, app, _revoked(n), now=start)

    assert deliver_due(rt.sessions, rt, now=start) == 10

    assert _seen(receiver) == [
        (kind, f"{n:02d}") for n in range(1, 6) for kind in ("consent.changed", "consent.revoked")
    ]


def test_the_running_worker_keeps_each_apps_order_through_an_outage(
    committed_rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's outage, on the real clock with the worker's loop: ten grants each changed
    and then revoked while the endpoint answers 503 (retries a fraction of a second apart
    here), then the endpoint recovers. Every event arrives, each app's in queue order."""
    monkeypatch.setattr(attempts, "BACKOFF_BASE", timedelta(milliseconds=100))
    monkeypatch.setattr(attempts, "BACKOFF_FACTOR", 2)
    rt = committed_rt
    receiver.default = 503
    with rt.sessions() as db, db.begin():
        app_id = make_app(db, receiver.url).id
        other_id = make_app(db, receiver.url + "/other").id
    stop = threading.Event()
    outcomes: list[str] = []

    def work() -> None:
        async def main() -> None:
            stopped = asyncio.Event()
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopped.set)), daemon=True
            ).start()
            await Dispatcher(rt.sessions, rt, on_outcome=lambda o: outcomes.append(o.result)).run(
                0.05, stopped
            )

        asyncio.run(main())

    worker = threading.Thread(target=work)
    worker.start()
    queued: list[tuple[str, str]] = []
    try:
        for n in range(1, 11):  # queued one by one while the worker retries
            with rt.sessions() as db, db.begin():
                app = db.get_one(VendorApp, app_id)
                enqueue(db, app, consent_event(ConsentChangedData, n=n))
                enqueue(db, app, _revoked(n))
            queued += [("consent.changed", f"{n:02d}"), ("consent.revoked", f"{n:02d}")]
            time.sleep(0.03)
        with rt.sessions() as db, db.begin():
            enqueue(db, db.get_one(VendorApp, other_id), consent_event(n=99))
        time.sleep(0.5)
        assert "retrying" in outcomes  # the outage was seen
        receiver.default = 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with rt.sessions() as db:
                left = db.scalar(select(func.count()).where(WebhookMessage.delivered_at.is_(None)))
            if left == 0:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=30)

    delivered = [
        (json.loads(r.body)["type"], json.loads(r.body)["data"]["grant_id"][-2:])
        for r in receiver.requests
        if not r.path.endswith("/other")
    ]
    failed = delivered[: len(delivered) - len(queued)]
    assert delivered[len(failed) :] == queued  # all twenty, after the failed tries, in order
    assert set(failed) == {queued[0]}  # only the first message was ever tried while down
    assert [r for r in receiver.requests if r.path.endswith("/other")]
