"""Portal pages for intents: write, publish, edit, withdraw, compare offers, accept, block."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.webhooks.models import WebhookMessage
from intents.models import Intent, IntentBlock, Offer
from tests.consent.factories import individual
from tests.helpers import page_csrf, post_form, sign_up
from tests.intents.factories import BIKE, app_token, make_intent, market_vendor, offer_body
from tests.web.conftest import Count
from vault.runtime import Runtime


def new_intent(client: TestClient, action: str = "publish", **values: str):  # type: ignore[no-untyped-def]
    return post_form(
        client, "/intents/new", {**BIKE, **values, "action": action}, form_page="/intents/new"
    )


def offer_from(
    client: TestClient, headers: dict[str, str], intent_id: uuid.UUID, price: str
) -> str:
    response = client.post(
        f"/vendor/v1/intents/{intent_id}/offers", headers=headers, json=offer_body(price)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_publishing_an_intent_from_the_form_shows_it_and_lists_it_for_vendors(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)

    response = new_intent(client)

    assert response.status_code == 303
    page = client.get(response.headers["location"])
    assert "Road bike, size 56" in page.text
    assert "Your intent is published" in page.text
    assert "EUR 900.00" in page.text
    vendor = market_vendor(db, rt)
    listed = client.get("/vendor/v1/intents", headers=app_token(db, rt, vendor)).json()["data"]
    assert [item["title"] for item in listed] == ["Road bike, size 56"]


def test_title_and_description_are_stored_encrypted(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)
    new_intent(client, title="Quixotic unicycle 29 inch", description="Zebra-striped saddle")

    row = db.scalars(select(Intent)).one()
    assert b"Quixotic" not in row.title_ct and b"Zebra" not in row.description_ct


def test_a_draft_is_invisible_to_vendors_until_published(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)
    location = new_intent(client, action="draft").headers["location"]
    vendor = market_vendor(db, rt)
    headers = app_token(db, rt, vendor)
    assert client.get("/vendor/v1/intents", headers=headers).json()["data"] == []

    intent_id = location.rsplit("/", 1)[1]
    published = post_form(client, f"/intents/{intent_id}/publish", {}, form_page=location)

    assert published.status_code == 303
    assert len(client.get("/vendor/v1/intents", headers=headers).json()["data"]) == 1


def test_every_bad_field_is_shown_next_to_it_and_nothing_is_written(
    client: TestClient, count: Count
) -> None:
    sign_up(client)
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()

    response = new_intent(
        client,
        category="weapons.tanks",
        title="x" * 121,
        budget="-10",
        needed_by=yesterday,
        expires_on="2020-01-01",
    )

    assert response.status_code == 400
    text = response.text
    assert "There is no category" in text
    assert "at most 120 characters" in text
    assert "cannot be negative" in text
    assert "date you need it by is in the past" in text
    assert "closing date is in the past" in text
    assert 'aria-invalid="true"' in text
    assert count(Intent) == 0


def test_an_absurd_budget_and_an_unknown_currency_are_refused(
    client: TestClient, count: Count
) -> None:
    sign_up(client)
    assert "at most 10,000,000" in new_intent(client, budget="50000000").text
    assert "not an ISO 4217 currency" in new_intent(client, currency="BTC").text
    assert count(Intent) == 0


def test_the_form_needs_its_csrf_token(client: TestClient, count: Count) -> None:
    sign_up(client)
    response = client.post("/intents/new", data={**BIKE, "action": "publish"})
    assert response.status_code == 403
    assert count(Intent) == 0


def test_editing_an_open_intent_changes_what_vendors_see(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)
    location = new_intent(client).headers["location"]
    intent_id = location.rsplit("/", 1)[1]

    saved = post_form(
        client,
        f"/intents/{intent_id}/edit",
        {**BIKE, "title": "Gravel bike, size 56", "budget": "1100"},
        form_page=f"/intents/{intent_id}/edit",
    )

    assert saved.status_code == 303
    headers = app_token(db, rt, market_vendor(db, rt))
    item = client.get(f"/vendor/v1/intents/{intent_id}", headers=headers).json()
    assert (item["title"], item["max_budget"]) == ("Gravel bike, size 56", "1100.00")


def test_offers_are_listed_with_vendor_names_and_agreements_sortable_by_price(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    cheap, dear = (
        market_vendor(db, rt, name="Cheap Cycles"),
        market_vendor(db, rt, name="Dear Bikes"),
    )
    offer_from(client, app_token(db, rt, dear), intent.id, "950.00")
    offer_from(client, app_token(db, rt, cheap), intent.id, "700.00")

    page = client.get(f"/intents/{intent.id}?sort=price").text

    assert page.index("Cheap Cycles") < page.index("Dear Bikes")
    assert "EUR 700.00" in page and "EUR 950.00" in page
    assert "over your budget" in page  # 950 > 900
    assert "Sharing intent data" in page  # an accepted agreement, by title
    by_validity = client.get(f"/intents/{intent.id}?sort=valid_until").text
    assert "Dear Bikes" in by_validity


def test_accepting_with_email_creates_a_grant_for_exactly_that_field_and_tells_the_vendors(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt, phone="+31 20 794 6138")
    intent = make_intent(db, rt, owner)
    winner, loser = market_vendor(db, rt, name="Winner"), market_vendor(db, rt, name="Loser")
    won = offer_from(client, app_token(db, rt, winner), intent.id, "800.00")
    lost = offer_from(client, app_token(db, rt, loser), intent.id, "820.00")
    accept_page = f"/intents/{intent.id}/offers/{won}/accept"
    form = client.get(accept_page).text
    assert "Email address" in form and "+31 20 794 6138" in form
    assert not re.search(r'name="share" value="[^"]+" checked', form)

    response = post_form(
        client, accept_page, {"share": ["email"], "duration": "30d"}, form_page=accept_page
    )

    assert response.status_code == 303
    assert "shared: Email address" in client.get(response.headers["location"]).text
    db.expire_all()
    grant = db.scalars(select(Grant).where(Grant.app_id == winner.app.id)).one()
    assert grant.fields == ["email"]
    assert db.get_one(Offer, uuid.UUID(won)).status == "accepted"
    assert db.get_one(Offer, uuid.UUID(lost)).status == "lapsed"
    assert db.get_one(Intent, intent.id).status == "closed"
    events = {(m.app_id, m.event_type) for m in db.scalars(select(WebhookMessage))}
    assert (winner.app.id, "offer.accepted") in events
    assert (winner.app.id, "consent.granted") in events
    assert (loser.app.id, "offer.lapsed") in events


def test_declining_an_offer_tells_only_that_vendor(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt)
    offer_id = offer_from(client, app_token(db, rt, vendor), intent.id, "800.00")

    response = post_form(
        client,
        f"/intents/{intent.id}/offers/{offer_id}/decline",
        {},
        form_page=f"/intents/{intent.id}",
    )

    assert response.status_code == 303
    db.expire_all()
    assert db.get_one(Offer, uuid.UUID(offer_id)).status == "declined"
    assert [m.event_type for m in db.scalars(select(WebhookMessage))] == ["offer.declined"]
    assert db.get_one(Intent, intent.id).status == "open"


def test_withdrawing_an_intent_tells_the_vendors_with_offers(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt)
    offer_from(client, app_token(db, rt, vendor), intent.id, "800.00")

    post_form(client, f"/intents/{intent.id}/withdraw", {}, form_page=f"/intents/{intent.id}")

    db.expire_all()
    assert db.get_one(Intent, intent.id).status == "withdrawn"
    assert [m.event_type for m in db.scalars(select(WebhookMessage))] == ["intent.withdrawn"]
    assert "Withdrawn" in client.get(f"/intents/{intent.id}").text


def test_only_an_open_intent_says_offers_arrive_and_only_once_its_script_runs(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)

    served = client.get(f"/intents/{intent.id}").text
    post_form(client, f"/intents/{intent.id}/withdraw", {}, form_page=f"/intents/{intent.id}")
    withdrawn = client.get(f"/intents/{intent.id}").text

    # Hidden as served (a page without JavaScript does not update itself); the script shows it.
    assert re.search(r'<p class="hint" id="live-note" hidden>New offers appear here', served)
    assert "live-note" not in withdrawn


def test_blocking_a_vendor_from_an_offer_hides_every_intent_and_can_be_undone(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    vendor = market_vendor(db, rt, name="Pushy Pedals")
    headers = app_token(db, rt, vendor)
    offer_id = offer_from(client, headers, intent.id, "800.00")

    blocked = post_form(
        client,
        "/intents/blocked",
        {"app_id": str(vendor.app.id)},
        form_page=f"/intents/{intent.id}",
    )

    assert blocked.status_code == 303
    page = client.get("/intents/blocked").text
    assert "Pushy Pedals" in page
    assert client.get("/vendor/v1/intents", headers=headers).json()["data"] == []
    db.expire_all()
    assert db.get_one(Offer, uuid.UUID(offer_id)).status == "lapsed"

    post_form(client, f"/intents/blocked/{vendor.app.id}/unblock", {}, form_page="/intents/blocked")
    assert len(client.get("/vendor/v1/intents", headers=headers).json()["data"]) == 1
    assert db.scalars(select(IntentBlock)).all() == []


def test_another_individuals_intent_is_not_found(
    client: TestClient, second_client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    sign_up(second_client)

    assert second_client.get(f"/intents/{intent.id}").status_code == 404
    token = page_csrf(second_client, "/intents")
    response = second_client.post(f"/intents/{intent.id}/withdraw", data={"csrf_token": token})
    assert response.status_code == 404
    db.expire_all()
    assert db.get_one(Intent, intent.id).status == "open"


def test_the_intents_pages_need_a_signed_in_individual(client: TestClient) -> None:
    response = client.get("/intents")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")


def test_the_list_shows_each_intent_with_its_waiting_offers(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner, title="Standing desk", category="home.furniture")
    offer_from(client, app_token(db, rt, market_vendor(db, rt)), intent.id, "400.00")

    page = client.get("/intents").text

    assert "Standing desk" in page and "Home &gt; Furniture" in page
    assert re.search(r"<td>1</td>", page)


def test_an_empty_form_says_what_to_fill_in(client: TestClient, count: Count) -> None:
    sign_up(client)

    response = new_intent(client, category="", title="", budget="", country="", city="", online="")

    assert response.status_code == 400
    assert "4 fields need your attention" in response.text
    assert "Choose a category." in response.text
    assert "Say in a short title what you want" in response.text
    assert "Enter the maximum budget, e.g. 899.00." in response.text
    assert "or tick online / delivered" in response.text
    assert count(Intent) == 0


def test_accepting_an_offer_the_vendor_changed_meanwhile_shows_it_again(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    offer_id = offer_from(client, headers, intent.id, "800.00")
    accept_page = f"/intents/{intent.id}/offers/{offer_id}/accept"
    form = client.get(accept_page).text
    revision = re.search(r'name="revision" value="(\d+)"', form)
    assert revision is not None
    client.patch(f"/vendor/v1/offers/{offer_id}", headers=headers, json={"price": "1500"})

    response = client.post(
        accept_page,
        data={"csrf_token": page_csrf(client, accept_page), "revision": revision.group(1)},
    )

    assert response.status_code == 409
    assert "changed this offer" in response.text
    assert "EUR 1,500.00" in response.text
    db.expire_all()
    assert db.get_one(Offer, uuid.UUID(offer_id)).status == "live"


def test_accepting_with_a_field_that_does_not_exist_changes_nothing(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    offer_id = offer_from(client, app_token(db, rt, market_vendor(db, rt)), intent.id, "800.00")
    accept_page = f"/intents/{intent.id}/offers/{offer_id}/accept"

    response = post_form(
        client, accept_page, {"share": ["email", "shoe_colour"]}, form_page=accept_page
    )

    assert response.status_code == 400
    assert "Unknown profile fields: shoe_colour" in response.text
    db.expire_all()
    assert db.get_one(Offer, uuid.UUID(offer_id)).status == "live"
    assert db.get_one(Intent, intent.id).status == "open"
    assert db.scalars(select(Grant)).all() == []
    assert db.scalars(select(WebhookMessage)).all() == []


def test_blocking_or_declining_something_that_does_not_exist_is_404(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    token = page_csrf(client, "/intents")
    for path, data in (
        ("/intents/blocked", {"app_id": str(uuid.uuid4())}),
        ("/intents/blocked", {"app_id": "not-an-id"}),
        (f"/intents/{intent.id}/offers/{uuid.uuid4()}/decline", {}),
        (f"/intents/{intent.id}/offers/not-an-id/accept", {}),
    ):
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code in (303, 404), path
        if response.status_code == 303:  # a decision on a missing offer: told on the page
            assert "no such offer" in client.get(response.headers["location"]).text
    assert db.scalars(select(IntentBlock)).all() == []


def test_a_person_keeps_at_most_100_drafts_and_open_intents(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    from intents.service import MAX_LIVE_INTENTS

    owner = individual(client, db, rt)
    for n in range(MAX_LIVE_INTENTS):
        make_intent(db, rt, owner, publish=n % 2 == 0, title=f"Intent {n}")

    response = new_intent(client)

    assert response.status_code == 400
    assert f"at most {MAX_LIVE_INTENTS} intents" in response.text
    assert 'name="title"' in response.text  # on the form, with what was typed kept
    assert count(Intent) == MAX_LIVE_INTENTS
