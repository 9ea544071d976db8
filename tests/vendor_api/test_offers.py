"""The vendor API for offers: make, replace, change, withdraw; bad input; rate limits."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from intents.decisions import OfferDecisions
from intents.models import Intent, Offer
from tests.consent.factories import individual
from tests.intents.factories import app_token, in_days, make_intent, market_vendor, offer_body
from tests.web.conftest import Count, MakeClient
from vault.runtime import Runtime


def post_offer(client: TestClient, headers: dict[str, str], intent_id: object, **body: object):  # type: ignore[no-untyped-def]
    return client.post(
        f"/vendor/v1/intents/{intent_id}/offers", headers=headers, json={**offer_body(), **body}
    )


def test_an_offer_is_created_then_replaced_not_duplicated(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))

    first = post_offer(client, headers, intent.id, price="850")
    second = post_offer(client, headers, intent.id, price="825.50", message="Better price.")

    assert first.status_code == 201
    assert first.headers["location"] == f"/vendor/v1/offers/{first.json()['id']}"
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert (second.json()["price"], second.json()["message"]) == ("825.50", "Better price.")
    assert count(Offer) == 1
    listed = client.get(f"/vendor/v1/intents/{intent.id}", headers=headers).json()
    assert listed["your_offer"]["price"] == "825.50"


def test_a_vendor_sees_only_its_own_offers(client: TestClient, db: Session, rt: Runtime) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    mine, theirs = market_vendor(db, rt, name="Mine"), market_vendor(db, rt, name="Theirs")
    my_headers, their_headers = app_token(db, rt, mine), app_token(db, rt, theirs)
    my_offer = post_offer(client, my_headers, intent.id, price="850").json()
    their_offer = post_offer(client, their_headers, intent.id, price="713.37").json()

    assert [
        o["id"] for o in client.get("/vendor/v1/offers", headers=my_headers).json()["data"]
    ] == [my_offer["id"]]
    seen = client.get(f"/vendor/v1/intents/{intent.id}", headers=my_headers).json()
    assert seen["your_offer"]["id"] == my_offer["id"]
    # Neither the other vendor's price nor its offer's id (a bare "700" would also match
    # the digits of a timestamp or an id).
    assert "713.37" not in str(seen) and their_offer["id"] not in str(seen)
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"price": "1"}} if method == "patch" else {}
        response = getattr(client, method)(
            f"/vendor/v1/offers/{their_offer['id']}", headers=my_headers, **kwargs
        )
        assert response.status_code == 404, method


def test_patch_changes_a_live_offer_and_delete_withdraws_it(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = post_offer(client, headers, intent.id).json()["id"]

    patched = client.patch(
        f"/vendor/v1/offers/{offer_id}", headers=headers, json={"valid_until": in_days(10)}
    )
    assert patched.status_code == 200
    assert patched.json()["price"] == "850.00"

    assert client.delete(f"/vendor/v1/offers/{offer_id}", headers=headers).status_code == 204
    assert client.get(f"/vendor/v1/offers/{offer_id}", headers=headers).json()["status"] == (
        "withdrawn"
    )
    again = client.delete(f"/vendor/v1/offers/{offer_id}", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "offer_not_live"
    # A withdrawn offer may be made again while the intent is open.
    renewed = post_offer(client, headers, intent.id, price="840")
    assert (renewed.status_code, renewed.json()["status"]) == (200, "live")


def test_offers_are_listed_by_status(client: TestClient, db: Session, rt: Runtime) -> None:
    owner = individual(client, db, rt)
    one, two = make_intent(db, rt, owner, title="one"), make_intent(db, rt, owner, title="two")
    headers = app_token(db, rt, market_vendor(db, rt))
    kept = post_offer(client, headers, one.id).json()["id"]
    gone = post_offer(client, headers, two.id).json()["id"]
    client.delete(f"/vendor/v1/offers/{gone}", headers=headers)

    def with_status(status: str) -> list[str]:
        body = client.get("/vendor/v1/offers", headers=headers, params={"status": status}).json()
        return [o["id"] for o in body["data"]]

    assert with_status("live") == [kept]
    assert with_status("withdrawn") == [gone]
    bad = client.get("/vendor/v1/offers", headers=headers, params={"status": "pending"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        ({"price": "-1"}, 400, "invalid_input", "price"),
        ({"price": "0"}, 400, "invalid_input", "price"),
        ({"price": "12345678901"}, 400, "invalid_input", "price"),
        ({"price": "10.001"}, 400, "invalid_input", "price"),
        ({"price": "ten"}, 400, "invalid_input", "price"),
        ({"currency": "USD"}, 400, "currency_mismatch", "currency"),
        ({"currency": "XYZ"}, 400, "invalid_input", "currency"),
        ({"valid_until": "2020-01-01T00:00:00Z"}, 400, "invalid_input", "valid_until"),
        ({"valid_until": "2030-01-01T00:00:00"}, 400, "invalid_input", "valid_until"),
        ({"valid_until": "next week"}, 400, "invalid_input", "valid_until"),
        ({"message": "x" * 2001}, 400, "invalid_input", "message"),
        ({"message": "hello\u202eworld"}, 400, "invalid_input", "message"),
    ],
)
def test_bad_offers_are_refused_and_nothing_is_written(
    client: TestClient,
    db: Session,
    rt: Runtime,
    count: Count,
    body: dict[str, str],
    status: int,
    error: str,
    field: str,
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))

    response = post_offer(client, headers, intent.id, **body)

    assert response.status_code == status, response.text
    assert (response.json()["error"], response.json()["field"]) == (error, field)
    assert count(Offer) == 0


def test_a_valid_until_too_far_ahead_is_refused(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))
    response = post_offer(client, headers, intent.id, valid_until=in_days(181))
    assert response.status_code == 400 and "at most 180 days" in response.json()["detail"]
    assert count(Offer) == 0


def test_an_unknown_field_or_a_body_of_the_wrong_shape_is_422(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))

    assert post_offer(client, headers, intent.id, discount="10%").status_code == 422
    assert (
        client.post(
            f"/vendor/v1/intents/{intent.id}/offers", headers=headers, content=b"[1, 2]"
        ).status_code
        == 422
    )
    assert count(Offer) == 0


def test_a_message_with_a_lone_surrogate_is_422_on_create_and_on_change(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = {**app_token(db, rt, market_vendor(db, rt)), "content-type": "application/json"}
    path = f"/vendor/v1/intents/{intent.id}/offers"

    # json.dumps escapes the lone surrogate as \ud800, as a vendor's broken encoder might.
    created = client.post(path, headers=headers, content=json.dumps(offer_body(message="\ud800")))
    assert created.status_code == 422, created.text
    assert created.json()["error"] == "validation_error"
    assert "message holds a lone UTF-16 surrogate" in created.json()["detail"]
    assert count(Offer) == 0

    offer = client.post(path, headers=headers, json=offer_body(message="Fine.")).json()
    changed = client.patch(
        f"/vendor/v1/offers/{offer['id']}",
        headers=headers,
        content=json.dumps({"message": "Still \udfff fine?"}),
    )
    assert changed.status_code == 422, changed.text
    assert "message holds a lone UTF-16 surrogate" in changed.json()["detail"]
    shown = client.get(f"/vendor/v1/offers/{offer['id']}", headers=headers).json()
    assert shown["message"] == "Fine."


def test_an_offer_on_a_closed_intent_is_409_and_nothing_is_written(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    winner, late = market_vendor(db, rt, name="Winner"), market_vendor(db, rt, name="Late")
    won = post_offer(client, app_token(db, rt, winner), intent.id).json()["id"]
    OfferDecisions(db, rt).accept(owner, intent.id, uuid.UUID(won))
    db.commit()

    response = post_offer(client, app_token(db, rt, late), intent.id)

    assert response.status_code == 409
    assert response.json()["error"] == "intent_closed"
    assert count(Offer) == 1


def test_an_offer_on_an_expired_intent_is_409(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    db.execute(
        update(Intent)
        .where(Intent.id == intent.id)
        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    db.commit()

    response = post_offer(client, app_token(db, rt, market_vendor(db, rt)), intent.id)

    assert response.status_code == 409 and response.json()["error"] == "intent_closed"
    assert count(Offer) == 0


def test_an_offer_on_a_draft_or_unknown_intent_is_404(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    draft = make_intent(db, rt, individual(client, db, rt), publish=False)
    headers = app_token(db, rt, market_vendor(db, rt))
    assert post_offer(client, headers, draft.id).status_code == 404
    assert post_offer(client, headers, uuid.uuid4()).status_code == 404
    assert post_offer(client, headers, "not-a-uuid").status_code == 404


def test_an_offer_needs_the_offers_write_scope(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    vendor = market_vendor(db, rt)

    response = post_offer(client, app_token(db, rt, vendor, scope="intents:read"), intent.id)

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="offers:write"' in response.headers["www-authenticate"]
    assert count(Offer) == 0


def test_a_declined_vendor_cannot_offer_again_on_that_intent(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = post_offer(client, headers, intent.id).json()["id"]
    OfferDecisions(db, rt).decline(owner, intent.id, uuid.UUID(offer_id))
    db.commit()

    response = post_offer(client, headers, intent.id, price="700")

    assert response.status_code == 409 and response.json()["error"] == "offer_declined"
    assert db.scalars(select(Offer.status)).one() == "declined"


def test_an_expired_offer_shows_as_expired_and_cannot_be_accepted(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = post_offer(client, headers, intent.id).json()["id"]
    db.execute(
        update(Offer)
        .where(Offer.id == uuid.UUID(offer_id))
        .values(valid_until=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.commit()

    assert client.get(f"/vendor/v1/offers/{offer_id}", headers=headers).json()["status"] == (
        "expired"
    )
    from intents.errors import OfferNotLive

    with pytest.raises(OfferNotLive):
        OfferDecisions(db, rt).accept(owner, intent.id, uuid.UUID(offer_id))


@pytest.fixture
def frozen_window(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The rate limiter's clock stopped mid-minute, so no test straddles a window boundary."""
    from consent.vendors import ratelimit

    moment = datetime.now(UTC).replace(second=20, microsecond=0)
    monkeypatch.setattr(ratelimit, "utcnow", lambda: moment)
    return moment


