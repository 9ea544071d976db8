"""The vendor API for intents: what a vendor app sees, filters, pages, and never sees."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from consent.grants.service import pairwise_subject
from intents.blocks import BlockService
from intents.decisions import OfferDecisions
from intents.models import Intent
from intents.service import IntentService
from tests.consent.factories import bearer, connect, individual
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from vault.accounts.models import Account, AccountStatus
from vault.runtime import Runtime
from vendor_api.schemas import IntentPage


def listed(client: TestClient, headers: dict[str, str], **params: object) -> list[dict]:
    response = client.get("/vendor/v1/intents", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def ids(items: list[dict]) -> set[str]:
    return {item["id"] for item in items}


def test_a_vendor_lists_an_open_intent_with_its_decrypted_text_and_no_identity(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt, given_name="Zephyrine")
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt)

    [item] = listed(client, app_token(db, rt, vendor))

    assert item["id"] == str(intent.id)
    assert item["title"] == "Road bike, size 56"
    assert item["category"] == "sports.bicycles"
    assert item["category_label"] == "Sports and outdoors > Bicycles"
    assert (item["max_budget"], item["currency"]) == ("900.00", "EUR")
    assert (item["country"], item["city"], item["online"]) == ("NL", "Utrecht", True)
    assert item["owner"].startswith("anon-")
    body = str(item)
    assert str(owner.id) not in body and "Zephyrine" not in body and "@" not in body


def test_a_page_is_the_documented_schema_and_says_what_reading_each_intent_says(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    """The page is serialised from plain values, not through the models: it must be the JSON
    of ``IntentPage`` all the same, byte for byte, and each item what the single read (built
    through ``IntentOut``) answers, with an offer of the app's and without, with a date and
    without."""
    owner = individual(client, db, rt)
    needed_by = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
    offered = make_intent(db, rt, owner, needed_by=needed_by)
    plain = make_intent(db, rt, owner, country="", city="", title='Ünïcode “quotes” \\ "')
    headers = app_token(db, rt, market_vendor(db, rt))
    made = client.post(
        f"/vendor/v1/intents/{offered.id}/offers",
        headers=headers,
        json={**offer_body(), "message": "Line one\nline two"},
    )
    assert made.status_code == 201, made.text

    response = client.get("/vendor/v1/intents", headers=headers)

    assert response.status_code == 200
    assert IntentPage.model_validate_json(response.content).model_dump_json() == response.text
    items = {item["id"]: item for item in response.json()["data"]}
    assert items[str(offered.id)]["your_offer"]["message"] == "Line one\nline two"
    assert items[str(offered.id)]["needed_by"] == needed_by
    assert items[str(plain.id)]["your_offer"] is None
    assert items[str(plain.id)]["title"] == 'Ünïcode “quotes” \\ "'
    for intent_id, item in items.items():
        assert client.get(f"/vendor/v1/intents/{intent_id}", headers=headers).json() == item


def test_the_owner_pseudonym_is_stable_per_vendor_and_differs_between_vendors(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    make_intent(db, rt, owner, title="First")
    make_intent(db, rt, owner, title="Second")
    one, two = market_vendor(db, rt, name="One"), market_vendor(db, rt, name="Two")

    seen_by_one = {item["owner"] for item in listed(client, app_token(db, rt, one))}
    seen_by_two = {item["owner"] for item in listed(client, app_token(db, rt, two))}

    assert len(seen_by_one) == 1 and len(seen_by_two) == 1
    assert seen_by_one != seen_by_two
    # Nor can a vendor match it with the OIDC subject of the same person.
    assert pairwise_subject(rt, one.app.id, owner.id) not in seen_by_one


def test_drafts_withdrawn_closed_and_expired_intents_are_never_listed_or_readable(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    open_one = make_intent(db, rt, owner, title="Open")
    draft = make_intent(db, rt, owner, title="Draft", publish=False)
    withdrawn = make_intent(db, rt, owner, title="Withdrawn")
    IntentService(db, rt).withdraw(owner, withdrawn.id)
    expired = make_intent(db, rt, owner, title="Expired")
    db.execute(
        update(Intent)
        .where(Intent.id == expired.id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    closed = make_intent(db, rt, owner, title="Closed")
    db.commit()
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    offer = client.post(
        f"/vendor/v1/intents/{closed.id}/offers", headers=headers, json=offer_body()
    )
    assert offer.status_code == 201
    OfferDecisions(db, rt).accept(owner, closed.id, uuid.UUID(offer.json()["id"]))
    db.commit()

    assert ids(listed(client, headers)) == {str(open_one.id)}
    for hidden in (draft, withdrawn, expired, closed):
        response = client.get(f"/vendor/v1/intents/{hidden.id}", headers=headers)
        assert response.status_code == 404, hidden
        assert response.json()["error"] == "not_found"


def test_a_blocked_vendor_sees_none_of_the_individuals_intents(
    client: TestClient, db: Session, rt: Runtime, second_client: TestClient
) -> None:
    owner = individual(client, db, rt)
    other = individual(second_client, db, rt)
    mine = make_intent(db, rt, owner, title="Mine")
    theirs = make_intent(db, rt, other, title="Theirs")
    blocked, welcome = market_vendor(db, rt, name="Blocked"), market_vendor(db, rt, name="Welcome")
    BlockService(db, rt).block(owner, blocked.app.id)
    db.commit()

    assert ids(listed(client, app_token(db, rt, blocked))) == {str(theirs.id)}
    assert ids(listed(client, app_token(db, rt, welcome))) == {str(mine.id), str(theirs.id)}
    headers = app_token(db, rt, blocked)
    assert client.get(f"/vendor/v1/intents/{mine.id}", headers=headers).status_code == 404
    refused = client.post(
        f"/vendor/v1/intents/{mine.id}/offers", headers=headers, json=offer_body()
    )
    # The same answer as for a withdrawn intent: the vendor cannot tell it was blocked.
    assert refused.status_code == 409
    assert refused.json()["error"] == "intent_closed"


def test_intents_of_an_erased_or_disabled_individual_are_not_seen(
    client: TestClient, db: Session, rt: Runtime, second_client: TestClient
) -> None:
    erased = individual(client, db, rt)
    disabled = individual(second_client, db, rt)
    gone = make_intent(db, rt, erased, title="Gone")
    paused = make_intent(db, rt, disabled, title="Paused")
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    assert ids(listed(client, headers)) == {str(gone.id), str(paused.id)}

    IntentService(db, rt).erase_individual(erased.id)
    db.delete(db.get_one(Account, erased.id))
    db.execute(
        update(Account).where(Account.id == disabled.id).values(status=AccountStatus.DISABLED)
    )
    db.commit()

    assert listed(client, headers) == []
    assert client.get(f"/vendor/v1/intents/{gone.id}", headers=headers).status_code == 404
    assert client.get(f"/vendor/v1/intents/{paused.id}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"category": "sports"}, {"bike", "tent"}),
        ({"category": "sports.bicycles"}, {"bike"}),
        ({"category": "electronics"}, {"laptop"}),
        ({"country": "NL"}, {"bike", "laptop"}),
        ({"country": "NL", "city": "Utrecht"}, {"bike"}),
        ({"online": "true"}, {"laptop"}),
        ({"currency": "EUR", "budget_min": "500", "budget_max": "1000"}, {"bike"}),
        ({"currency": "EUR", "budget_min": "1000"}, {"laptop"}),
        ({"currency": "GBP"}, {"tent"}),
        ({"category": "sports", "country": "NL", "currency": "EUR", "budget_max": "950"}, {"bike"}),
        ({"needed_before": "2030-01-01"}, {"laptop"}),
    ],
)
def test_filters_narrow_the_listing(
    client: TestClient,
    db: Session,
    rt: Runtime,
    params: dict[str, str],
    expected: set[str],
) -> None:
    owner = individual(client, db, rt)
    made = {
        "bike": make_intent(db, rt, owner, title="bike", online=""),
        "laptop": make_intent(
            db,
            rt,
            owner,
            title="laptop",
            category="electronics.laptops",
            budget="1500",
            city="",
            online="on",
            needed_by=(datetime.now(UTC) + timedelta(days=60)).date().isoformat(),
        ),
        "tent": make_intent(
            db,
            rt,
            owner,
            title="tent",
            category="sports.camping",
            currency="GBP",
            budget="200",
            country="GB",
            city="",
            online="",
        ),
    }
    headers = app_token(db, rt, market_vendor(db, rt))

    found = {item["title"] for item in listed(client, headers, **params)}

    assert found == expected
    assert {str(made[name].id) for name in expected} == ids(listed(client, headers, **params))


def test_published_since_returns_only_newer_intents(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    old = make_intent(db, rt, owner, title="Old")
    db.execute(
        update(Intent)
        .where(Intent.id == old.id)
        .values(published_at=datetime.now(UTC) - timedelta(days=3))
    )
    db.commit()
    new = make_intent(db, rt, owner, title="New")
    headers = app_token(db, rt, market_vendor(db, rt))
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    assert ids(listed(client, headers, published_since=since)) == {str(new.id)}


def test_pages_follow_a_stable_order_without_gaps_or_repeats(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    made = [make_intent(db, rt, owner, title=f"Intent {n}") for n in range(7)]
    moment = datetime.now(UTC)
    # Several with the same publication time: the id breaks the tie.
    db.execute(
        update(Intent).where(Intent.id.in_([i.id for i in made[:4]])).values(published_at=moment)
    )
    db.commit()
    headers = app_token(db, rt, market_vendor(db, rt))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/vendor/v1/intents", headers=headers, params=params).json()
        seen += [item["id"] for item in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert sorted(seen) == sorted(str(i.id) for i in made)
    assert len(seen) == len(set(seen))
    again = [item["id"] for item in listed(client, headers, limit=100)]
    assert again == seen


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"category": "weapons"}, "category"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "EUR", "budget_min": "-5"}, "budget_min"),
        ({"currency": "EUR", "budget_max": "99999999999"}, "budget_max"),
        ({"budget_min": "100"}, "budget_min"),
        ({"currency": "EUR", "budget_min": "900", "budget_max": "100"}, "budget_min"),
        ({"country": "XX"}, "country"),
        ({"needed_before": "soon"}, "needed_before"),
        ({"published_since": "2026-01-01T00:00:00"}, "published_since"),
        ({"online": "maybe"}, "online"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "101"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"city": "Ut\x00recht"}, "city"),  # PostgreSQL text cannot hold a NUL
        ({"city": "Ut\u202erecht"}, "city"),
    ],
)
def test_bad_filters_are_a_clear_400(
    client: TestClient, db: Session, rt: Runtime, params: dict[str, str], field: str
) -> None:
    headers = app_token(db, rt, market_vendor(db, rt))

    response = client.get("/vendor/v1/intents", headers=headers, params=params)

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field
    assert body["detail"]


def test_listing_needs_the_intents_read_scope_on_an_app_token(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    vendor = market_vendor(db, rt)

    writer_only = client.get(
        "/vendor/v1/intents", headers=app_token(db, rt, vendor, scope="offers:write")
    )
    assert writer_only.status_code == 403
    assert writer_only.json()["error"] == "insufficient_scope"
    assert 'scope="intents:read"' in writer_only.headers["www-authenticate"]


def test_an_individuals_token_cannot_list_intents(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    vendor = market_vendor(db, rt)
    grant = connect(db, rt, owner, vendor.app, ["email"])

    response = client.get("/vendor/v1/intents", headers=bearer(db, rt, vendor.app, grant))

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_an_app_that_does_not_accept_intent_sharing_is_refused(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    vendor = market_vendor(db, rt, agreements=("service-only",))

    response = client.get("/vendor/v1/intents", headers=app_token(db, rt, vendor))

    assert response.status_code == 403
    assert response.json()["error"] == "agreement_required"
    assert "/terms/intent-sharing" in response.json()["detail"]


def test_without_a_token_the_listing_is_401(client: TestClient) -> None:
    response = client.get("/vendor/v1/intents")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_category_taxonomy_is_published(client: TestClient) -> None:
    tree = client.get("/vendor/v1/categories").json()
    electronics = next(node for node in tree if node["id"] == "electronics")
    assert {"id": "electronics.laptops", "label": "Laptops"} in electronics["children"]
