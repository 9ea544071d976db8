"""Signed webhooks: the outbox, Standard Webhooks signatures, the worker and its retries.

A real HTTP receiver runs on 127.0.0.1 in a thread; every signature it receives is recomputed
here with ``hmac``/``hashlib`` from the key file's master key, not only with the code under test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consent.grants.events import ConsentChangedData, ConsentGrantedData, ConsentRevokedData
from consent.grants.service import Decision, GrantService
from consent.vendors.models import VendorApp
from consent.vendors.urls import webhook_url_problem
from consent.webhooks.attempts import MAX_ATTEMPTS, backoff
from consent.webhooks.delivery import deliver_due
from consent.webhooks.events import WebhookEvent
from consent.webhooks.log import delivery_log
from consent.webhooks.models import WebhookAttempt, WebhookMessage
from consent.webhooks.outbox import enqueue
from consent.webhooks.signing import (
    WebhookVerificationError,
    rotate_webhook_secret,
    verify_signature,
    webhook_secret_for,
)
from tests.vault.conftest import Deployment
from tests.webhook_receiver import Received, Receiver, trickle
from vault.runtime import Runtime
from vault.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
GRANT: dict[str, Any] = {
    "grant_id": "7a0c0b8e-0000-4000-8000-000000000001",
    "subject": "3f9c2a7be81d4c06a5e7f1b2d3c4e5f63f9c2a7be81d4c06a5e7f1b2d3c4e5f6",
    "scopes": ["profile:email"],
    "purpose": "Contact you about your repair",
    "agreement": "sd-base",
    "granted_at": datetime(2030, 5, 1, 8, 0, 0, 123456, tzinfo=UTC),
    "expires_at": datetime(2030, 5, 31, 8, 0, tzinfo=UTC),
    "revoked_at": None,
}


# -- Helpers ----------------------------------------------------------------------------------


def consent_event(
    kind: type[WebhookEvent] = ConsentGrantedData, n: int = 1, **values: Any
) -> WebhookEvent:
    """A ``consent.*`` event of ``kind`` about grant number ``n`` (the last digits of its id)."""
    return kind(**{**GRANT, "grant_id": f"7a0c0b8e-0000-4000-8000-{n:012d}", **values})


GRANTED = consent_event()
CHANGED = consent_event(ConsentChangedData)
REVOKED = consent_event(
    ConsentRevokedData, revoked_at=datetime(2030, 5, 2, tzinfo=UTC), reason="revoked"
)


def make_app(db: Session, webhook_url: str | None) -> VendorApp:
    app = VendorApp(
        client_id=f"app-{uuid.uuid4().hex[:12]}",
        name="Bicycle Repair Co",
        homepage_url="https://bikes.example",
        privacy_policy_url="https://bikes.example/privacy",
        redirect_uris=["https://bikes.example/callback"],
        purpose="Contact you about your repair",
        accepted_agreements=["sd-base"],
        webhook_url=webhook_url,
    )
    db.add(app)
    db.flush()
    return app


def expected_secret(master_key: bytes, app_id: uuid.UUID, version: int = 1) -> str:
    """The derivation as documented, recomputed here."""
    msg = b"webhook\x00" + app_id.bytes + version.to_bytes(4, "big")
    return "whsec_" + base64.b64encode(hmac.new(master_key, msg, hashlib.sha256).digest()).decode()


def expected_signature(secret: str, received: Received) -> str:
    """Standard Webhooks v1, recomputed: HMAC-SHA256 over ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = (
        received.headers["webhook-id"].encode()
        + b"."
        + received.headers["webhook-timestamp"].encode()
        + b"."
        + received.body
    )
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def reload(db: Session, message: WebhookMessage) -> WebhookMessage:
    db.expire_all()
    return db.get_one(WebhookMessage, message.id)


def attempts_of(db: Session, message: WebhookMessage) -> list[WebhookAttempt]:
    return list(
        db.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id == message.id)
            .order_by(WebhookAttempt.attempted_at)
        )
    )


def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# -- The outbox -------------------------------------------------------------------------------


