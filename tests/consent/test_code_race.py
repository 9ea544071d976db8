"""Parallel redemptions on separate connections: single use must hold under concurrency.

The usual ``db`` fixture keeps one connection in one rolled-back transaction, which would
serialise everything; these tests commit for real into a fresh database per test (SQLite file
or PostgreSQL, following ``backend``) and fire requests from threads, each through its own
TestClient on one app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from consent.oauth.models import ConsentEvent
from tests.conftest import test_settings as make_settings
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
from vault.db import make_engine
from vault.migrate import upgrade
from vault.runtime import Runtime
from vrm.app import create_app

BASE = "http://testserver"
PARALLEL = 8


@pytest.fixture
def committed_rt(backend: str, new_database: Any, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on a fresh, migrated database whose writes are committed for real."""
    engine = make_engine(new_database(backend))
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    yield Runtime.from_settings(make_settings(tmp_path / "keys", url), engine=engine)
    engine.dispose()


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
    assert count_events(committed_rt, "code.replayed") == PARALLEL - 1


def test_of_parallel_refreshes_of_one_token_exactly_one_succeeds_and_reuse_revokes_the_family(
    app: FastAPI, committed_rt: Runtime
) -> None:
    vendor, code, verifier = connected(app, committed_rt)
    token = (
        TestClient(app, base_url=BASE)
        .post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
            auth=(vendor.client_id, vendor.secret),
        )
        .json()
    )
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
    assert count_events(committed_rt, "token.reuse_detected") == PARALLEL - 1
