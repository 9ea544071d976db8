"""The running worker's loop: woken by the commit that queued a message (a PostgreSQL
notification from another connection, or the same process's commit on SQLite) rather than
waiting for its periodic look, and many apps served at once, each app's messages in order and
each delivered once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select, text

from consent.grants.events import ConsentChangedData
from consent.vendors.models import VendorApp
from consent.webhooks.delivery import Dispatcher
from consent.webhooks.models import WebhookAttempt, WebhookMessage
from consent.webhooks.outbox import enqueue
from consent.webhooks.wake import CHANNEL
from tests.consent.test_webhooks import consent_event, make_app
from tests.webhook_receiver import Receiver
from vault.runtime import Runtime


@contextmanager
def running(rt: Runtime, interval: float, on_outcome: Callable[..., None]) -> Iterator[None]:
    """``Dispatcher.run`` on a thread of its own (as ``vrm worker`` runs it) until the block
    ends."""
    stop = threading.Event()

    def work() -> None:
        async def main() -> None:
            stopped = asyncio.Event()
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=lambda: (stop.wait(), loop.call_soon_threadsafe(stopped.set)), daemon=True
            ).start()
            await Dispatcher(rt.sessions, rt, on_outcome=on_outcome).run(interval, stopped)

        asyncio.run(main())

    worker = threading.Thread(target=work)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """How long ``condition`` took to hold (at most ``seconds``)."""
    started = time.monotonic()
    while not condition() and time.monotonic() - started < seconds:
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_queued_message_is_delivered_at_once_not_at_the_next_look(
    committed_rt: Runtime, receiver: Receiver
) -> None:
    """The worker looks at the outbox only once a minute here; a message committed while it
    waits still goes out within seconds, and again for a second one."""
    rt = committed_rt
    with rt.sessions() as db, db.begin():
        app_id = make_app(db, receiver.url).id
    outcomes: list[str] = []
    with running(rt, 60.0, lambda o: outcomes.append(o.result)):
        time.sleep(1.0)  # past the first look (and, on PostgreSQL, the listener's start)
        for n in (1, 2):
            with rt.sessions() as db, db.begin():
                enqueue(db, db.get_one(VendorApp, app_id), consent_event(ConsentChangedData, n=n))
            took = wait_for(lambda n=n: len(receiver.requests) == n, 20)
            assert len(receiver.requests) == n
            assert took < 10, took  # not the 60 s look (a busy machine is slow; 10 s is loose)
    assert outcomes == ["delivered", "delivered"]


def test_the_listener_listens_again_after_its_connection_is_cut(
    committed_rt: Runtime, receiver: Receiver, backend: str
) -> None:
    """PostgreSQL: the worker's listening connection is cut (a restart, a failover, an
    operator's ``pg_terminate_backend``); it connects again, and a message queued after that
    still goes out at once."""
    if backend != "postgresql":
        pytest.skip("SQLite wakes the worker within the process: no connection to cut")
    rt = committed_rt
    with rt.sessions() as db, db.begin():
        app_id = make_app(db, receiver.url).id
    with running(rt, 60.0, lambda o: None):
        time.sleep(1.0)
        with rt.sessions() as db, db.begin():
            cut = db.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = :listen"
                ),
                {"listen": f"LISTEN {CHANNEL}"},
            )
        assert cut == 1
        time.sleep(2.5)  # it tries again after a second
        with rt.sessions() as db, db.begin():
            enqueue(db, db.get_one(VendorApp, app_id), consent_event(ConsentChangedData, n=1))
        took = wait_for(lambda: len(receiver.requests) == 1, 20)
        assert len(receiver.requests) == 1
        assert took < 10, took


def test_a_rolled_back_queue_sends_nothing(committed_rt: Runtime, receiver: Receiver) -> None:
    rt = committed_rt
    with rt.sessions() as db, db.begin():
        app_id = make_app(db, receiver.url).id
    with running(rt, 60.0, lambda o: None):
        time.sleep(1.0)
        with rt.sessions() as db:
            enqueue(db, db.get_one(VendorApp, app_id), consent_event(ConsentChangedData, n=1))
            db.rollback()
        with rt.sessions() as db, db.begin():
            enqueue(db, db.get_one(VendorApp, app_id), consent_event(ConsentChangedData, n=2))
        wait_for(lambda: len(receiver.requests) == 1, 20)
        time.sleep(0.3)
    [got] = receiver.requests
    assert json.loads(got.body)["data"]["grant_id"].endswith("02")


def test_many_apps_at_once_each_in_order_each_message_once(
    committed_rt: Runtime, receiver: Receiver
) -> None:
    """More apps than lanes, three messages each, queued before and while the worker runs:
    every message arrives once, and each app's arrive in the order they were queued."""
    rt = committed_rt
    apps = 90
    with rt.sessions() as db, db.begin():
        ids = [make_app(db, f"{receiver.url}/{n}").id for n in range(apps)]
        for app_id in ids:
            enqueue(db, db.get_one(VendorApp, app_id), consent_event(ConsentChangedData, n=1))
    with running(rt, 0.2, lambda o: None):
        for n in (2, 3):
            with rt.sessions() as db, db.begin():
                for app_id in ids:
                    app = db.get_one(VendorApp, app_id)
                    enqueue(db, app, consent_event(ConsentChangedData, n=n))
        wait_for(lambda: len(receiver.requests) >= 3 * apps, 60)
        time.sleep(0.3)  # nothing more comes
    by_app: dict[str, list[str]] = defaultdict(list)
    for got in receiver.requests:
        by_app[got.path].append(json.loads(got.body)["data"]["grant_id"][-2:])
    assert len(by_app) == apps
    assert all(seen == ["01", "02", "03"] for seen in by_app.values()), by_app
    assert len({got.headers["webhook-id"] for got in receiver.requests}) == 3 * apps
    with rt.sessions() as db:
        assert db.scalar(select(func.count()).select_from(WebhookAttempt)) == 3 * apps
        waiting = select(func.count()).where(WebhookMessage.delivered_at.is_(None))
        assert db.scalar(waiting) == 0
