"""The rules of intents and offers: parsing, closing, expiry, erasure, and parallel decisions."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from consent.webhooks.models import WebhookMessage
from consent.webhooks.signing import verify_signature, webhook_secret_for
from intents import money
from intents.blocks import BlockService
from intents.decisions import OfferDecisions
from intents.errors import IntentClosed, InvalidIntent
from intents.models import Intent, IntentBlock, Offer
from intents.rules import parse_intent
from intents.service import IntentService
from tests.consent.factories import individual
from tests.helpers import PASSWORD, unique_email
from tests.intents.factories import BIKE, app_token, make_intent, market_vendor, offer_body
from tests.vault.conftest import Deployment
from tests.webhook_receiver import Receiver
from vault.accounts.models import Role
from vault.runtime import Runtime
from vault.signup import sign_up

pytestmark = pytest.mark.migrated  # the database is not the subject: start at the head


def events(db: Session) -> list[tuple[str, str | None]]:
    db.expire_all()
    return sorted(
        (m.event_type, m.payload["data"].get("reason")) for m in db.scalars(select(WebhookMessage))
    )


@pytest.mark.parametrize(
    ("raw", "currency", "minor"),
    [
        ("899", "EUR", 89900),
        ("899.5", "EUR", 89950),
        ("899,50", "EUR", 89950),
        (899, "EUR", 89900),
        ("1500", "JPY", 1500),
        ("12.345", "BHD", 12345),
    ],
)
def test_amounts_are_stored_in_the_currencys_minor_unit(
    raw: object, currency: str, minor: int
) -> None:
    assert money.parse_amount(raw, currency, field="budget", label="budget") == minor


@pytest.mark.parametrize(
    ("raw", "currency", "message"),
    [
        ("1500.5", "JPY", "at most 0 decimal places"),
        ("1.2345", "BHD", "at most 3 decimal places"),
        ("1,000.00", "EUR", "plain number"),
        ("€900", "EUR", "plain number"),
        (True, "EUR", "as a number"),
        ("1e6", "EUR", "plain number"),
    ],
)
def test_unclear_amounts_are_refused_with_a_reason(
    raw: object, currency: str, message: str
) -> None:
    with pytest.raises(Exception, match=message):
        money.parse_amount(raw, currency, field="budget", label="budget")


def test_money_is_shown_with_the_currencys_decimals() -> None:
    assert money.format_amount(89950, "EUR") == "899.50"
    assert money.format_amount(1500, "JPY") == "1500"
    assert money.display(123456789, "EUR") == "EUR 1,234,567.89"


def test_an_intent_defaults_to_closing_in_30_days_and_needs_a_place_or_online() -> None:
    today = date(2026, 12, 1)
    clean = parse_intent({**BIKE, "expires_on": ""}, today=today)
    assert clean.expires_at == datetime(2027, 1, 1, tzinfo=UTC)  # open through 31 December

    with pytest.raises(InvalidIntent) as caught:
        parse_intent({**BIKE, "country": "", "city": "", "online": ""}, today=today)
    assert "online" in caught.value.errors["country"]
    with pytest.raises(InvalidIntent) as caught:
        parse_intent({**BIKE, "country": "", "online": "on"}, today=today)
    assert caught.value.errors == {"country": "Choose the country of the city."}


def test_an_intent_stays_open_at_most_a_year_and_quantities_are_bounded() -> None:
    today = date(2026, 12, 1)
    with pytest.raises(InvalidIntent) as caught:
        parse_intent({**BIKE, "expires_on": "2028-01-01", "quantity": "0"}, today=today)
    assert set(caught.value.errors) == {"expires_on", "quantity"}


def test_an_open_intent_past_its_closing_time_is_expired_at_once_and_then_swept_once(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt)
    client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers=app_token(db, rt, vendor),
        json=offer_body(),
    )
    db.execute(
        update(Intent)
        .where(Intent.id == intent.id)
        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
    )
    db.commit()
    assert IntentService(db, rt).view(owner.id, intent.id).status == "expired"

    assert IntentService(db, rt).expire_due() == 1
    db.commit()
    assert IntentService(db, rt).expire_due() == 0

    db.expire_all()
    assert db.get_one(Intent, intent.id).status == "expired"
    assert db.scalars(select(Offer.lapse_reason)).one() == "intent_expired"
    assert events(db) == [("offer.lapsed", "intent_expired")]


def test_changing_an_open_intents_terms_lapses_its_offers_and_a_new_offer_follows_them(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = client.post(
        f"/vendor/v1/intents/{intent.id}/offers", headers=headers, json=offer_body()
    ).json()["id"]
    service = IntentService(db, rt)

    # Only the closing date: the offer stands.
    assert service.update(owner, intent.id, parse_intent({**BIKE, "expires_on": ""})) == 0
    # The terms (here the currency): it lapses, and the vendor is told why.
    assert service.update(owner, intent.id, parse_intent({**BIKE, "currency": "JPY"})) == 1
    db.commit()
    assert events(db) == [("offer.lapsed", "intent_changed")]

    again = client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers=headers,
        json=offer_body("140000", currency="JPY"),
    )
    assert again.status_code == 200 and again.json()["id"] == offer_id
    assert (again.json()["price"], again.json()["currency"]) == ("140000", "JPY")
    assert again.json()["status"] == "live"


def test_a_closed_intent_can_no_longer_be_edited_or_withdrawn(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    service = IntentService(db, rt)
    service.withdraw(owner, intent.id)
    with pytest.raises(IntentClosed):
        service.withdraw(owner, intent.id)
    with pytest.raises(IntentClosed):
        service.update(owner, intent.id, parse_intent(BIKE))


def test_erasing_an_individuals_intents_tells_vendors_and_leaves_others_alone(
    client: TestClient, second_client: TestClient, db: Session, rt: Runtime
) -> None:
    owner, other = individual(client, db, rt), individual(second_client, db, rt)
    gone = make_intent(db, rt, owner)
    make_intent(db, rt, owner, publish=False)
    kept = make_intent(db, rt, other)
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    for intent in (gone, kept):
        client.post(f"/vendor/v1/intents/{intent.id}/offers", headers=headers, json=offer_body())
    BlockService(db, rt).block(owner, market_vendor(db, rt, name="Blocked").app.id)
    db.commit()
    before = events(db)

    counts = IntentService(db, rt).erase_individual(owner.id)
    db.commit()

    assert counts == {"intents": 2, "offers": 1, "blocks": 1}
    assert [e for e in events(db) if e not in before] == [("intent.withdrawn", None)]
    assert db.scalar(select(func.count()).select_from(Intent)) == 1
    assert db.scalar(select(func.count()).select_from(IntentBlock)) == 0
    assert db.scalars(select(Offer.intent_id)).all() == [kept.id]


# -- parallel decisions on committed data -----------------------------------------------------


def test_of_two_parallel_acceptances_exactly_one_wins(committed_rt: Runtime) -> None:
    rt = committed_rt
    with rt.sessions() as db, db.begin():
        owner = sign_up(db, rt, unique_email(), PASSWORD)
        intent = IntentService(db, rt).create(owner, parse_intent(BIKE), publish=True)
    with rt.sessions() as db:
        vendors = [market_vendor(db, rt, name=f"Vendor {n}") for n in range(2)]
    offer_ids = []
    with rt.sessions() as db, db.begin():
        from intents.market import Market, Seller

        for vendor in vendors:
            app = db.merge(vendor.app)
            offer, _, _ = Market(db, rt, Seller.of(db, app)).make_offer(intent.id, offer_body())
            offer_ids.append(offer.id)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(offer_id: uuid.UUID) -> None:
        with rt.sessions() as db:
            barrier.wait(timeout=10)
            try:
                with db.begin():
                    OfferDecisions(db, rt).accept(owner, intent.id, offer_id, fields=["email"])
                outcomes.append("accepted")
            except IntentClosed:
                outcomes.append("closed")
            except Exception as exc:  # a lock timeout would show here
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=accept, args=(oid,)) for oid in offer_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["accepted", "closed"]
    with rt.sessions() as db:
        statuses = sorted(db.scalars(select(Offer.status)))
        assert statuses == ["accepted", "lapsed"]
        assert db.get_one(Intent, intent.id).status == "closed"
        assert (
            db.scalar(
                select(func.count())
                .select_from(WebhookMessage)
                .where(WebhookMessage.event_type == "offer.accepted")
            )
            == 1
        )


def test_vrm_worker_closes_intents_past_their_closing_date(
    deployment: Deployment, receiver: Receiver
) -> None:
    deployment.upgrade()
    rt = deployment.runtime()
    with rt.sessions() as db, db.begin():
        owner = sign_up(db, rt, unique_email(), PASSWORD)
        intent = IntentService(db, rt).create(owner, parse_intent(BIKE), publish=True)
    with rt.sessions() as db:
        vendor = market_vendor(db, rt, webhook_url=receiver.url)
    with rt.sessions() as db, db.begin():
        from intents.market import Market, Seller

        Market(db, rt, Seller.of(db, db.merge(vendor.app))).make_offer(intent.id, offer_body())
        db.execute(
            update(Intent)
            .where(Intent.id == intent.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    output = deployment.ok("worker", "--once")

    assert "1 intents reached their closing date; their offers lapsed" in output
    assert "offer.lapsed HTTP 200" in output
    [got] = receiver.requests
    assert (
        verify_signature(webhook_secret_for(rt, vendor.app), got.headers, got.body)["data"][
            "reason"
        ]
        == "intent_expired"
    )
    with rt.sessions() as db:
        assert db.get_one(Intent, intent.id).status == "expired"


# -- decisions that must match what the individual saw ------------------------------------------


def offer_on(client: TestClient, headers: dict[str, str], intent_id: uuid.UUID, **body: Any) -> str:
    response = client.post(
        f"/vendor/v1/intents/{intent_id}/offers", headers=headers, json=offer_body(**body)
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def test_an_offer_changed_after_the_page_was_opened_is_not_accepted(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    from intents.errors import OfferChanged

    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = uuid.UUID(offer_on(client, headers, intent.id))
    seen = db.get_one(Offer, offer_id).revision
    client.patch(f"/vendor/v1/offers/{offer_id}", headers=headers, json={"price": "1500"})

    with pytest.raises(OfferChanged):
        OfferDecisions(db, rt).accept(owner, intent.id, offer_id, fields=["email"], revision=seen)
    db.rollback()

    db.expire_all()
    assert db.get_one(Offer, offer_id).status == "live"
    assert db.get_one(Intent, intent.id).status == "open"
    assert events(db) == []


def test_a_withdrawn_offer_cannot_be_accepted_or_declined(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = uuid.UUID(offer_on(client, headers, intent.id))
    assert client.delete(f"/vendor/v1/offers/{offer_id}", headers=headers).status_code == 204

    from vault.errors import NotFound

    for decide in (OfferDecisions(db, rt).accept, OfferDecisions(db, rt).decline):
        with pytest.raises(NotFound, match="withdrew"):
            decide(owner, intent.id, offer_id)
    db.expire_all()
    assert db.get_one(Offer, offer_id).status == "withdrawn"


def test_sharing_more_with_a_connected_vendor_keeps_the_connections_terms(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    from tests.consent.factories import connect

    owner = individual(client, db, rt, phone="+31 20 794 6138")
    vendor = market_vendor(db, rt)
    grant = connect(db, rt, owner, vendor.app, ["phone"], duration="revoked")
    intent = make_intent(db, rt, owner)
    offer_id = uuid.UUID(offer_on(client, app_token(db, rt, vendor), intent.id))

    OfferDecisions(db, rt).accept(owner, intent.id, offer_id, fields=["email"], duration="1d")
    db.commit()

    db.expire_all()
    after = db.get_one(type(grant), grant.id)
    assert after.fields == ["email", "phone"]
    assert after.expires_at is None  # still "until I revoke it", not one day
    assert after.agreement_id == "service-only"


def test_a_vendor_account_blocked_through_one_app_is_blocked_in_all_its_apps(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    from consent.vendors.models import VendorApp

    owner = individual(client, db, rt)
    make_intent(db, rt, owner)
    vendor_account = sign_up(db, rt, unique_email("vendor"), PASSWORD, role=Role.VENDOR)
    first, second = market_vendor(db, rt, name="First"), market_vendor(db, rt, name="Second")
    for app in (first.app, second.app):
        db.execute(
            update(VendorApp).where(VendorApp.id == app.id).values(owner_id=vendor_account.id)
        )
    db.commit()
    db.expire_all()
    BlockService(db, rt).block(owner, first.app.id)
    db.commit()

    for vendor in (first, second):
        listed = client.get("/vendor/v1/intents", headers=app_token(db, rt, vendor)).json()
        assert listed["data"] == [], vendor.app.name


def test_after_unblocking_the_vendor_may_offer_again(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    offer_id = offer_on(client, headers, intent.id)
    service = BlockService(db, rt)
    service.block(owner, vendor.app.id)
    db.commit()
    assert events(db) == [("intent.withdrawn", None)]  # looks like a withdrawal, not a block
    service.unblock(owner, vendor.app.id)
    db.commit()

    assert offer_on(client, headers, intent.id, price="800") == offer_id
    db.expire_all()
    assert db.get_one(Offer, uuid.UUID(offer_id)).status == "live"


def test_out_of_range_dates_are_a_400_not_a_crash(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))
    for moment in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        offered = client.post(
            f"/vendor/v1/intents/{intent.id}/offers",
            headers=headers,
            json=offer_body(valid_until=moment),
        )
        assert offered.status_code == 400 and offered.json()["field"] == "valid_until"
        listed = client.get(
            "/vendor/v1/intents", headers=headers, params={"published_since": moment}
        )
        assert listed.status_code == 400 and listed.json()["field"] == "published_since"


def test_a_json_true_is_not_a_price(client: TestClient, db: Session, rt: Runtime) -> None:
    intent = make_intent(db, rt, individual(client, db, rt))
    response = client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers=app_token(db, rt, market_vendor(db, rt)),
        json=offer_body(price=True),
    )
    assert response.status_code == 422


def test_small_unit_currencies_allow_everyday_amounts() -> None:
    assert money.parse_amount("15000000", "IDR", field="budget", label="budget") == 1_500_000_000
    with pytest.raises(Exception, match="at most 10,000,000 EUR"):
        money.parse_amount("15000000", "EUR", field="budget", label="budget")
