"""Browser journeys for accounts: sign up, sign in, sign out, and the messages on bad input."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.journeys import sign_in, sign_out, sign_up
from tests.helpers import PASSWORD, unique_email

pytestmark = pytest.mark.browser


def test_sign_up_confirmed_and_signed_in_lands_on_the_profile(page: Page) -> None:
    email = sign_up(page)

    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_role("link", name="Profile")).to_have_attribute("aria-current", "page")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("button", name="Sign out")).to_be_visible()
    expect(nav.get_by_role("link", name="Sign in")).to_have_count(0)
    expect(page.get_by_text(email, exact=True)).to_be_visible()


def test_signed_out_person_signs_in_again_with_the_same_credentials(page: Page) -> None:
    email = sign_up(page)
    sign_out(page)

    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, email)

    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(page.get_by_text(email, exact=True)).to_be_visible()


def test_after_sign_out_the_profile_asks_to_sign_in_and_returns_there(page: Page) -> None:
    email = sign_up(page)
    sign_out(page)

    page.goto("/profile")

    expect(page).to_have_url(re.compile(r"/signin\?next=/profile$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Your profile")).to_have_count(0)
    sign_in(page, email)
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()


def test_sign_up_with_different_passwords_says_so_at_the_repeat_field(page: Page) -> None:
    email = unique_email("browser")
    page.goto("/signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD + " typo")
    page.get_by_role("button", name="Create account").click()

    repeat = page.get_by_label("Repeat the password")
    expect(repeat).to_have_attribute("aria-invalid", "true")
    expect(repeat).to_have_accessible_description("The two passwords are not the same.")
    expect(page.get_by_text("The two passwords are not the same.")).to_be_visible()
    expect(page.get_by_label("Email address")).to_have_value(email)
    expect(page.get_by_role("heading", name="Create your vault")).to_be_visible()


def test_sign_up_with_a_short_password_says_so_at_the_password_field(page: Page) -> None:
    page.goto("/signup")
    page.get_by_label("Email address").fill(unique_email("browser"))
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Repeat the password").fill("short")
    page.get_by_role("button", name="Create account").click()

    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_accessible_description(re.compile(r"Use at least 10 characters"))
    expect(page.get_by_text("Use at least 10 characters.")).to_be_visible()


def test_wrong_password_shows_the_generic_message(page: Page) -> None:
    email = sign_up(page)
    sign_out(page)

    sign_in(page, email, "not the right password at all")

    expect(page.get_by_role("alert")).to_have_text("The email address or password is not right.")
    expect(page.get_by_label("Email address")).to_have_value(email)
    expect(page.get_by_label("Password")).to_have_value("")
    page.goto("/profile")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_unknown_email_shows_the_same_generic_message(page: Page) -> None:
    page.goto("/signin")

    sign_in(page, unique_email("nobody"))

    expect(page.get_by_role("alert")).to_have_text("The email address or password is not right.")