def test_enqueue_writes_a_standard_webhooks_payload(db: Session) -> None:
    app = make_app(db, "https://bikes.example/hooks")
    now = datetime(2030, 5, 17, 9, 30, 12, 345678, tzinfo=UTC)

    message = enqueue(db, app, REVOKED, now=now)

    assert message is not None
    stored = db.scalars(select(WebhookMessage).where(WebhookMessage.app_id == app.id)).one()
    assert stored.payload == {
        "type": "consent.revoked",
        "timestamp": "2030-05-17T09:30:12.345678Z",
        # The event's moments as datetime.isoformat() writes them, as vendors always had them.
        "data": {
            "grant_id": "7a0c0b8e-0000-4000-8000-000000000001",
            "subject": GRANT["subject"],
            "scopes": ["profile:email"],
            "purpose": "Contact you about your repair",
            "agreement": "sd-base",
            "granted_at": "2030-05-01T08:00:00.123456+00:00",
            "expires_at": "2030-05-31T08:00:00+00:00",
            "revoked_at": "2030-05-02T00:00:00+00:00",
            "reason": "revoked",
        },
    }
    assert stored.event_type == "consent.revoked"
    assert (stored.attempts, stored.next_attempt_at, stored.delivered_at) == (0, now, None)


def test_a_moment_the_event_does_not_know_yet_is_sent_as_null(db: Session) -> None:
    app = make_app(db, "https://bikes.example/hooks")

    message = enqueue(db, app, consent_event(expires_at=None))

    assert message is not None
    assert (message.payload["data"]["expires_at"], message.payload["data"]["revoked_at"]) == (
        None,
        None,
    )


def test_enqueue_skips_an_app_without_a_webhook_url(db: Session) -> None:
    app = make_app(db, None)
    assert enqueue(db, app, REVOKED) is None
    assert db.scalar(select(func.count()).select_from(WebhookMessage)) == 0


def test_an_event_refuses_a_key_its_documentation_does_not_have() -> None:
    with pytest.raises(ValidationError, match="fields"):
        consent_event(fields=["email"])
    with pytest.raises(ValidationError, match="reason"):
        consent_event(ConsentRevokedData)  # a key it must have


def test_an_event_type_must_name_itself_and_say_what_it_means() -> None:
    with pytest.raises(TypeError, match="must set summary, description"):

        class Undocumented(WebhookEvent):
            event_type = "consent.undocumented"


def test_an_enqueue_in_a_rolled_back_transaction_leaves_no_message(rt: Runtime) -> None:
    with rt.sessions() as db, db.begin():
        app = make_app(db, "https://bikes.example/hooks")
        app_id = app.id
    with pytest.raises(RuntimeError), rt.sessions() as db, db.begin():
        app = db.get_one(VendorApp, app_id)
        app.purpose = "A changed purpose"
        enqueue(db, app, CHANGED)
        raise RuntimeError("the change failed after the event was queued")
    with rt.sessions() as db:
        assert db.scalar(select(func.count()).select_from(WebhookMessage)) == 0
        assert db.get_one(VendorApp, app_id).purpose == "Contact you about your repair"
    with rt.sessions() as db, db.begin():
        enqueue(db, db.get_one(VendorApp, app_id), CHANGED)
    with rt.sessions() as db:
        assert db.scalar(select(func.count()).select_from(WebhookMessage)) == 1


# -- Secrets and signatures -------------------------------------------------------------------


def test_the_secret_is_derived_from_the_master_key_and_app(db: Session, rt: Runtime) -> None:
    one, two = make_app(db, None), make_app(db, None)
    secret = webhook_secret_for(rt, one)
    assert secret == expected_secret(rt.secrets.webhook_key, one.id)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert webhook_secret_for(rt, two) != secret
    assert webhook_secret_for(rt, one) == secret  # derived, so stable


def test_rotating_the_secret_replaces_it(db: Session, rt: Runtime) -> None:
    app = make_app(db, None)
    old = webhook_secret_for(rt, app)
    assert rotate_webhook_secret(db, app) == 2
    db.expire_all()
    app = db.get_one(VendorApp, app.id)
    assert app.webhook_secret_version == 2
    assert webhook_secret_for(rt, app) == expected_secret(rt.secrets.webhook_key, app.id, 2)
    assert webhook_secret_for(rt, app) != old


