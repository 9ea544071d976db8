"""Browser journeys for the profile: fill in fields of each kind, clear them, fix bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.journeys import edit, save, shown_value, sign_up

pytestmark = pytest.mark.browser


def test_filled_in_fields_show_on_the_profile(page: Page, tmp_path: Path) -> None:
    sign_up(page)

    edit(page, "Given name")
    page.get_by_label("Given name").fill("  Ada  ")
    save(page)
    expect(page.get_by_role("status")).to_have_text("Given name saved.")

    edit(page, "Phone number")
    page.get_by_label("Phone number").fill("+31 20 123 4567")
    save(page)

    edit(page, "Postal address")
    page.get_by_label("Street and number").fill("Keizersgracht 1")
    page.get_by_label("Postal code").fill("1015 CJ")
    page.get_by_label("City or town").fill("Amsterdam")
    page.get_by_label("Country").select_option(label="Netherlands")
    save(page)

    edit(page, "Dietary preferences")
    page.get_by_role("checkbox", name="Vegetarian").check()
    page.get_by_role("checkbox", name="Nut allergy").check()
    save(page)

    page.get_by_role("link", name="Add a custom field").click()
    page.get_by_label("Label").fill("Loyalty number")
    page.get_by_label("Value").fill("KLM-0042")
    save(page)
    expect(page.get_by_role("status")).to_have_text("Loyalty number added.")

    expect(shown_value(page, "Given name")).to_have_text("Ada")
    expect(shown_value(page, "Phone number")).to_have_text("+31 20 123 4567")
    expect(shown_value(page, "Postal address")).to_have_text(
        re.compile(r"Keizersgracht 1\s+1015 CJ Amsterdam\s+Netherlands")
    )
    expect(shown_value(page, "Dietary preferences")).to_have_text("Vegetarian, Nut allergy")
    expect(shown_value(page, "Loyalty number")).to_have_text("KLM-0042")
    expect(shown_value(page, "Family name")).to_have_text("Not filled in")
    page.screenshot(path=tmp_path / "profile.png", full_page=True)


def test_edit_form_shows_the_saved_values(page: Page) -> None:
    sign_up(page)
    edit(page, "Postal address")
    page.get_by_label("Street and number").fill("Rue de Rivoli 99")
    page.get_by_label("Postal code").fill("75001")
    page.get_by_label("City or town").fill("Paris")
    page.get_by_label("Country").select_option(label="France")
    save(page)
    edit(page, "Dietary preferences")
    page.get_by_role("checkbox", name="Vegan").check()
    save(page)

    edit(page, "Postal address")
    expect(page.get_by_label("Street and number")).to_have_value("Rue de Rivoli 99")
    expect(page.get_by_label("Country")).to_have_value("FR")
    page.get_by_role("link", name="Cancel").click()
    edit(page, "Dietary preferences")
    expect(page.get_by_role("checkbox", name="Vegan")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Vegetarian")).not_to_be_checked()


def test_clearing_a_field_shows_not_filled_in(page: Page) -> None:
    sign_up(page)
    edit(page, "Given name")
    page.get_by_label("Given name").fill("Ada")
    save(page)
    expect(shown_value(page, "Given name")).to_have_text("Ada")

    page.get_by_role("button", name="Clear given name").click()

    expect(page.get_by_role("status")).to_have_text("Given name removed from your profile.")
    expect(shown_value(page, "Given name")).to_have_text("Not filled in")
    expect(page.get_by_role("button", name="Clear given name")).to_have_count(0)


def test_clearing_a_custom_field_removes_it(page: Page) -> None:
    sign_up(page)
    page.get_by_role("link", name="Add a custom field").click()
    page.get_by_label("Label").fill("Frequent flyer")
    page.get_by_label("Value").fill("FF-123")
    save(page)

    page.get_by_role("button", name="Clear Frequent flyer").click()

    expect(page.get_by_role("status")).to_have_text("Frequent flyer removed from your profile.")
    expect(page.get_by_text("No custom fields yet.")).to_be_visible()
    expect(page.get_by_text("FF-123")).to_have_count(0)


def test_invalid_phone_shows_the_message_at_the_phone_field(page: Page) -> None:
    sign_up(page)
    edit(page, "Phone number")

    page.get_by_label("Phone number").fill("12345")
    save(page)

    phone = page.get_by_label("Phone number")
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_have_value("12345")
    message_ids = (phone.get_attribute("aria-describedby") or "").split()
    messages = [page.locator(f"#{message_id}").inner_text() for message_id in message_ids]
    assert any("international form" in m for m in messages), messages
    expect(phone).to_have_accessible_description(re.compile(r"starting with \+ and the country"))
    expect(page.get_by_text(re.compile(r"^Enter the number in international form"))).to_be_visible()

    page.get_by_role("link", name="Cancel").click()
    expect(shown_value(page, "Phone number")).to_have_text("Not filled in")


def test_address_without_a_country_says_so_at_the_country_field(page: Page) -> None:
    sign_up(page)
    edit(page, "Postal address")
    page.get_by_label("Street and number").fill("Keizersgracht 1")
    page.get_by_label("Postal code").fill("1015 CJ")
    page.get_by_label("City or town").fill("Amsterdam")

    save(page)

    country = page.get_by_label("Country")
    expect(country).to_have_attribute("aria-invalid", "true")
    expect(country).to_have_accessible_description("Country is required for an address.")
    expect(page.get_by_label("City or town")).to_have_value("Amsterdam")


def test_each_value_sits_on_the_same_line_as_its_label(page: Page) -> None:
    email = sign_up(page)

    for label, shown in (("Email address", email), ("Family name", "Not filled in")):
        term = page.get_by_role("term").filter(has_text=label).bounding_box()
        value = shown_value(page, label).get_by_text(shown, exact=True)
        expect(value).to_be_visible()
        box = value.bounding_box()
        assert term and box
        assert abs(box["y"] - term["y"]) < term["height"] / 2, (label, term, box)
        assert box["x"] > term["x"] + term["width"], (label, term, box)