def test_writes_over_the_limit_get_429_with_retry_after(
    client_with: MakeClient, db: Session, rt: Runtime, count: Count, frozen_window: datetime
) -> None:
    vendor_client = client_with(vendor_writes_per_minute=3, vendor_reads_per_minute=5)
    owner = individual(vendor_client, db, rt)
    intents = [make_intent(db, rt, owner, title=f"Intent {n}") for n in range(4)]
    headers = app_token(db, rt, market_vendor(db, rt))

    statuses = [post_offer(vendor_client, headers, i.id).status_code for i in intents]

    assert statuses == [201, 201, 201, 429]
    refused = post_offer(vendor_client, headers, intents[3].id)
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["retry-after"] == "40"  # the window ends at :00
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert count(Offer) == 3
    # Reads have their own budget.
    read = vendor_client.get("/vendor/v1/intents", headers=headers)
    assert read.status_code == 200
    assert (read.headers["ratelimit-limit"], read.headers["ratelimit-remaining"]) == ("5", "4")


def test_writes_that_fail_still_count_against_the_limit(
    client_with: MakeClient, db: Session, rt: Runtime, frozen_window: datetime
) -> None:
    """An offer on an intent that does not exist is refused after it was counted: a vendor
    cannot probe without limit by sending requests that fail."""
    vendor_client = client_with(vendor_writes_per_minute=2)
    owner = individual(vendor_client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))

    missing = [post_offer(vendor_client, headers, uuid.uuid4()) for _ in "ab"]

    assert [r.status_code for r in missing] == [404, 404]
    assert missing[1].headers["ratelimit-remaining"] == "0"
    assert post_offer(vendor_client, headers, intent.id).status_code == 429


def test_each_app_has_its_own_limit(
    client_with: MakeClient, db: Session, rt: Runtime, frozen_window: datetime
) -> None:
    vendor_client = client_with(vendor_reads_per_minute=2)
    one, two = market_vendor(db, rt, name="One"), market_vendor(db, rt, name="Two")
    one_headers, two_headers = app_token(db, rt, one), app_token(db, rt, two)

    first = [
        vendor_client.get("/vendor/v1/intents", headers=one_headers).status_code for _ in "abc"
    ]

    assert first == [200, 200, 429]
    assert vendor_client.get("/vendor/v1/intents", headers=two_headers).status_code == 200