def test_a_delivery_carries_headers_and_a_signature_that_verifies(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    message = enqueue(db, app, GRANTED)
    assert message is not None
    before = int(time.time())

    assert deliver_due(rt.sessions, rt) == 1

    [got] = receiver.requests
    assert got.path == "/hooks"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"] == str(message.id)
    assert before - 1 <= int(got.headers["webhook-timestamp"]) <= int(time.time()) + 1
    secret = expected_secret(rt.secrets.webhook_key, app.id)
    assert got.headers["webhook-signature"] == expected_signature(secret, got)
    assert json.loads(got.body) == message.payload
    assert verify_signature(secret, got.headers, got.body) == message.payload
    assert reload(db, message).delivered_at is not None


def test_after_rotation_deliveries_are_signed_with_the_new_secret(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    enqueue(db, app, CHANGED)
    rotate_webhook_secret(db, app)

    deliver_due(rt.sessions, rt)

    [got] = receiver.requests
    new = expected_secret(rt.secrets.webhook_key, app.id, 2)
    assert got.headers["webhook-signature"] == expected_signature(new, got)
    with pytest.raises(WebhookVerificationError):
        verify_signature(expected_secret(rt.secrets.webhook_key, app.id, 1), got.headers, got.body)


def _signed(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    received = Received("/", {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp)}, body)
    return {**received.headers, "webhook-signature": expected_signature(secret, received)}


def test_verify_signature_accepts_a_valid_message_among_several_signatures() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"type":"consent.revoked","timestamp":"2030-01-01T00:00:00Z","data":{}}'
    headers = _signed(secret, body, int(time.time()))
    headers["Webhook-Signature"] = "v1,bm90IGl0 " + headers.pop("webhook-signature")
    assert verify_signature(secret, headers, body)["type"] == "consent.revoked"


@pytest.mark.parametrize(
    "spoil",
    [
        lambda h, b: (h, b.replace(b"revoked", b"granted")),
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({**h, "webhook-signature": "v2," + h["webhook-signature"][3:]}, b),
    ],
    ids=["body", "id", "timestamp", "no-signature", "other-scheme"],
)
def test_verify_signature_rejects_an_altered_message(
    spoil: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]],
) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"type":"consent.revoked","timestamp":"2030-01-01T00:00:00Z","data":{}}'
    headers, spoiled = spoil(_signed(secret, body, int(time.time())), body)
    with pytest.raises(WebhookVerificationError):
        verify_signature(secret, headers, spoiled)


def test_verify_signature_rejects_a_stale_or_future_timestamp_and_another_secret() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    other = "whsec_" + base64.b64encode(b"o" * 32).decode()
    body = b"{}"
    now = int(time.time())
    for skew in (-301, 301):
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            verify_signature(secret, _signed(secret, body, now + skew), body)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify_signature(other, _signed(secret, body, now), body)


# -- Retries, backoff, abandonment ------------------------------------------------------------


def test_backoff_grows_exponentially_and_is_capped_at_a_day() -> None:
    delays = [backoff(n) for n in range(1, 10)]
    assert delays[:5] == [
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=8),
        timedelta(minutes=32),
        timedelta(minutes=128),
    ]
    assert delays[5] == timedelta(minutes=512)
    assert delays[6:] == [timedelta(hours=24)] * 3


def test_a_failed_delivery_is_retried_after_backoff_and_then_delivered(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    start = t0()
    message = enqueue(db, app, REVOKED, now=start)
    assert message is not None
    receiver.answer(500, 200)

    assert deliver_due(rt.sessions, rt, now=start) == 1

    failed = reload(db, message)
    assert (failed.attempts, failed.delivered_at, failed.locked_until) == (1, None, None)
    assert start + timedelta(seconds=30) <= failed.next_attempt_at
    assert failed.next_attempt_at <= start + timedelta(seconds=33)  # at most 10% jitter
    [first] = attempts_of(db, message)
    assert (first.status_code, first.error) == (500, "HTTP 500")

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=20)) == 0
    assert len(receiver.requests) == 1  # not due yet

    later = start + timedelta(seconds=40)
    assert deliver_due(rt.sessions, rt, now=later) == 1

    delivered = reload(db, message)
    assert (delivered.attempts, delivered.delivered_at) == (2, later)
    assert [a.status_code for a in attempts_of(db, message)] == [500, 200]
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {str(message.id)}  # the same id on every attempt, for deduplication
    secret = expected_secret(rt.secrets.webhook_key, app.id)
    for got in receiver.requests:
        assert got.headers["webhook-signature"] == expected_signature(secret, got)
    assert deliver_due(rt.sessions, rt, now=later + timedelta(days=3)) == 0
    assert len(receiver.requests) == 2


