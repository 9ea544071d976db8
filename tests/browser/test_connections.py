"""Journeys on the connections and terms pages: by label and role, with the keyboard."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from consent.grants.models import Grant
from tests.browser.conftest import own_server
from tests.browser.journeys import sign_up
from tests.consent.factories import account_of, bearer, connect, make_app
from vault.profile.service import ProfileService
from vault.runtime import Runtime

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime]]:
    """A server of this module's own, and a runtime on its database to set up vendors."""
    with own_server(tmp_path_factory, "connections-server") as served:
        yield served


@pytest.fixture(scope="module")
def live_server(vault_server: tuple[str, Runtime]) -> str:
    return vault_server[0]


def connected(rt: Runtime, email: str) -> tuple[Grant, dict[str, str]]:
    """Acme Shoes may read the person's name and phone; returns the grant and a bearer header."""
    with rt.sessions() as db:
        account = account_of(db, rt, email)
        profile = ProfileService(db, rt)
        profile.set_field(account, "given_name", "Ada")
        profile.set_field(account, "phone", "+31201234567")
        db.commit()
        app = make_app(db, name="Acme Shoes")
        grant = connect(db, rt, account, app, ["given_name", "phone"])
        return grant, bearer(db, rt, app, grant)


def test_a_person_narrows_and_revokes_a_connection_with_the_keyboard(
    page: Page, vault_server: tuple[str, Runtime]
) -> None:
    _, rt = vault_server
    email = sign_up(page)
    _, headers = connected(rt, email)
    assert page.request.get("/vendor/v1/profile", headers=headers).ok

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    card = page.get_by_role("region", name="Acme Shoes")
    expect(card).to_contain_text("Deliver your orders to your door.")
    expect(card.get_by_role("link", name="Service delivery only")).to_be_visible()
    expect(card).to_contain_text(re.compile(r"Reads so far\s*1\b"))

    card.get_by_role("checkbox", name="Phone number").focus()
    page.keyboard.press("Space")
    card.get_by_role("button", name="Stop sharing the ticked fields").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Acme Shoes can no longer read: Phone number.")
    body = page.request.get("/vendor/v1/profile", headers=headers).json()
    assert body["fields"] == {"given_name": "Ada"}

    card.get_by_role("link", name="See every read by Acme Shoes").click()
    expect(page.get_by_role("heading", name="Reads by Acme Shoes")).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("Given name")
    page.go_back()

    page.get_by_role("button", name="Revoke access for Acme Shoes").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("You revoked Acme Shoes's access.")
    expect(page.get_by_text("No vendor can read your data right now.")).to_be_visible()
    assert page.request.get("/vendor/v1/profile", headers=headers).status == 401


def test_a_person_chooses_their_terms(page: Page) -> None:
    sign_up(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Choose your terms").click()
    expect(page.get_by_role("radio", name="Service delivery only")).to_be_checked()

    page.get_by_role("radio", name="No tracking off your site").check()
    page.get_by_role("button", name="Save my choice").click()

    expect(page.get_by_role("status")).to_have_text(
        "Saved. You now offer vendors “No tracking off your site”."
    )
    expect(page.get_by_role("radio", name="No tracking off your site")).to_be_checked()
    page.get_by_role("link", name="Read the full terms").first.click()
    expect(page.get_by_role("heading", name="Service delivery only")).to_be_visible()
