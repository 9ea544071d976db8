"""Security headers on every answer, error pages that leak nothing, and pages a person can use
(a heading, labelled inputs, nothing the Content-Security-Policy would block)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, api_headers, sign_in, sign_up, unique_email
from tests.web.conftest import MakeClient
from vault.accounts.dependencies import ViewerDep
from vault.accounts.models import Role
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from vrm.app import create_app

SECRET = "s3cr3t-4cc0unt-numb3r-NL91ABNA0417164300"

ANONYMOUS_PAGES = ["/", "/signin", "/signup", "/signin?next=/account", "/password/forgot"]
INDIVIDUAL_PAGES = [
    "/profile",
    "/account",
    "/profile/fields/given_name",
    "/notices",
    "/profile/fields/phone",
    "/profile/fields/birthdate",
    "/profile/fields/address",
    "/profile/fields/language",
    "/profile/fields/clothing_size",
    "/profile/fields/shoe_size",
    "/profile/fields/dietary",
    "/profile/custom/new",
]


@pytest.fixture
def pages(
    client: TestClient, second_client: TestClient, db: Session, rt: Runtime
) -> dict[str, Response]:
    """Every portal page, as an anonymous visitor, an individual and an auditor see it."""
    found = {path: second_client.get(path) for path in ANONYMOUS_PAGES}
    sign_up(client)
    custom = client.post(
        "/api/v1/profile/custom", json={"label": "Pet", "value": "Cat"}, headers=api_headers(client)
    )
    found.update({path: client.get(path) for path in INDIVIDUAL_PAGES})
    key = custom.json()["key"]
    found[f"/profile/custom/{key}"] = client.get(f"/profile/custom/{key}")
    auditor = unique_email("auditor")
    new_account(db, rt, auditor, PASSWORD, role=Role.AUDITOR)
    db.flush()
    sign_in(second_client, auditor)
    found["/account (auditor)"] = second_client.get("/account")
    for path, response in found.items():
        assert response.status_code == 200, (path, response.status_code)
    return found


class Page(HTMLParser):
    """What the accessibility checks need from a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.h1 = 0
        self.controls: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.ids: list[str] = []
        self.repeated: list[tuple[str, str]] = []
        self.described_by: list[str] = []
        self.inline_scripts = 0
        self.style_elements = 0
        self.style_attributes = 0
        self.event_handlers: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        self.repeated += [(tag, n) for n in set(names) if names.count(n) > 1]
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if values.get("aria-describedby"):
            self.described_by += str(values["aria-describedby"]).split()
        if "style" in values:
            self.style_attributes += 1
        self.event_handlers += [n for n in names if n.startswith("on")]
        if tag == "h1":
            self.h1 += 1
        elif tag == "label" and values.get("for"):
            self.label_for.add(str(values["for"]))
        elif tag in ("input", "select", "textarea") and values.get("type") != "hidden":
            self.controls.append({"tag": tag, **values})
        elif tag == "script" and not values.get("src"):
            self.inline_scripts += 1
        elif tag == "style":
            self.style_elements += 1


def each_page(pages: dict[str, Response]) -> Iterator[tuple[str, Page]]:
    for path, response in pages.items():
        yield path, Page(response.text)


# -- headers --------------------------------------------------------------------------------


def test_every_page_has_a_strict_content_security_policy(pages: dict[str, Response]) -> None:
    for path, response in pages.items():
        csp = response.headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
        assert "'unsafe-inline'" not in csp, path
        assert "'unsafe-eval'" not in csp, path
        assert directives["script-src"] == ["'self'"], path
        assert directives["default-src"] == ["'self'"], path
        assert directives["frame-ancestors"] == ["'none'"], path
        assert directives["object-src"] == ["'none'"], path


def test_every_page_forbids_sniffing_framing_and_referrers(pages: dict[str, Response]) -> None:
    for path, response in pages.items():
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["referrer-policy"] == "no-referrer", path


def test_every_page_is_marked_no_store(pages: dict[str, Response]) -> None:
    for path, response in pages.items():
        assert response.headers["cache-control"] == "no-store", path