def test_a_message_is_abandoned_after_the_last_attempt(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, receiver.url)
    start = t0()
    message = enqueue(db, app, GRANTED, now=start)
    assert message is not None
    receiver.default = 503
    now = start
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert deliver_due(rt.sessions, rt, now=now) == 1, attempt
        state = reload(db, message)
        assert state.attempts == attempt
        now += timedelta(hours=27)  # the longest delay: a day plus 10% jitter

    abandoned = reload(db, message)
    assert abandoned.abandoned_at is not None
    assert abandoned.delivered_at is None
    assert len(receiver.requests) == MAX_ATTEMPTS
    assert deliver_due(rt.sessions, rt, now=now + timedelta(days=30)) == 0
    assert len(receiver.requests) == MAX_ATTEMPTS


def test_a_redirect_is_not_followed(db: Session, rt: Runtime, receiver: Receiver) -> None:
    app = make_app(db, receiver.url)
    message = enqueue(db, app, GRANTED)
    assert message is not None
    receiver.answer(307)

    deliver_due(rt.sessions, rt)

    assert [r.path for r in receiver.requests] == ["/hooks"]
    [attempt] = attempts_of(db, message)
    assert attempt.status_code == 307
    assert attempt.error is not None and "redirects are not followed" in attempt.error
    assert reload(db, message).delivered_at is None


def test_an_unreachable_endpoint_is_logged_without_secrets(db: Session, rt: Runtime) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = make_app(db, f"http://127.0.0.1:{port}/hooks")
    message = enqueue(db, app, GRANTED)
    assert message is not None

    assert deliver_due(rt.sessions, rt) == 1

    [attempt] = attempts_of(db, message)
    assert (attempt.status_code, attempt.error) == (None, "could not connect")
    assert reload(db, message).attempts == 1


def test_a_slow_endpoint_times_out(db: Session, rt: Runtime, receiver: Receiver) -> None:
    app = make_app(db, receiver.url)
    message = enqueue(db, app, GRANTED)
    assert message is not None
    receiver.delay = 1.0
    deliver_due(rt.sessions, rt, deadline=0.2)
    [attempt] = attempts_of(db, message)
    assert attempt.status_code is None
    assert attempt.error is not None and attempt.error == "timed out waiting for an answer"
    assert reload(db, message).delivered_at is None


