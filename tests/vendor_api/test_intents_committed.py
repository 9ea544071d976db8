"""The vendor intent listing's tests again, on a database whose writes commit, as a served
vault's do.

On PostgreSQL a listing runs in the event loop (one statement reads the token and the page,
``AppCall.read``; ``intents.market.listed_async`` makes the answer, on
``vault.pgasync``'s connections), which the rolled-back tests cannot reach. Each test has a
database of its own: a listing shows every open intent there is. SQLite has no event-loop path
(its committed listing is the rolled-back tests' threaded one), so this module is
PostgreSQL's.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlalchemy.orm import Session

from consent.grants.models import OAuthToken
from tests.committed import fresh_engine, fresh_rt, recorded
from tests.consent.factories import individual
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from tests.intents.test_service import (
    test_a_vendor_account_blocked_through_one_app_is_blocked_in_all_its_apps,
)
from tests.vendor_api.test_intents import *  # noqa: F403 (the same tests, on these fixtures)
from tests.vendor_api.test_ratelimit import (
    test_with_redis_configured_the_api_counts_there,
    test_with_redis_out_of_reach_a_vendor_request_is_a_503,
)
from vault.runtime import Runtime
from vendor_api import intents as endpoints

__all__ = [
    "fresh_engine",
    "fresh_rt",
    "test_a_vendor_account_blocked_through_one_app_is_blocked_in_all_its_apps",
    "test_with_redis_configured_the_api_counts_there",
    "test_with_redis_out_of_reach_a_vendor_request_is_a_503",
]

BACKENDS = ["postgresql"]
# Refused before any statement runs, the same way on either path: once is enough.
del test_bad_filters_are_a_clear_400  # noqa: F821


@pytest.fixture
def in_event_loop(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many intents each event-loop listing showed."""
    return recorded(monkeypatch, endpoints, "listed_async", lambda found: len(found[0]))


def test_a_served_postgresql_vault_lists_in_the_event_loop(
    client: TestClient, db: Session, rt: Runtime, in_event_loop: list[int]
) -> None:
    owner = individual(client, db, rt)
    for title in ("One", "Two", "Three"):
        make_intent(db, rt, owner, title=title)
    headers = app_token(db, rt, market_vendor(db, rt))

    first = client.get("/vendor/v1/intents", headers=headers, params={"limit": 2})
    rest = client.get(
        "/vendor/v1/intents", headers=headers, params={"cursor": first.json()["next_cursor"]}
    )

    assert [item["title"] for item in first.json()["data"] + rest.json()["data"]] == [
        "Three",
        "Two",
        "One",
    ]
    assert in_event_loop == [2, 1]
    assert first.headers["ratelimit-remaining"]


def test_the_event_loop_answers_exactly_as_the_threaded_path(
    client: TestClient, app: FastAPI, db: Session, rt: Runtime, in_event_loop: list[int]
) -> None:
    """The same page, byte for byte: with this app's offer on one intent and none on the
    other, and another vendor's offer that must not show."""
    owner = individual(client, db, rt)
    offered, plain = make_intent(db, rt, owner, title="Offered"), make_intent(db, rt, owner)
    mine, theirs = market_vendor(db, rt, name="Mine"), market_vendor(db, rt, name="Theirs")
    headers = app_token(db, rt, mine)
    for vendor, price in ((mine, "850.00"), (theirs, "713.37")):
        made = client.post(
            f"/vendor/v1/intents/{offered.id}/offers",
            headers=app_token(db, rt, vendor),
            json=offer_body(price=price),
        )
        assert made.status_code == 201, made.text

    fast = client.get("/vendor/v1/intents", headers=headers)
    app.state.hot_pg, kept = None, app.state.hot_pg
    try:
        threaded = client.get("/vendor/v1/intents", headers=headers)
    finally:
        app.state.hot_pg = kept

    assert in_event_loop == [2]
    assert fast.status_code == threaded.status_code == 200
    assert fast.content == threaded.content
    by_id = {item["id"]: item for item in fast.json()["data"]}
    assert by_id[str(offered.id)]["your_offer"]["price"] == "850.00"
    assert by_id[str(plain.id)]["your_offer"] is None
    assert "713.37" not in fast.text


def test_a_token_revoked_in_the_database_is_refused_by_the_next_listing(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    headers = app_token(db, rt, market_vendor(db, rt))
    assert client.get("/vendor/v1/intents", headers=headers).status_code == 200

    db.execute(update(OAuthToken).values(revoked_at=func.now()))
    db.commit()

    refused = client.get("/vendor/v1/intents", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


def test_with_nothing_to_show_the_event_loop_answers_an_empty_page(
    client: TestClient, db: Session, rt: Runtime, in_event_loop: list[int]
) -> None:
    """The token's row comes back with an empty page joined to it (its columns null): that is
    no intent, not an intent of nulls."""
    headers = app_token(db, rt, market_vendor(db, rt))

    response = client.get("/vendor/v1/intents", headers=headers)

    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}
    assert in_event_loop == [0]