def test_json_api_answers_carry_the_same_headers(client: TestClient) -> None:
    sign_up(client)
    response = client.get("/api/v1/profile")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "content-security-policy" in response.headers


def test_redirects_carry_the_headers_too(client: TestClient) -> None:
    response = client.get("/profile")
    assert response.status_code == 303
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_static_files_may_be_cached(client: TestClient) -> None:
    response = client.get("/static/vault.css")
    assert response.status_code == 200
    assert response.headers.get("cache-control") != "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_hsts_is_sent_only_when_the_base_url_is_https(
    client: TestClient, client_with: MakeClient
) -> None:
    assert "strict-transport-security" not in client.get("/").headers
    secure = client_with(base_url="https://vault.example").get("/")
    assert secure.headers["strict-transport-security"].startswith("max-age=")


# -- page structure -------------------------------------------------------------------------


def test_every_page_has_one_h1(pages: dict[str, Response]) -> None:
    for path, page in each_page(pages):
        assert page.h1 == 1, path


def test_every_visible_form_control_has_a_label(pages: dict[str, Response]) -> None:
    for path, page in each_page(pages):
        for control in page.controls:
            assert control.get("id") in page.label_for, (path, control)


def test_no_element_repeats_an_attribute(pages: dict[str, Response]) -> None:
    for path, page in each_page(pages):
        assert page.repeated == [], path


def test_ids_are_unique_and_every_described_by_target_exists(pages: dict[str, Response]) -> None:
    for path, page in each_page(pages):
        assert len(page.ids) == len(set(page.ids)), path
        assert set(page.described_by) <= set(page.ids), path


def test_pages_have_no_inline_script_or_style_the_policy_would_block(
    pages: dict[str, Response],
) -> None:
    for path, page in each_page(pages):
        assert page.inline_scripts == 0, path
        assert page.style_elements == 0, path
        assert page.style_attributes == 0, path
        assert page.event_handlers == [], path


# -- error pages ----------------------------------------------------------------------------


def test_not_found_page_is_a_page_with_headers(client: TestClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in response.text
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_not_found_page_does_not_echo_the_address(client: TestClient) -> None:
    response = client.get(f"/{SECRET}")
    assert response.status_code == 404
    assert SECRET not in response.text


def test_not_found_on_the_api_is_json(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "There is nothing here."}


@pytest.fixture
def failing_app(rt: Runtime) -> FastAPI:
    """The app with routes that fail with a secret in the exception message."""
    app = create_app(runtime=rt)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"could not charge {SECRET}")

    @app.get("/api/v1/boom")
    def api_boom() -> None:
        raise RuntimeError(f"could not charge {SECRET}")

    @app.get("/boom-signed-in")
    def boom_signed_in(viewer: ViewerDep) -> None:
        assert viewer.signed_in
        raise RuntimeError(f"could not charge {SECRET}")

    return app


@pytest.fixture
def failing(failing_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(failing_app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def test_server_error_page_says_sorry_without_details(failing: TestClient) -> None:
    response = failing.get("/boom")
    assert response.status_code == 500
    assert "<h1>Something went wrong</h1>" in response.text
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text


def test_server_error_page_carries_the_security_headers(failing: TestClient) -> None:
    response = failing.get("/boom")
    assert response.status_code == 500
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_server_error_on_the_api_is_json_without_details(failing: TestClient) -> None:
    response = failing.get("/api/v1/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "server_error"
    assert SECRET not in response.text


def test_server_error_for_a_signed_in_person_still_renders_the_page(failing: TestClient) -> None:
    sign_up(failing)
    response = failing.get("/boom-signed-in")
    assert response.status_code == 500
    assert "<h1>Something went wrong</h1>" in response.text
    assert 'href="/profile"' in response.text
    assert SECRET not in response.text


def test_server_error_log_names_the_error_but_not_its_message(
    failing: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="vrm"):
        failing.get("/boom")
    assert "RuntimeError" in caplog.text
    assert SECRET not in caplog.text