def test_delivery_works_from_a_thread_that_already_runs_an_event_loop(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    """Callers may hold a running loop in their thread (an async caller, Playwright's sync
    API): delivery runs its own loop elsewhere."""
    message = enqueue(db, make_app(db, receiver.url), GRANTED)
    assert message is not None

    async def from_a_coroutine() -> int:
        return deliver_due(rt.sessions, rt)

    # On a thread of its own (this one may run a loop already: a browser test's).
    with ThreadPoolExecutor(1) as thread:
        assert thread.submit(asyncio.run, from_a_coroutine()).result(timeout=60) == 1
    assert len(receiver.requests) == 1


def test_an_endpoint_that_trickles_is_cut_off_at_the_deadline_and_delays_no_other_vendor(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    """Each byte arrives well within any per-read timeout; the whole attempt still ends at the
    deadline, and another vendor's message goes out meanwhile, not after it."""
    with trickle(gap=0.2) as slow_endpoint:
        slow = enqueue(db, make_app(db, slow_endpoint.url), GRANTED)
        fast = enqueue(db, make_app(db, receiver.url), GRANTED)
        assert slow is not None and fast is not None
        db.commit()
        outcomes: list[tuple[float, str]] = []
        started = time.monotonic()

        attempted = deliver_due(
            rt.sessions,
            rt,
            deadline=1.5,
            on_outcome=lambda o: outcomes.append((time.monotonic() - started, o.result)),
        )

        took = time.monotonic() - started
    assert attempted == 2
    # The endpoint never finishes on its own: the deadline ended the attempt (the upper bound
    # is loose on purpose, a busy machine is slow; the point is that it ended).
    assert 1.4 <= took < 30, took
    [(_, fast_result), (_, slow_result)] = sorted(outcomes)
    assert fast_result == "delivered"  # first: not behind the slow one
    assert slow_result == "retrying"
    [attempt] = attempts_of(db, slow)
    assert (attempt.status_code, attempt.error) == (None, "timed out waiting for an answer")
    assert attempt.duration_ms >= 1400
    assert len(receiver.requests) == 1


# -- Webhook URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "development", "allowed"),
    [
        ("https://bikes.example/hooks", False, True),
        ("https://bikes.example:8443/hooks?x=1", False, True),
        ("http://127.0.0.1:9000/hooks", True, True),
        ("http://localhost/hooks", True, True),
        ("http://[::1]:9000/hooks", True, True),
        ("http://127.0.0.1:9000/hooks", False, False),
        ("http://bikes.example/hooks", True, False),
        ("http://10.0.0.7/hooks", True, False),
        ("http://127.0.0.2/hooks", True, False),
        ("ftp://bikes.example/hooks", True, False),
        ("https://user:pw@bikes.example/hooks", True, False),
        ("https:///hooks", True, False),
        ("https://bikes.example:99999/hooks", True, False),
        ("javascript:alert(1)", True, False),
    ],
)
def test_webhook_urls_are_https_or_loopback_in_development(
    url: str, development: bool, allowed: bool
) -> None:
    assert (webhook_url_problem(url, allow_loopback_http=development) is None) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("[64:ff9b::a00:1]", False),  # NAT64 of 10.0.0.1
        ("[64:ff9b::7f00:1]", False),  # NAT64 of 127.0.0.1
        ("[64:ff9b:1::a9fe:a9fe]", False),  # local-use NAT64 of 169.254.169.254
        ("[2002:a00:1::1]", False),  # 6to4 of 10.0.0.1
        ("[2002:c0a8:101::1]", False),  # 6to4 of 192.168.1.1
        ("[::ffff:10.0.0.1]", False),  # IPv4-mapped
        ("[64:ff9b::808:808]", True),  # NAT64 of 8.8.8.8, a public host
        ("[2002:808:808::1]", True),  # 6to4 of 8.8.8.8
        ("[2606:4700:4700::1111]", True),
        ("10.0.0.1", False),
        ("8.8.8.8", True),
    ],
)
def test_addresses_that_embed_a_private_ipv4_address_are_refused(host: str, allowed: bool) -> None:
    problem = webhook_url_problem(f"https://{host}/hooks", allow_loopback_http=False)
    assert (problem is None) is allowed, problem


