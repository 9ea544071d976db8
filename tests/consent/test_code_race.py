"""Parallel redemptions on separate connections: single use must hold under concurrency, and
the replays and reuses of one token family are recorded once, however many arrive at once.

The usual ``db`` fixture keeps one connection in one rolled-back transaction, which would
serialise everything; these tests commit for real into a fresh database per test (SQLite file
or PostgreSQL, following ``backend``) and fire requests from threads, each through its own
TestClient on one app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from consent.ledger.models import LedgerEntry
from consent.oauth.models import ConsentEvent
from tests.consent.oauth_helpers import (
    REDIRECT_URI,
    Vendor,
    authorize_url,
    consent,
    make_vendor,
    new_verifier,
    oauth_client,
    query_of,
)
from tests.helpers import sign_up
from tests.sequencer import run_sequencer
from vault.runtime import Runtime
from vrm.app import create_app

BASE = "http://testserver"
PARALLEL = 8


@pytest.fixture
def app(committed_rt: Runtime) -> FastAPI:
    return create_app(runtime=committed_rt)


def connected(app: FastAPI, rt: Runtime) -> tuple[Vendor, str, str]:
    """A person signs up and consents; returns (vendor, code, verifier), all committed."""
    with rt.sessions() as session:
        vendor = make_vendor(session, rt)
    with TestClient(app, base_url=BASE, follow_redirects=False) as browser:
        sign_up(browser)
        oauth = oauth_client(browser, vendor, "openid profile:email")
        verifier = new_verifier()
        url, _ = authorize_url(oauth, verifier)
        code = query_of(consent(browser, url))["code"]
    return vendor, code, verifier


def all_at_once(app: FastAPI, send: Callable[[TestClient], httpx.Response]) -> list[httpx.Response]:
    """``send`` from PARALLEL threads, each with its own TestClient, released together."""
    barrier = threading.Barrier(PARALLEL)

    def one(_: int) -> httpx.Response:
        vendor_side = TestClient(app, base_url=BASE)
        barrier.wait(timeout=30)
        return send(vendor_side)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, range(PARALLEL)))


def introspect(app: FastAPI, vendor: Vendor, token: str) -> dict[str, Any]:
    response = TestClient(app, base_url=BASE).post(
        "/oauth/introspect", data={"token": token}, auth=(vendor.client_id, vendor.secret)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def profile_status(app: FastAPI, access_token: str) -> int:
    response = TestClient(app, base_url=BASE).get(
        "/vendor/v1/profile", headers={"Authorization": f"Bearer {access_token}"}
    )
    return response.status_code


def count_events(rt: Runtime, event_type: str) -> int:
    with rt.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ConsentEvent)
                .where(ConsentEvent.event_type == event_type)
            )
            or 0
        )


def ledger_entries(rt: Runtime, event_type: str) -> int:
    run_sequencer(rt)
    with rt.sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.event_type == event_type)
            )
            or 0
        )


def redeem_code(app: FastAPI, vendor: Vendor, code: str, verifier: str) -> dict[str, Any]:
    response = TestClient(app, base_url=BASE).post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(vendor.client_id, vendor.secret),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_of_parallel_code_redemptions_exactly_one_succeeds_and_the_replays_revoke_it(
    app: FastAPI, committed_rt: Runtime
) -> None:
    vendor, code, verifier = connected(app, committed_rt)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }

    responses = all_at_once(
        app,
        lambda c: c.post("/oauth/token", data=data, auth=(vendor.client_id, vendor.secret)),
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (PARALLEL - 1), [r.text for r in responses]
    refused = [r.json()["error"] for r in responses if r.status_code == 400]
    assert refused == ["invalid_grant"] * (PARALLEL - 1)
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert introspect(app, vendor, winner["access_token"]) == {"active": False}
    assert introspect(app, vendor, winner["refresh_token"]) == {"active": False}
    assert profile_status(app, winner["access_token"]) == 401
    # Seven replays of one code: one security event and one ledger entry, not seven.
    assert count_events(committed_rt, "code.replayed") == 1
    assert ledger_entries(committed_rt, "code.replayed") == 1


def test_of_parallel_refreshes_of_one_token_exactly_one_succeeds_and_reuse_revokes_the_family(
    app: FastAPI, committed_rt: Runtime
) -> None:
    vendor, code, verifier = connected(app, committed_rt)
    token = redeem_code(app, vendor, code, verifier)
    data = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}

    responses = all_at_once(
        app,
        lambda c: c.post("/oauth/token", data=data, auth=(vendor.client_id, vendor.secret)),
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (PARALLEL - 1), [r.text for r in responses]
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert introspect(app, vendor, winner["refresh_token"]) == {"active": False}
    assert profile_status(app, winner["access_token"]) == 401
    assert count_events(committed_rt, "token.reuse_detected") == 1
    assert ledger_entries(committed_rt, "token.reuse_detected") == 1


def test_a_family_replayed_and_reused_from_every_side_at_once_is_recorded_once(
    app: FastAPI, committed_rt: Runtime
) -> None:
    """The code and both of its family's spent refresh tokens, each sent from many threads at
    once: the family is revoked and the ledger grows by exactly one entry, whichever comes
    first; a second family of the same app still gets its own entry."""
    vendor, code, verifier = connected(app, committed_rt)
    first = redeem_code(app, vendor, code, verifier)
    auth = (vendor.client_id, vendor.secret)
    client = TestClient(app, base_url=BASE)

    def rotate(refresh_token: str) -> dict[str, str]:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        response = client.post("/oauth/token", data=form, auth=auth)
        assert response.status_code == 200, response.text
        return dict(response.json())

    second = rotate(first["refresh_token"])
    latest = rotate(second["refresh_token"])  # so that every token sent below is spent
    code_replay = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    sends = [
        code_replay,
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
    ]
    before = ledger_entries(committed_rt, "code.replayed") + ledger_entries(
        committed_rt, "token.reuse_detected"
    )
    counter = iter(range(PARALLEL * 10))
    lock = threading.Lock()

    def attack(c: TestClient) -> httpx.Response:
        with lock:
            n = next(counter)
        return c.post("/oauth/token", data=sends[n % len(sends)], auth=auth)

    responses = all_at_once(app, attack) + all_at_once(app, attack)

    assert {r.status_code for r in responses} == {400}, [r.text for r in responses]
    assert profile_status(app, latest["access_token"]) == 401
    recorded = ledger_entries(committed_rt, "code.replayed") + ledger_entries(
        committed_rt, "token.reuse_detected"
    )
    assert before == 0 and recorded == 1

    # Another family (another person's consent to another app) is recorded on its own.
    other_vendor, other_code, other_verifier = connected(app, committed_rt)
    other = redeem_code(app, other_vendor, other_code, other_verifier)
    again = {"grant_type": "refresh_token", "refresh_token": other["refresh_token"]}
    other_auth = (other_vendor.client_id, other_vendor.secret)
    client = TestClient(app, base_url=BASE)
    assert client.post("/oauth/token", data=again, auth=other_auth).status_code == 200
    assert client.post("/oauth/token", data=again, auth=other_auth).status_code == 400
    assert (
        ledger_entries(committed_rt, "code.replayed")
        + ledger_entries(committed_rt, "token.reuse_detected")
        == 2
    )
