"""The consent screen in a browser: a vendor asks, the person unticks a field and allows (or
denies), the vendor reads what was allowed, and revoking on the Connections page stops it.

The vendor's site is a tiny HTTP server on another loopback port: another origin, so landing
on its callback also shows that the consent page's Content-Security-Policy (``form-action``)
lets the redirect after the form post through. (``page.route`` can't stand in for it: Playwright
does not route the target of a redirect.)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from playwright.sync_api import Page, expect

from consent.vendors.service import AppInput, register_app
from tests.browser.conftest import own_server
from tests.browser.journeys import edit, save, sign_up
from vault.runtime import Runtime

pytestmark = pytest.mark.browser

SCOPE = "profile:email profile:given_name profile:family_name profile:phone"


@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime]]:
    """A server of this module's own, and a runtime on its database to register vendors."""
    with own_server(tmp_path_factory, "consent-server") as served:
        yield served


@pytest.fixture(scope="module")
def live_server(vault_server: tuple[str, Runtime]) -> str:
    return vault_server[0]


class VendorSite(BaseHTTPRequestHandler):
    """Acme Shoes' site: its callback page (to the vault's redirects) and nothing else."""

    def do_GET(self) -> None:
        found = urlsplit(self.path).path == "/callback"
        body = b"<!doctype html><title>Acme Shoes</title><h1>Acme Shoes</h1>"
        self.send_response(200 if found else 404)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def redirect_uri() -> Iterator[str]:
    """The callback URL of Acme Shoes' site, running for this module."""
    site = ThreadingHTTPServer(("127.0.0.1", 0), VendorSite)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}/callback"
    site.shutdown()
    site.server_close()
    thread.join(timeout=10)


@pytest.fixture
def vendor(vault_server: tuple[str, Runtime], redirect_uri: str) -> Iterator[OAuth2Client]:
    """Acme Shoes, registered with a client secret, as Authlib's client against the server."""
    base_url, rt = vault_server
    with rt.sessions() as db:
        app, secret = register_app(
            db,
            rt,
            AppInput(
                name="Acme Shoes",
                homepage_url="https://shop.example",
                privacy_policy_url="https://shop.example/privacy",
                redirect_uris=[redirect_uri],
                purpose="Deliver your orders to your door.",
                accepted_agreements=["service-only", "no-tracking"],
            ),
            owner_id=None,
            registered_via="cli",
            with_secret=True,
        )
        db.commit()
        client_id = app.client_id
    with OAuth2Client(
        client_id=client_id,
        client_secret=secret,
        scope=SCOPE,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
        base_url=base_url,
    ) as client:
        yield client


def ask_for_consent(page: Page, vendor: OAuth2Client, verifier: str) -> str:
    """The vendor sends the person to the vault's consent screen; returns the state it sent."""
    url, state = vendor.create_authorization_url(
        f"{vendor.base_url}/oauth/authorize", code_verifier=verifier
    )
    page.goto(url)
    expect(page.get_by_role("heading", name="Acme Shoes asks to read your data")).to_be_visible()
    return str(state)


def callback_query(page: Page, vendor: OAuth2Client) -> dict[str, str]:
    """Where the vault sent the person back: the vendor's callback page, and its query."""
    page.wait_for_url(f"{vendor.redirect_uri}?**")
    expect(page.get_by_role("heading", name="Acme Shoes")).to_be_visible()
    return {key: values[0] for key, values in parse_qs(urlsplit(page.url).query).items()}


def named(label: str, shown: str = "") -> re.Pattern[str]:
    """A consent checkbox's name: the field's label, a "new" badge, then the value shown."""
    return re.compile(rf"^{re.escape(label)} new ?: {re.escape(shown)}")


def test_a_person_shares_all_but_an_unticked_field_then_revokes_on_connections(
    page: Page, vendor: OAuth2Client
) -> None:
    email = sign_up(page)
    edit(page, "Given name")
    page.get_by_label("Given name").fill("Ada")
    save(page)
    edit(page, "Phone number")
    page.get_by_label("Phone number").fill("+31 20 123 4567")
    save(page)
    expect(page.get_by_role("status")).to_have_text("Phone number saved.")

    verifier = generate_token(48)
    state = ask_for_consent(page, vendor, verifier)
    expect(page.get_by_role("paragraph").filter(has_text="Purpose stated by")).to_have_text(
        "Purpose stated by Acme Shoes: Deliver your orders to your door."
    )
    fields = page.get_by_role("group", name="Fields to share")
    expect(fields.get_by_role("checkbox")).to_have_count(4)
    for label, shown in [
        ("Given name", "Ada"),
        ("Family name", "not filled in"),
        ("Email address", email),
        ("Phone number", "+31 20 123 4567"),
    ]:
        expect(fields.get_by_role("checkbox", name=named(label, shown))).to_be_checked()
    expect(page.get_by_text("Acme Shoes accepts them.")).to_be_visible()
    expect(page.get_by_role("radio", name="Service delivery only")).to_be_checked()
    expect(page.get_by_label("For how long")).to_have_value("30d")

    fields.get_by_role("checkbox", name=named("Phone number")).uncheck()
    page.get_by_label("For how long").select_option(label="1 year")
    a_year_on = {f"{datetime.now(UTC) + timedelta(days=365):%Y-%m-%d}"}
    page.get_by_role("button", name="Allow").click()

    answer = callback_query(page, vendor)
    a_year_on.add(f"{datetime.now(UTC) + timedelta(days=365):%Y-%m-%d}")
    assert answer["state"] == state
    vendor.fetch_token(
        f"{vendor.base_url}/oauth/token", code=answer["code"], code_verifier=verifier
    )
    read = vendor.get("/vendor/v1/profile")
    assert read.status_code == 200, read.text
    # Phone number was unticked; Family name was ticked but is empty, so there is nothing to read.
    assert read.json()["fields"] == {"email": email, "given_name": "Ada"}

    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    card = page.get_by_role("region", name="Acme Shoes")
    may_read = card.get_by_role("group", name="Fields Acme Shoes may read")
    for label in ("Given name", "Family name", "Email address"):
        expect(may_read.get_by_role("checkbox", name=label)).to_be_visible()
    expect(may_read.get_by_role("checkbox", name="Phone number")).to_have_count(0)
    expect(may_read.get_by_role("checkbox")).to_have_count(3)
    expect(card).to_contain_text(re.compile(r"Reads so far\s*1\b"))
    until = "|".join(sorted(a_year_on))
    expect(card).to_contain_text(re.compile(rf"Until\s*({until}) \d\d:\d\d UTC"))

    card.get_by_role("button", name="Revoke access for Acme Shoes").click()
    expect(page.get_by_role("status")).to_contain_text("You revoked Acme Shoes's access.")
    assert vendor.get("/vendor/v1/profile").status_code == 401


def test_a_person_who_denies_is_sent_back_with_access_denied(
    page: Page, vendor: OAuth2Client
) -> None:
    sign_up(page)
    state = ask_for_consent(page, vendor, generate_token(48))

    page.get_by_role("button", name="Deny").click()

    answer = callback_query(page, vendor)
    assert answer["error"] == "access_denied"
    assert answer["state"] == state
    assert "code" not in answer
    page.goto("/connections")
    expect(page.get_by_text("No vendor can read your data right now.")).to_be_visible()
