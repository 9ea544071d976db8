"""Taking everything away, or erasing it, in a browser: a person exports their vault and opens
the archive's ``index.html`` offline; a person connected to a vendor erases their vault, keeps
the signed receipt and cannot sign in again; an export is imported into a new account."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, Request, expect

from tests.browser.conftest import own_server
from tests.browser.journeys import (
    confirm_from_mail,
    edit,
    queued_link,
    save,
    shown_value,
    sign_in,
    sign_up,
)
from tests.consent.factories import account_of, connect, make_app
from tests.helpers import PASSWORD, unique_email
from tests.intents.factories import make_intent
from vault.portability import export
from vault.portability.parts import ERASURE_RECEIPT_TYP
from vault.profile.service import ProfileService
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from vrm.wiring import portability

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime]]:
    """A server of this module's own, and a runtime on its database to set up vendors."""
    with own_server(tmp_path_factory, "portability-server") as served:
        yield served


@pytest.fixture(scope="module")
def live_server(vault_server: tuple[str, Runtime]) -> str:
    return vault_server[0]


def main_nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def fill_profile(page: Page) -> None:
    edit(page, "Given name")
    page.get_by_label("Given name").fill("Grace")
    save(page)
    edit(page, "Family name")
    page.get_by_label("Family name").fill("Hopper")
    save(page)
    expect(page.get_by_role("status")).to_have_text("Family name saved.")


def publish_intent(page: Page, title: str) -> None:
    main_nav(page, "Intents")
    page.get_by_role("link", name="New intent").click()
    page.get_by_label("Category").select_option(label="Sports and outdoors > Bicycles")
    page.get_by_label("What do you want?").fill(title)
    page.get_by_label("Amount").fill("450")
    page.get_by_label("Online or delivered is fine").check()
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Your intent is published")


