"""Browser journeys through the mail: sign up and confirm from the message that arrived over
SMTP, then sign in; forget the password and set a new one from the mailed link."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import own_server
from tests.browser.journeys import ask_for_account, sign_in
from tests.helpers import PASSWORD, unique_email
from tests.mail import SmtpServer, link_to, running_smtp, text_of
from vault.mail.delivery import deliver_due
from vault.runtime import Runtime

pytestmark = pytest.mark.browser

NEW_PASSWORD = "purple elephant tap dancing"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def vault_server(
    tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer
) -> Iterator[tuple[str, Runtime]]:
    """A server whose mail goes to the SMTP server of this module."""
    with own_server(tmp_path_factory, "mail-server", smtp_url=smtp.url) as served:
        yield served


@pytest.fixture(scope="module")
def live_server(vault_server: tuple[str, Runtime]) -> str:
    return vault_server[0]


def mailed_link(rt: Runtime, smtp: SmtpServer, email: str, subject: str, path: str) -> str:
    """Run the worker's sending once, then take the link out of the message that arrived."""
    deliver_due(rt)
    found = [m for m in smtp.inbox.to(email) if m["Subject"] == subject]
    assert len(found) == 1, [m["Subject"] for m in smtp.inbox.to(email)]
    link = urlsplit(link_to(found[0], path))
    return f"{link.path}?{link.query}"


def test_sign_up_confirm_from_the_mail_then_sign_in(
    page: Page, vault_server: tuple[str, Runtime], smtp: SmtpServer
) -> None:
    _, rt = vault_server
    email = unique_email("mailed")
    ask_for_account(page, email)

    page.goto("/signin")
    sign_in(page, email)
    expect(page.get_by_role("alert")).to_contain_text("Confirm your email address first")

    link = mailed_link(
        rt, smtp, email, "Confirm your email address for VRM Vault", "/signup/confirm"
    )
    page.goto(link)
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_role("status")).to_have_text(
        "Your address is confirmed and your vault is ready. Sign in."
    )
    sign_in(page, email)
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_text(email, exact=True)).to_be_visible()


def test_forgot_password_then_reset_from_the_mail(
    page: Page, vault_server: tuple[str, Runtime], smtp: SmtpServer
) -> None:
    _, rt = vault_server
    email = unique_email("forgetful")
    ask_for_account(page, email)
    confirm = mailed_link(
        rt, smtp, email, "Confirm your email address for VRM Vault", "/signup/confirm"
    )
    page.goto(confirm)
    page.get_by_role("button", name="Confirm my address").click()

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()

    reset = mailed_link(rt, smtp, email, "Set a new password for VRM Vault", "/password/reset")
    page.goto(reset)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the new password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")

    sign_in(page, email, PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("The email address or password is not right.")
    sign_in(page, email, NEW_PASSWORD)
    expect(page).to_have_url(re.compile(r"/profile$"))
    deliver_due(rt)
    [notice] = [
        m for m in smtp.inbox.to(email) if m["Subject"] == "Your VRM Vault password was changed"
    ]
    assert "every session was signed out" in text_of(notice)

    page.goto(reset)  # the link worked once
    expect(page.get_by_text("This link has expired or was already used.")).to_be_visible()
