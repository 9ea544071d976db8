"""Steps a person takes in the portal, written as a person would: by label and role."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import SERVERS
from tests.helpers import PASSWORD, unique_email
from tests.mail import last_queued, link_to


def sign_up(page: Page, email: str | None = None, password: str = PASSWORD) -> str:
    """Sign up, confirm the address with the link the vault mailed, and sign in: a person
    with a confirmed account, on their profile."""
    email = email or unique_email("browser")
    ask_for_account(page, email, password)
    confirm_from_mail(page, queued_link(page, email, "confirm_signup", "/signup/confirm"))
    sign_in(page, email, password)
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    return email


def ask_for_account(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/signup")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat the password").fill(password)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your email to finish")).to_be_visible()


def queued_link(page: Page, email: str, kind: str, path: str) -> str:
    """The link (path and query) of the last message of ``kind`` queued to ``email`` by the
    server the page is on."""
    parts = urlsplit(page.url)
    rt = SERVERS[f"{parts.scheme}://{parts.netloc}"]
    link = urlsplit(link_to(last_queued(rt, email, kind), path))
    return f"{link.path}?{link.query}"


def confirm_from_mail(page: Page, link: str) -> None:
    page.goto(link)
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_role("status")).to_contain_text("Your address is confirmed")


def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page: Page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")


def shown_value(page: Page, label: str) -> Locator:
    """What the profile shows next to ``label``: the definition that follows the term."""
    term = page.get_by_role("term").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return term.locator("xpath=following-sibling::dd[1]")


def edit(page: Page, label: str) -> None:
    """Open a standard field's edit page from the profile."""
    page.get_by_role("link", name=f"Edit {label.lower()}").click()
    expect(page.get_by_role("heading", name=label)).to_be_visible()


def save(page: Page) -> None:
    page.get_by_role("button", name="Save").click()
