"""Browser journeys for the second factor: an authenticator app turned on and used to sign in
(codes computed here, as the app would), and passkeys through Chromium's virtual
authenticator (the DevTools WebAuthn domain): registered, then used to sign in without a
password and as the second step after one."""

from __future__ import annotations

import base64
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from tests.browser.conftest import SERVERS, TIMEOUT_MS, PageProblems
from tests.browser.journeys import sign_in, sign_out, sign_up
from tests.conftest import test_settings as settings_for
from vault.factors import totp
from vault.migrate import upgrade
from vault.runtime import Runtime
from vrm.app import create_app

pytestmark = pytest.mark.browser


class LocalhostServer:
    """The app served on 127.0.0.1 but addressed as ``localhost``: WebAuthn takes a domain
    as its relying party id, never an IP address."""

    def __init__(self, tmp: Path) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://localhost:{self.sock.getsockname()[1]}"
        database_url = f"sqlite:///{tmp / 'vault.db'}"
        upgrade(database_url)
        settings = settings_for(tmp / "keys", database_url, base_url=self.url)
        self.rt = Runtime.from_settings(settings)
        SERVERS[self.url] = self.rt  # the journeys read the mail it queues
        config = uvicorn.Config(
            create_app(runtime=self.rt), log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LocalhostServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the uvicorn test server did not start; see the log above")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        SERVERS.pop(self.url, None)
        self.rt.engine.dispose()


@pytest.fixture(scope="module")
def localhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with LocalhostServer(tmp_path_factory.mktemp("passkeys")) as server:
        yield server.url


@pytest.fixture
def local_page(browser: Browser, localhost_server: str) -> Iterator[Page]:
    """A tab on the localhost server, failing the test on console errors or CSP violations."""
    ctx: BrowserContext = browser.new_context(
        base_url=localhost_server,
        locale="en-GB",
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = ctx.new_page()
    problems = PageProblems()
    page.on("console", problems.console)
    page.on("pageerror", problems.page_error)
    page.on("response", problems.response)
    page.on("requestfailed", problems.request_failed)
    yield page
    ctx.close()
    assert not problems.found, problems.found


def virtual_authenticator(page: Page) -> CDPSession:
    """A platform authenticator with resident keys and user verification, as a laptop's."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp


def recovery_codes_shown(page: Page) -> list[str]:
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    return codes


def test_an_authenticator_app_is_turned_on_and_asked_for_at_sign_in(page: Page) -> None:
    email = sign_up(page)
    page.goto("/account")
    page.get_by_role("link", name="Second factor and passkeys").click()
    expect(page.get_by_role("heading", name="Account security")).to_be_visible()
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator(".qr svg")).to_be_visible()
    secret_text = page.locator("#totp-secret").inner_text()
    secret = base64.b32decode(secret_text + "=" * (-len(secret_text) % 8))
    first_step = totp.current_step()
    page.get_by_label("Code from the app").fill(totp.hotp(secret, first_step))
    page.get_by_role("button", name="Turn on").click()
    recovery_codes_shown(page)
    page.get_by_role("link", name="Done").click()
    expect(page.locator("#totp-state")).to_have_text("On.")

    sign_out(page)
    sign_in(page, email)
    expect(page).to_have_url(re.compile(r"/signin/verify$"))
    expect(page.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    page.get_by_label(re.compile("6-digit code")).fill("000000")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("The code is not right.")).to_be_visible()
    step = max(totp.current_step(), first_step + 1)
    page.get_by_label(re.compile("6-digit code")).fill(totp.hotp(secret, step))
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_text(email, exact=True)).to_be_visible()


def test_a_passkey_is_registered_then_signs_in_without_a_password(local_page: Page) -> None:
    page = local_page
    virtual_authenticator(page)
    email = sign_up(page)
    page.goto("/account/security")
    page.get_by_label("Name for the new passkey").fill("This laptop")
    page.get_by_role("button", name="Add a passkey").click()
    recovery_codes_shown(page)
    page.get_by_role("link", name="Done").click()
    expect(page.get_by_role("cell", name="This laptop", exact=True)).to_be_visible()

    sign_out(page)
    page.get_by_role("button", name="Use a passkey instead").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    expect(page.get_by_text(email, exact=True)).to_be_visible()

    # With a password, the passkey is the second step.
    sign_out(page)
    sign_in(page, email)
    expect(page).to_have_url(re.compile(r"/signin/verify$"))
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/profile$"))
    page.goto("/account/security")
    expect(page.get_by_role("cell", name="This laptop", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="never")).to_have_count(0)