def test_the_worker_refuses_a_plain_http_url_and_logs_why(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app = make_app(db, "http://bikes.example/hooks")
    message = enqueue(db, app, GRANTED)
    assert message is not None

    assert deliver_due(rt.sessions, rt) == 1

    [attempt] = attempts_of(db, message)
    assert attempt.status_code is None
    assert attempt.error is not None and "must be https" in attempt.error
    state = reload(db, message)
    assert (state.attempts, state.delivered_at) == (1, None)


def test_in_production_the_worker_refuses_even_loopback_http(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    production = replace(rt, settings=rt.settings.model_copy(update={"environment": "production"}))
    app = make_app(db, receiver.url)
    message = enqueue(db, app, GRANTED)
    assert message is not None

    deliver_due(production.sessions, production)

    assert receiver.requests == []
    [attempt] = attempts_of(db, message)
    assert attempt.error is not None and "only to the loopback address in development" in (
        attempt.error
    )


# -- The delivery log -------------------------------------------------------------------------


def test_the_delivery_log_shows_recent_messages_with_their_attempts(
    db: Session, rt: Runtime, receiver: Receiver
) -> None:
    app, other = make_app(db, receiver.url), make_app(db, receiver.url)
    start = t0()
    first = enqueue(db, app, consent_event(n=1), now=start)
    second = enqueue(
        db, app, consent_event(ConsentChangedData, n=2), now=start + timedelta(seconds=1)
    )
    assert first is not None and second is not None
    receiver.answer(204, 500)
    deliver_due(rt.sessions, rt, now=start + timedelta(seconds=2))  # first ok, second fails
    third = enqueue(
        db,
        app,
        consent_event(ConsentRevokedData, n=4, reason="expired"),
        now=start + timedelta(seconds=3),
    )
    enqueue(db, other, consent_event(n=3), now=start)
    assert third is not None
    db.expire_all()  # the worker changed these rows through its own sessions

    log = delivery_log(db, app.id)

    assert [e.message_id for e in log] == [third.id, second.id, first.id]
    assert [e.status for e in log] == ["pending", "retrying", "delivered"]
    assert [e.event_type for e in log] == ["consent.revoked", "consent.changed", "consent.granted"]
    assert [[a.status_code for a in e.attempts] for e in log] == [[], [500], [204]]
    assert log[1].attempts[0].error == "HTTP 500"
    assert log[1].next_attempt_at is not None and log[2].next_attempt_at is None
    assert log[2].delivered_at == start + timedelta(seconds=2)
    assert log[0].payload["data"]["grant_id"] == "7a0c0b8e-0000-4000-8000-000000000004"
    assert [e.message_id for e in delivery_log(db, app.id, limit=1)] == [third.id]


# -- Concurrency: a real database, committed, two workers -------------------------------------


def test_two_workers_deliver_each_message_exactly_once(
    committed_rt: Runtime, receiver: Receiver
) -> None:
    rt = committed_rt
    with rt.sessions() as db, db.begin():
        app = make_app(db, receiver.url)
        ids = set()
        for n in range(6):
            message = enqueue(db, app, consent_event(n=n))
            assert message is not None
            ids.add(str(message.id))
    receiver.delay = 0.05  # keep both workers busy at the same time
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            factory: sessionmaker[Session] = sessionmaker(bind=rt.engine, expire_on_commit=False)
            barrier.wait()
            counts.append(deliver_due(factory, rt))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(ids)
    assert sum(counts) == 6
    with rt.sessions() as db:
        assert db.scalar(select(func.count()).select_from(WebhookAttempt)) == 6
        undelivered = select(func.count()).where(WebhookMessage.delivered_at.is_(None))
        assert db.scalar(undelivered) == 0


def test_a_claimed_message_is_not_taken_by_another_worker(
    committed_rt: Runtime, receiver: Receiver
) -> None:
    """A message claimed by a worker (still delivering, say) is skipped by the others until
    the claim expires, after which it is delivered (at least once)."""
    rt = committed_rt
    start = t0()
    with rt.sessions() as db, db.begin():
        message = enqueue(db, make_app(db, receiver.url), GRANTED, now=start)
        assert message is not None
        message.locked_until = start + timedelta(seconds=60)

    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=30)) == 0
    assert receiver.requests == []
    assert deliver_due(rt.sessions, rt, now=start + timedelta(seconds=61)) == 1
    assert len(receiver.requests) == 1


# -- vrm worker -------------------------------------------------------------------------------


