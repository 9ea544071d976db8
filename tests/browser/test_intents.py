"""Intents in a browser: a person publishes an intent, two vendors answer through the vendor API,
the person compares the offers, accepts one sharing only their email address, and the accepting
vendor then reads exactly that field."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from authlib.integrations.httpx_client import OAuth2Client
from playwright.sync_api import Browser, Page, expect

from consent.vendors.service import AppInput, register_app
from intents.tokens import GRANT_TYPE
from tests.browser.conftest import own_server
from tests.browser.journeys import sign_up
from vault.runtime import Runtime

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime]]:
    """A server of this module's own, and a runtime on its database to register vendors."""
    with own_server(tmp_path_factory, "intents-server") as served:
        yield served


@pytest.fixture(scope="module")
def live_server(vault_server: tuple[str, Runtime]) -> str:
    return vault_server[0]


def vendor(base_url: str, rt: Runtime, name: str) -> OAuth2Client:
    """A vendor app that may see intents and offer, as Authlib's client with its own token."""
    with rt.sessions() as db, db.begin():
        app, secret = register_app(
            db,
            rt,
            AppInput(
                name=name,
                homepage_url="https://cycles.example",
                privacy_policy_url="https://cycles.example/privacy",
                redirect_uris=["https://cycles.example/callback"],
                purpose="Sell and deliver your bicycle.",
                accepted_agreements=["intent-sharing"],
                vendor_scopes=["intents:read", "offers:write"],
            ),
            owner_id=None,
            registered_via="cli",
            with_secret=True,
        )
        client_id = app.client_id
    client = OAuth2Client(client_id=client_id, client_secret=secret, base_url=base_url)
    client.fetch_token(
        f"{base_url}/oauth/token",
        grant_type="client_credentials",
        scope="intents:read offers:write",
    )
    return client


def offer(client: OAuth2Client, intent_id: str, price: str, message: str) -> str:
    valid_until = (datetime.now(UTC) + timedelta(days=5)).isoformat().replace("+00:00", "Z")
    response = client.post(
        f"/vendor/v1/intents/{intent_id}/offers",
        json={"price": price, "currency": "EUR", "message": message, "valid_until": valid_until},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_publish_compare_two_offers_accept_one_sharing_email_only(
    page: Page, vault_server: tuple[str, Runtime]
) -> None:
    base_url, rt = vault_server
    email = sign_up(page)

    # The person publishes an intent.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Intents").click()
    page.get_by_role("link", name="New intent").click()
    page.get_by_label("Category").select_option(label="Sports and outdoors > Bicycles")
    page.get_by_label("What do you want?").fill("Road bike, size 56")
    page.get_by_label("Details (optional)").fill("Disc brakes, delivered or in Utrecht.")
    page.get_by_label("Amount").fill("900")
    page.get_by_label("Country (optional if online is fine)").select_option(label="Netherlands")
    page.get_by_label("City (optional)").fill("Utrecht")
    page.get_by_label("Online or delivered is fine").check()
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Your intent is published")
    expect(page.get_by_role("heading", name="Road bike, size 56")).to_be_visible()

    # Two vendors find it through the API and answer.
    fast, cheap = vendor(base_url, rt, "Fast Cycles"), vendor(base_url, rt, "Cheap Cycles")
    listed = fast.get(
        "/vendor/v1/intents",
        params={"category": "sports", "country": "NL", "currency": "EUR", "budget_max": "1000"},
    ).json()["data"]
    [intent] = [i for i in listed if i["title"] == "Road bike, size 56"]
    assert email not in str(listed)
    fast_offer = offer(fast, intent["id"], "880.00", "Delivered tomorrow.")
    cheap_offer = offer(cheap, intent["id"], "760.00", "Pick up in Utrecht.")

    # The person compares them: cheapest first.
    page.reload()
    offers = page.get_by_role("article")
    expect(offers).to_have_count(2)
    expect(offers.nth(0)).to_contain_text("Cheap Cycles")
    expect(offers.nth(0)).to_contain_text("EUR 760.00")
    expect(offers.nth(1)).to_contain_text("Fast Cycles")
    expect(offers.nth(1)).to_contain_text("Sharing intent data")
    page.get_by_role("link", name="Valid longest").click()
    # The sorted page itself (the page before it has two offers too): clicking on before it
    # has loaded would click the page it replaces, and lose that click.
    expect(page).to_have_url(re.compile(r"sort=valid_until"))
    expect(page.get_by_role("article")).to_have_count(2)

    # Accepts Fast Cycles' offer, sharing the email address only.
    page.get_by_role("link", name="Accept the offer from Fast Cycles").click()
    expect(page.get_by_role("heading", name="Accept Fast Cycles's offer")).to_be_visible()
    share_email = page.get_by_label(re.compile(r"^Email address:"))
    expect(share_email).not_to_be_checked()
    share_email.check()
    page.get_by_role("button", name="Accept this offer").click()
    expect(page.get_by_role("status")).to_contain_text("shared: Email address")
    expect(page.get_by_text("Closed (offer accepted)")).to_be_visible()

    # The accepting vendor exchanges the accepted offer for tokens and reads exactly the email.
    tokens = fast.fetch_token(f"{base_url}/oauth/token", grant_type=GRANT_TYPE, offer_id=fast_offer)
    reader = OAuth2Client(client_id=fast.client_id, token=tokens, base_url=base_url)
    profile = reader.get("/vendor/v1/profile").json()
    assert profile["fields"] == {"email": email}
    assert profile["granted_fields"] == ["email"]

    # The other vendor's offer lapsed.
    assert cheap.get(f"/vendor/v1/offers/{cheap_offer}").json()["status"] == "lapsed"

    # The read shows on the person's Connections page.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    expect(page.get_by_role("heading", name="Fast Cycles")).to_be_visible()


def test_a_closing_time_chosen_in_tokyo_is_shown_in_tokyo_time_beside_utc(
    browser: Browser, live_server: str
) -> None:
    context = browser.new_context(base_url=live_server, locale="en-GB", timezone_id="Asia/Tokyo")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_up(page)
    page.goto("/intents/new")
    expect(page.get_by_label("Your time zone")).to_have_value("Asia/Tokyo")
    page.get_by_label("Category").select_option(label="Food and drink > Restaurants")
    page.get_by_label("What do you want?").fill("Dinner for two")
    page.get_by_label("Amount").fill("80")
    page.get_by_label("Online or delivered is fine").check()
    page.get_by_label("Closes on").fill((datetime.now(UTC) + timedelta(days=3)).date().isoformat())
    page.get_by_label("At (optional)").fill("18:00")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Your intent is published")

    closes = (
        page.get_by_role("term").filter(has_text="Closes").locator("xpath=following-sibling::dd[1]")
    )
    # 18:00 in Tokyo (UTC+9, no daylight saving) is 09:00 UTC; both are shown.
    expect(closes).to_contain_text("09:00 UTC")
    expect(closes).to_contain_text("18:00 Asia/Tokyo")
    assert errors == []
    context.close()
