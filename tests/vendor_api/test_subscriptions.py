"""Subscriptions: vendors save listing filters and are sent the intents that match them, through
the signed outbox, as the listing would show them, and never what they may not see."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.webhooks.models import WebhookMessage
from intents.blocks import BlockService
from intents.decisions import OfferDecisions
from intents.models import IntentNotice
from intents.rules import parse_intent
from intents.service import IntentService
from intents.subscriptions import MAX_PER_APP
from tests.consent.factories import individual
from tests.consent.oauth_helpers import Vendor
from tests.intents.factories import BIKE, app_token, make_intent, market_vendor, offer_body
from vault.runtime import Runtime

URL = "/vendor/v1/subscriptions"


def subscribe(client: TestClient, headers: dict[str, str], **filters: Any) -> dict[str, Any]:
    response = client.post(URL, headers=headers, json=filters)
    assert response.status_code == 201, response.text
    return response.json()


def sent(db: Session, vendor: Vendor, event_type: str | None = None) -> list[dict[str, Any]]:
    """The messages queued for ``vendor``'s app, oldest first."""
    db.expire_all()
    rows = db.scalars(
        select(WebhookMessage)
        .where(WebhookMessage.app_id == vendor.app.id)
        .order_by(WebhookMessage.created_at)
    )
    return [m.payload for m in rows if event_type is None or m.payload["type"] == event_type]


def test_a_subscription_is_created_listed_read_replaced_and_deleted(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)

    made = subscribe(
        client,
        headers,
        category="sports",
        country="nl",
        currency="EUR",
        budget_min="100",
        budget_max=1000,
        online=True,
    )

    assert made["category"] == "sports" and made["country"] == "NL"
    assert (made["budget_min"], made["budget_max"]) == ("100.00", "1000.00")
    listed = client.get(URL, headers=headers).json()
    assert [s["id"] for s in listed["data"]] == [made["id"]]
    assert listed["limit"] == MAX_PER_APP
    assert client.get(f"{URL}/{made['id']}", headers=headers).json() == made
    replaced = client.put(f"{URL}/{made['id']}", headers=headers, json={"category": "food"})
    assert replaced.status_code == 200
    assert replaced.json()["category"] == "food" and replaced.json()["country"] is None
    assert client.delete(f"{URL}/{made['id']}", headers=headers).status_code == 204
    assert client.get(f"{URL}/{made['id']}", headers=headers).status_code == 404
    assert client.get(URL, headers=headers).json()["data"] == []


