"""Offers arrive live in a browser: a person publishes "lunch for two near the station, closes in
2 hours", keeps the intent's page open, a vendor offers through the API, and the offer appears
without a reload; the heading and the navigation count follow, and accepting works as before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import own_server
from tests.browser.journeys import sign_up
from tests.browser.test_intents import offer, vendor
from vault.runtime import Runtime

pytestmark = pytest.mark.browser

ARRIVES_MS = 2_000
"""How soon an offer must appear on the open page."""


@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime]]:
    with own_server(tmp_path_factory, "live-offers-server") as served:
        yield served


@pytest.fixture(scope="module")
def live_server(vault_server: tuple[str, Runtime]) -> str:
    return vault_server[0]


def test_an_offer_made_through_the_api_appears_on_the_open_page_without_a_reload(
    page: Page, vault_server: tuple[str, Runtime]
) -> None:
    base_url, rt = vault_server
    sign_up(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Intents").click()
    page.get_by_role("link", name="New intent").click()
    page.get_by_label("Category").select_option(label="Food and drink > Restaurants")
    page.get_by_label("What do you want?").fill("Lunch for two near the station")
    page.get_by_label("Amount").fill("60")
    page.get_by_label("Country (optional if online is fine)").select_option(label="Netherlands")
    page.get_by_label("City (optional)").fill("Utrecht")
    page.get_by_label("In 2 hours").check()
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Your intent is published")
    expect(page.get_by_text("No offers yet.")).to_be_visible()
    expect(page.get_by_text("New offers appear here as vendors make them")).to_be_visible()
    intent_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    loaded = page.evaluate("performance.timeOrigin")

    shop = vendor(base_url, rt, "Station Bistro")
    offer(shop, intent_id, "48.00", "Table for two at 12:30, five minutes from the station.")

    card = page.get_by_role("article").filter(has_text="Station Bistro")
    expect(card).to_be_visible(timeout=ARRIVES_MS)
    expect(card).to_contain_text("EUR 48.00")
    expect(page.get_by_text("No offers yet.")).to_be_hidden()
    expect(page.get_by_role("heading", name="Offers (1)")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main").get_by_role("link", name="Intents")
    expect(nav).to_contain_text("1")
    assert page.evaluate("performance.timeOrigin") == loaded  # the same page: no reload

    # Accepting the live card's offer works as it does on a served page.
    page.get_by_role("link", name="Accept the offer from Station Bistro").click()
    page.get_by_role("button", name="Accept this offer").click()
    expect(page.get_by_role("status")).to_contain_text("You accepted Station Bistro's offer")