def kind_count(page: Page, kind: str) -> Locator:
    """The number the export page shows for ``kind`` (the row's second cell)."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=kind, exact=True))
    return row.get_by_role("cell").nth(1)


def test_a_person_exports_everything_and_opens_index_html_offline(
    page: Page, context: BrowserContext, tmp_path: Path
) -> None:
    email = sign_up(page)
    fill_profile(page)
    publish_intent(page, "Gravel bike for touring")

    main_nav(page, "Account")
    page.get_by_role("link", name="Export everything").click()
    expect(page.get_by_role("heading", name="Export everything", level=1)).to_be_visible()
    expect(kind_count(page, "Profile fields")).to_have_text("3")  # email, given, family name
    expect(kind_count(page, "Intents")).to_have_text("1")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the export").click()
    download = download_info.value
    expect(page.get_by_role("status")).to_contain_text(re.compile(r"^Done: [\d.]+ MB\. Saving "))
    expect(page.get_by_role("progressbar", name="Preparing your export")).to_have_attribute(
        "value", "100"
    )
    assert re.fullmatch(r"vrm-vault-export-\d{8}-\d{6}\.zip", download.suggested_filename)
    archive = tmp_path / download.suggested_filename
    download.save_as(archive)

    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert "index.html" in [f["path"] for f in manifest["files"]]
        zf.extractall(tmp_path / "unpacked")

    # The person opens index.html from disk: everything is there, nothing is fetched.
    offline = context.new_page()
    requests: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_request(request: Request) -> None:
        requests.append(request.url)

    offline.on("request", on_request)
    offline.on("console", on_console)
    offline.on("pageerror", lambda error: errors.append(str(error)))
    index = (tmp_path / "unpacked" / "index.html").resolve()
    offline.goto(index.as_uri())
    expect(offline.get_by_role("heading", name="Your data from VRM Vault", level=1)).to_be_visible()
    for heading in ("Profile", "Intents", "Reads by vendors", "Connections"):
        expect(offline.get_by_role("heading", name=re.compile(rf"^{heading} "))).to_be_visible()
    expect(offline.locator("#profile")).to_contain_text("Grace")
    expect(offline.locator("#profile")).to_contain_text("Hopper")
    expect(offline.locator("#profile")).to_contain_text(email)
    expect(offline.locator("#intents")).to_contain_text("Gravel bike for touring")
    offline.get_by_role("link", name="Intents").click()
    assert offline.url.endswith("#intents")
    assert requests == [index.as_uri()], requests
    assert errors == []
    offline.close()


def test_an_export_page_left_open_after_signing_out_says_to_reload_it(
    context: BrowserContext,
) -> None:
    # Not the ``page`` fixture: the refused download is a 4xx fetch, which it counts as a fault.
    page = context.new_page()
    sign_up(page)
    main_nav(page, "Account")
    page.get_by_role("link", name="Export everything").click()
    context.clear_cookies(name="vrm_session")  # the session ended, e.g. signed out elsewhere
    page.get_by_role("button", name="Download the export").click()
    expect(page.get_by_role("status")).to_have_text(
        "This page has expired. Reload it (sign in again if asked), then download the export."
    )
    expect(page.get_by_role("button", name="Download the export")).to_be_enabled()


def test_a_connected_person_erases_their_vault_and_cannot_sign_in_again(
    page: Page, vault_server: tuple[str, Runtime], tmp_path: Path
) -> None:
    _, rt = vault_server
    email = sign_up(page)
    with rt.sessions() as db:
        app = make_app(db, name="Acme Shoes")
        connect(db, rt, account_of(db, rt, email), app, ["email"])

    main_nav(page, "Account")
    page.get_by_role("link", name="Delete everything").click()
    expect(page.get_by_role("heading", name="Delete everything", level=1)).to_be_visible()
    happens = page.get_by_role("region", name="What happens, all at once")
    expect(happens).to_contain_text("Acme Shoes can no longer read anything")

    # A slip in the confirmation: nothing happens, the message is next to the field.
    page.get_by_label("Your password").fill(PASSWORD)
    confirmation = page.get_by_label("Type “erase my vault” to confirm")
    confirmation.fill("erase my vaults")
    page.get_by_role("button", name="Erase my vault now").click()
    expect(confirmation).to_have_attribute("aria-invalid", "true")
    expect(confirmation).to_have_accessible_description("Type “erase my vault” to confirm.")
    expect(page.get_by_label("Your password")).not_to_have_attribute("aria-invalid", "true")

    page.get_by_label("Your password").fill(PASSWORD)
    confirmation.fill("Erase my vault")
    page.get_by_role("button", name="Erase my vault now").click()
    expect(page.get_by_role("heading", name="Your vault is erased")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    receipt = page.get_by_label("The receipt (compact JWS)").input_value()
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", receipt)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the erasure receipt").click()
    download = download_info.value
    assert download.suggested_filename == "erasure-receipt.jws"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_text().strip() == receipt
    payload = json.loads(rt_verify(rt, receipt))
    # Acme Shoes has no webhook URL: the receipt does not claim it was asked.
    assert payload["vendors_asked_to_delete"] == []
    assert payload["vendors_without_webhook"] == ["Acme Shoes"]
    expect(page.get_by_text("could not be asked automatically")).to_contain_text("Acme Shoes")
    assert email not in json.dumps(payload)

    # Signed out: the navigation offers signing in, and the same credentials no longer work.
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Account")).to_have_count(0)
    nav.get_by_role("link", name="Sign in").click()
    sign_in(page, email)
    expect(page.get_by_role("alert")).to_have_text("The email address or password is not right.")
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/signin"))


def rt_verify(rt: Runtime, receipt: str) -> bytes:
    """The receipt's payload, if the vault's signature over it holds."""
    signer = portability(rt).signer
    return signer.verify(receipt, signer.public_key(), ERASURE_RECEIPT_TYP)


@pytest.fixture
def archive_from_elsewhere(vault_server: tuple[str, Runtime], tmp_path: Path) -> Path:
    """An export of Grace Hopper (two names, an intent, a connection to Acme Shoes), made as
    `vrm export` makes it. Made here rather than taken from the export test, so this test does
    not depend on which test ran before it on its worker."""
    _, rt = vault_server
    parts = portability(rt)
    with rt.sessions() as db:
        person = new_account(db, rt, unique_email("elsewhere"), PASSWORD)
        profile = ProfileService(db, rt)
        profile.set_field(person, "given_name", "Grace")
        profile.set_field(person, "family_name", "Hopper")
        db.commit()
        make_intent(db, rt, person, title="Gravel bike for touring")
        connect(db, rt, person, make_app(db, name="Acme Shoes"), ["given_name"])
        export.prepare(db, rt, parts, person.id)
        db.commit()
        owner_id = person.id
    path = tmp_path / export.filename()
    with path.open("wb") as out:
        out.writelines(export.stream(rt, parts, owner_id))
    return path


def test_a_person_brings_an_export_into_a_new_account(
    page: Page, archive_from_elsewhere: Path
) -> None:
    page.goto("/signup")
    page.get_by_role("link", name="Create your vault from an export").click()
    expect(page.get_by_role("heading", name="Create your vault from an export")).to_be_visible()
    email = unique_email("imported")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_label("Export archive").set_input_files(archive_from_elsewhere)
    page.get_by_role("button", name="Import and create account").click()
    # As sign-up: nothing is usable before the address is confirmed from the mail.
    expect(page.get_by_role("heading", name="Check your email to finish")).to_be_visible()
    expect(page.locator("#imported")).to_contain_text(
        re.compile(r"2 profile fields, 1 intent \(as drafts\), and the list of 1 vendor you had")
    )
    confirm_from_mail(page, queued_link(page, email, "confirm_signup", "/signup/confirm"))
    sign_in(page, email)
    expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
    expect(shown_value(page, "Given name")).to_have_text("Grace")
    expect(shown_value(page, "Family name")).to_have_text("Hopper")

    main_nav(page, "Intents")
    expect(page.get_by_role("main")).to_contain_text("Gravel bike for touring")
    main_nav(page, "Connections")
    had = page.get_by_role("region", name="Vendors you had in your previous vault")
    expect(had).to_contain_text("Acme Shoes (it could read: Given name)")