def test_the_answer_says_where_the_events_go_and_null_when_nowhere(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    hooked = app_token(db, rt, market_vendor(db, rt, name="Hooked"))
    deaf = app_token(db, rt, market_vendor(db, rt, name="Deaf", webhook_url=None))

    made = subscribe(client, hooked, category="food")
    unheard = subscribe(client, deaf, category="food")

    assert made["webhook_url"] == "https://vendor.example/hooks"
    assert unheard["webhook_url"] is None
    assert client.get(URL, headers=deaf).json()["data"][0]["webhook_url"] is None
    assert client.get(f"{URL}/{made['id']}", headers=hooked).json() == made


def test_bad_filters_are_a_400_naming_each_field(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    headers = app_token(db, rt, market_vendor(db, rt))

    response = client.post(
        URL, headers=headers, json={"category": "nope", "country": "XX", "budget_min": "5"}
    )

    assert response.status_code == 400
    body = response.text
    assert "category" in body and "country" in body and "currency" in body
    assert client.get(URL, headers=headers).json()["data"] == []


def test_another_apps_subscription_is_not_found(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    mine = subscribe(client, app_token(db, rt, market_vendor(db, rt, name="One")))
    theirs = app_token(db, rt, market_vendor(db, rt, name="Two"))

    assert client.get(f"{URL}/{mine['id']}", headers=theirs).status_code == 404
    assert client.delete(f"{URL}/{mine['id']}", headers=theirs).status_code == 404


def test_an_app_keeps_at_most_the_limit_of_subscriptions(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    headers = app_token(db, rt, market_vendor(db, rt))
    for _ in range(MAX_PER_APP):
        subscribe(client, headers)

    response = client.post(URL, headers=headers, json={})

    assert response.status_code == 409
    assert len(client.get(URL, headers=headers).json()["data"]) == MAX_PER_APP


def test_subscriptions_need_intents_read_and_the_intent_sharing_agreement(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    no_scope = market_vendor(db, rt, name="Offers only")
    no_agreement = market_vendor(db, rt, name="No terms", agreements=("service-only",))

    assert (
        client.post(URL, headers=app_token(db, rt, no_scope, "offers:write"), json={}).status_code
        == 403
    )
    refused = client.post(URL, headers=app_token(db, rt, no_agreement), json={})
    assert refused.status_code == 403 and refused.json()["error"] == "agreement_required"


def test_publishing_sends_the_listing_view_to_each_matching_app_once(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt, given_name="Zephyrine")
    match = market_vendor(db, rt, name="Match")
    headers = app_token(db, rt, match)
    by_root = subscribe(client, headers, category="sports", currency="EUR", budget_max="1000")
    by_country = subscribe(client, headers, country="NL")
    other = market_vendor(db, rt, name="Elsewhere")
    subscribe(client, app_token(db, rt, other), country="DE")
    too_cheap = market_vendor(db, rt, name="Cheap")
    subscribe(client, app_token(db, rt, too_cheap), currency="EUR", budget_max="100")

    intent = make_intent(db, rt, owner)

    [message] = sent(db, match)
    assert message["type"] == "intent.published"
    data = message["data"]
    assert sorted(data["subscription_ids"]) == sorted([by_root["id"], by_country["id"]])
    listed = client.get(f"/vendor/v1/intents/{intent.id}", headers=headers).json()
    listed.pop("your_offer")
    assert data["intent"] == listed
    assert "Zephyrine" not in str(message) and str(owner.id) not in str(message)
    assert sent(db, other) == [] and sent(db, too_cheap) == []


def test_drafts_blocked_apps_and_apps_without_the_agreement_hear_nothing(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    blocked = market_vendor(db, rt, name="Blocked")
    subscribe(client, app_token(db, rt, blocked))
    lapsed_terms = market_vendor(db, rt, name="Changed its terms")
    subscribe(client, app_token(db, rt, lapsed_terms))
    lapsed_terms.app.accepted_agreements = ["service-only"]
    db.commit()
    BlockService(db, rt).block(owner, blocked.app.id)
    db.commit()

    draft = make_intent(db, rt, owner, publish=False)
    assert sent(db, blocked) == [] and sent(db, lapsed_terms) == []
    IntentService(db, rt).publish(owner, draft.id)
    db.commit()

    assert sent(db, blocked) == [] and sent(db, lapsed_terms) == []
    assert db.scalars(select(IntentNotice)).all() == []


def test_a_block_of_another_app_of_the_same_vendor_silences_its_subscription(
    client: TestClient, second_client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    vendor_account = individual(second_client, db, rt)
    first = market_vendor(db, rt, name="First")
    subscribe(client, app_token(db, rt, first))
    sibling = market_vendor(db, rt, name="Sibling")
    first.app.owner_id = sibling.app.owner_id = vendor_account.id
    db.commit()
    BlockService(db, rt).block(owner, sibling.app.id)
    db.commit()

    make_intent(db, rt, owner)

    assert sent(db, first) == []


def test_editing_an_open_intent_sends_changed_to_apps_told_and_published_to_new_matches(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    told = market_vendor(db, rt, name="Bikes")
    subscribe(client, app_token(db, rt, told), category="sports")
    big = market_vendor(db, rt, name="Big spenders")
    subscribe(client, app_token(db, rt, big), currency="EUR", budget_min="1500")
    intent = make_intent(db, rt, owner)

    IntentService(db, rt).update(owner, intent.id, parse_intent({**BIKE, "budget": "2000"}))
    db.commit()

    assert [m["type"] for m in sent(db, told)] == ["intent.published", "intent.changed"]
    assert sent(db, told)[-1]["data"]["intent"]["max_budget"] == "2000.00"
    assert [m["type"] for m in sent(db, big)] == ["intent.published"]


def test_withdrawing_tells_the_apps_that_were_told_once_each(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    offering = market_vendor(db, rt, name="Offering")
    offering_headers = app_token(db, rt, offering)
    subscribe(client, offering_headers)
    silent = market_vendor(db, rt, name="Silent")
    subscribe(client, app_token(db, rt, silent))
    stranger = market_vendor(db, rt, name="Stranger")
    intent = make_intent(db, rt, owner)
    subscribe(client, app_token(db, rt, stranger))  # after the intent was published
    made = client.post(
        f"/vendor/v1/intents/{intent.id}/offers", headers=offering_headers, json=offer_body()
    )
    assert made.status_code == 201

    IntentService(db, rt).withdraw(owner, intent.id)
    db.commit()

    [withdrawn] = sent(db, offering, "intent.withdrawn")
    assert withdrawn["data"]["offer_id"] == made.json()["id"]
    [quiet] = sent(db, silent, "intent.withdrawn")
    assert quiet["data"]["offer_id"] is None
    assert quiet["data"]["intent_id"] == str(intent.id)
    assert quiet["data"]["owner"] == sent(db, silent)[0]["data"]["intent"]["owner"]
    assert sent(db, stranger) == []


def test_closing_on_time_and_accepting_send_intent_closed_to_the_apps_told(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    subscribe(client, headers)
    expiring = make_intent(db, rt, owner, title="Expiring")
    accepted = make_intent(db, rt, owner, title="Accepted")
    offer = client.post(
        f"/vendor/v1/intents/{accepted.id}/offers", headers=headers, json=offer_body()
    ).json()

    OfferDecisions(db, rt).accept(owner, accepted.id, uuid.UUID(offer["id"]))
    IntentService(db, rt).expire_due(now=datetime.now(UTC) + timedelta(days=60))
    db.commit()

    closed = {m["data"]["intent_id"]: m["data"] for m in sent(db, vendor, "intent.closed")}
    assert closed[str(accepted.id)]["reason"] == "offer_accepted"
    assert closed[str(expiring.id)]["reason"] == "expired"
    assert len(sent(db, vendor, "intent.closed")) == 2