@pytest.fixture
def deployment(
    backend: str, new_database: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    url = new_database(backend, migrated=True)
    monkeypatch.delenv("VRM_ENVIRONMENT", raising=False)
    monkeypatch.setenv("VRM_DATABASE_URL", url)
    monkeypatch.setenv("VRM_KEY_DIR", str(tmp_path / "keys"))
    get_settings.cache_clear()
    deployed = Deployment(url, tmp_path / "keys")
    deployed.upgrade()
    yield deployed
    deployed.close()
    get_settings.cache_clear()


def queue_one(deployment: Deployment, url: str) -> tuple[Runtime, VendorApp, WebhookMessage]:
    rt = deployment.runtime()
    with rt.sessions() as db, db.begin():
        app = make_app(db, url)
        message = enqueue(db, app, consent_event(purpose="Quintessentially-Private-77"))
        assert message is not None
    return rt, app, message


def test_vrm_worker_once_delivers_and_prints_no_payload(
    deployment: Deployment, receiver: Receiver
) -> None:
    rt, app, message = queue_one(deployment, receiver.url)

    output = deployment.ok("worker", "--once")

    [got] = receiver.requests
    secret = expected_secret(rt.secrets.webhook_key, app.id)
    assert got.headers["webhook-signature"] == expected_signature(secret, got)
    # The pass may report other work too (a checkpoint, a sweep, a warning): look for the
    # delivery's own line, once, and for the payload nowhere.
    delivery = [line for line in output.splitlines() if line.startswith(f"{message.id} ")]
    assert delivery == [
        f"{message.id} {app.client_id} consent.granted HTTP 200 attempt 1: delivered"
    ], output
    assert "Quintessentially" not in output
    again = deployment.ok("worker", "--once")
    assert str(message.id) not in again  # nothing due any more
    assert len(receiver.requests) == 1


def test_vrm_worker_runs_until_sigterm(deployment: Deployment, receiver: Receiver) -> None:
    _, app, message = queue_one(deployment, receiver.url)
    env = {
        **os.environ,
        "VRM_DATABASE_URL": deployment.url,
        "VRM_KEY_DIR": str(deployment.key_dir),
        "VRM_ENVIRONMENT": "development",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vrm.cli", "worker", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "the worker delivered nothing"
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, output
    assert f"{message.id} {app.client_id} consent.granted HTTP 200" in output
    assert "received SIGTERM" in output
    assert output.strip().endswith("webhook worker stopped")
    assert len(receiver.requests) == 1


def test_vrm_serve_with_worker_delivers_webhooks_while_it_serves(
    deployment: Deployment, receiver: Receiver
) -> None:
    """``make run``'s command: one process serves HTTP and delivers the queued webhook (no
    second terminal with ``vrm worker``), and stops both on SIGTERM."""
    _, app, message = queue_one(deployment, receiver.url)
    env = {
        **os.environ,
        "VRM_DATABASE_URL": deployment.url,
        "VRM_KEY_DIR": str(deployment.key_dir),
        "VRM_ENVIRONMENT": "development",
    }
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "vrm.cli", *command, "--with-worker", "--worker-interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "the served process delivered nothing"
        health = None
        while health is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except httpx.TransportError:
                time.sleep(0.05)
        assert health is not None and health.status_code == 200
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, output
    assert f"{message.id} {app.client_id} consent.granted HTTP 200" in output
    assert output.strip().endswith("webhook worker stopped"), output
    assert len(receiver.requests) == 1


def test_vrm_worker_ends_grants_and_tells_other_vendors_while_one_endpoint_stalls(
    deployment: Deployment, receiver: Receiver
) -> None:
    """The jobs (grant expiry here) run apart from delivery, and each app has its own lane:
    an endpoint that never finishes its answer holds up neither. The stalled attempt's
    deadline is far off, so what is checked is order, not speed: the other vendor is told
    while the stalled attempt is still open."""
    rt = deployment.runtime()
    person = deployment.add_individual(rt, f"p-{uuid.uuid4().hex[:8]}@example.org", full=False)
    stalling_endpoint = trickle(gap=0.2)
    stalling = stalling_endpoint.__enter__()
    try:
        with rt.sessions() as db, db.begin():
            stalled = enqueue(db, make_app(db, stalling.url), GRANTED)
            assert stalled is not None
            other = make_app(db, receiver.url)
            grant = GrantService(db, rt).decide(
                person, other, Decision(["email"], "30d"), "service-only"
            )
            grant.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        env = {
            **os.environ,
            "VRM_DATABASE_URL": deployment.url,
            "VRM_KEY_DIR": str(deployment.key_dir),
            "VRM_ENVIRONMENT": "development",
            "VRM_WEBHOOK_DEADLINE_SECONDS": "60",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "vrm.cli", "worker", "--interval", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            started = time.monotonic()
            while len(receiver.requests) < 2 and time.monotonic() - started < 50:
                time.sleep(0.05)
            assert len(receiver.requests) == 2, "the other vendor was not told"
            assert stalling.requests == 1  # the stalled attempt is open meanwhile
            with rt.sessions() as db:
                assert attempts_of(db, stalled) == []
            # The endpoint goes away: the open attempt ends, and the worker stops after it.
            stalling_endpoint.__exit__(None, None, None)
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        stalling_endpoint.__exit__(None, None, None)

    told = [json.loads(r.body)["type"] for r in receiver.requests]
    assert told == ["consent.granted", "consent.revoked"]
    assert "1 expired grants ended" in output
    assert f"{stalled.id} " in output and "no response" in output  # finished before stopping
    with rt.sessions() as db:
        [attempt] = attempts_of(db, stalled)
        assert attempt.status_code is None and reload(db, stalled).delivered_at is None
