"""Server-side sessions: cookie attributes, revocation, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.helpers import (
    PASSWORD,
    api_headers,
    confirm_address,
    page_csrf,
    post_form,
    sign_in,
    sign_up,
)
from tests.web.conftest import Count, MakeClient
from vault.accounts.models import AccountSession
from vault.base import utcnow
from vault.crypto import hash_token
from vault.profile.models import ProfileField
from vault.runtime import Runtime

NEW_PASSWORD = "purple elephant tap dancing"


def set_cookie_header(response, name: str) -> str:  # type: ignore[no-untyped-def]
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return str(found[0])


def attributes(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(";")[1:]}


def sign_up_response(client: TestClient, email: str = "cookie@example.org"):  # type: ignore[no-untyped-def]
    """The answer to the first sign-in of a new account (signed up and confirmed), which
    sets the session cookie."""
    response = post_form(
        client, "/signup", {"email": email, "password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert not response.headers.get_list("set-cookie") or all(
        "vrm_session" not in c for c in response.headers.get_list("set-cookie")
    )
    confirm_address(client, email)
    response = sign_in(client, email)
    assert response.status_code == 303, response.text
    return response


# -- cookies --------------------------------------------------------------------------------


def test_session_cookie_is_httponly_and_samesite_lax(client: TestClient) -> None:
    attrs = attributes(set_cookie_header(sign_up_response(client), "vrm_session"))
    assert "httponly" in attrs
    assert "samesite=lax" in attrs
    assert "path=/" in attrs


def test_session_cookie_is_not_secure_over_plain_http(client: TestClient) -> None:
    attrs = attributes(set_cookie_header(sign_up_response(client), "vrm_session"))
    assert "secure" not in attrs


def test_session_cookie_is_secure_when_the_base_url_is_https(client_with: MakeClient) -> None:
    browser = client_with(base_url="https://vault.example")
    attrs = attributes(set_cookie_header(sign_up_response(browser), "__Host-vrm_session"))
    assert {"secure", "httponly", "samesite=lax"} <= attrs


def test_csrf_cookie_is_httponly_and_samesite_lax(client: TestClient) -> None:
    attrs = attributes(set_cookie_header(client.get("/signin"), "vrm_csrf"))
    assert {"httponly", "samesite=lax"} <= attrs
    assert "secure" not in attrs


def test_csrf_cookie_is_secure_when_the_base_url_is_https(client_with: MakeClient) -> None:
    browser = client_with(base_url="https://vault.example")
    attrs = attributes(set_cookie_header(browser.get("/signin"), "__Host-vrm_csrf"))
    assert "secure" in attrs


def test_over_https_every_cookie_is_a_host_cookie(client_with: MakeClient) -> None:
    """``__Host-`` cookies: Secure, Path=/, no Domain; a browser refuses such a cookie set by
    a sibling subdomain or over plain HTTP, so none of these can be planted."""
    browser = client_with(base_url="https://vault.example")
    headers = browser.get("/signin").headers.get_list("set-cookie")
    headers += sign_up_response(browser).headers.get_list("set-cookie")
    # And the session works with them: the profile page opens, and a form posts.
    assert browser.get("/profile").status_code == 200
    signed_out = post_form(browser, "/signout", {}, form_page="/profile")
    assert signed_out.status_code == 303
    headers += signed_out.headers.get_list("set-cookie")
    names = {header.split("=", 1)[0] for header in headers}
    assert {"__Host-vrm_csrf", "__Host-vrm_session", "__Host-vrm_flash"} <= names
    for header in headers:
        attrs = attributes(header)
        assert header.startswith("__Host-"), header
        assert {"secure", "path=/"} <= attrs, header
        assert not any(attr.startswith("domain") for attr in attrs), header


def test_sign_out_cookie_removal_is_secure_when_the_base_url_is_https(
    client_with: MakeClient,
) -> None:
    browser = client_with(base_url="https://vault.example")
    sign_up_response(browser)
    response = post_form(browser, "/signout", {}, form_page="/profile")
    attrs = attributes(set_cookie_header(response, "__Host-vrm_session"))
    assert {"secure", "max-age=0"} <= attrs


def test_session_row_holds_a_hash_of_the_cookie_not_the_cookie(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)
    token = client.cookies["vrm_session"]
    stored = db.scalars(select(AccountSession.token_hash)).one()
    assert token.encode() not in stored
    assert stored == hash_token(rt.secrets.token_hash_key, token)


def test_sign_in_replaces_the_csrf_cookie(client: TestClient, second_client: TestClient) -> None:
    email = sign_up(client)
    before = page_csrf(second_client, "/signin")
    response = post_form(second_client, "/signin", {"email": email, "password": PASSWORD})
    assert "vrm_csrf" in response.cookies
    assert page_csrf(second_client, "/profile") != before


def test_csrf_token_from_before_sign_in_is_refused_after_it(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    old_token = page_csrf(second_client, "/signin")
    second_client.post(
        "/signin", data={"email": email, "password": PASSWORD, "csrf_token": old_token}
    )
    fields = count(ProfileField)
    response = second_client.post(
        "/profile/fields/given_name", data={"value": "Mallory", "csrf_token": old_token}
    )
    assert response.status_code == 403
    assert count(ProfileField) == fields


# -- revocation -----------------------------------------------------------------------------


def test_sign_out_everywhere_ends_the_other_browsers_sessions(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    sign_in(second_client, email)
    assert second_client.get("/profile").status_code == 200
    response = post_form(client, "/account/signout-everywhere", {}, form_page="/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    assert count(AccountSession) == 0
    other = second_client.get("/profile")
    assert other.status_code == 303
    assert other.headers["location"].startswith("/signin")


def test_sign_out_everywhere_also_signs_this_browser_out(client: TestClient) -> None:
    sign_up(client)
    post_form(client, "/account/signout-everywhere", {}, form_page="/account")
    assert client.get("/account").status_code == 303
    assert "You are signed out on every device." in client.get("/signin").text


def test_sign_out_everywhere_leaves_other_accounts_signed_in(
    client: TestClient, second_client: TestClient
) -> None:
    sign_up(client)
    sign_up(second_client)
    post_form(client, "/account/signout-everywhere", {}, form_page="/account")
    assert second_client.get("/profile").status_code == 200


def test_sign_out_leaves_the_other_browser_signed_in(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    sign_in(second_client, email)
    post_form(client, "/signout", {}, form_page="/profile")
    assert second_client.get("/profile").status_code == 200


def test_change_password_signs_out_other_sessions_but_keeps_this_one(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    sign_in(second_client, email)
    assert count(AccountSession) == 2
    response = post_form(
        client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
        form_page="/account",
    )
    assert response.status_code == 303
    assert count(AccountSession) == 1
    assert client.get("/profile").status_code == 200
    assert second_client.get("/profile").status_code == 303


def test_failed_change_password_keeps_other_sessions(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    sign_in(second_client, email)
    post_form(
        client,
        "/account/password",
        {
            "current_password": "not the password at all",
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
        form_page="/account",
    )
    assert count(AccountSession) == 2
    assert second_client.get("/profile").status_code == 200


def test_account_page_lists_each_session_and_marks_this_browser(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    sign_in(second_client, email)
    page = client.get("/account").text
    assert page.count(" UTC</td>") == 4  # two sessions, two timestamps each
    assert page.count("This browser") == 1


# -- expiry ---------------------------------------------------------------------------------

EXPIRIES = {
    "past_expiry": lambda: {"expires_at": utcnow() - timedelta(seconds=1)},
    "idle_too_long": lambda: {"last_seen_at": utcnow() - timedelta(days=1)},
}


@pytest.fixture(params=sorted(EXPIRIES))
def expire(request: pytest.FixtureRequest, db: Session):  # type: ignore[no-untyped-def]
    """Makes every session stale, one way or the other."""

    def expire() -> None:
        db.execute(update(AccountSession).values(**EXPIRIES[request.param]()))
        db.flush()

    return expire


def test_expired_session_page_visit_redirects_to_sign_in(client: TestClient, expire) -> None:  # type: ignore[no-untyped-def]
    sign_up(client)
    expire()
    response = client.get("/profile")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/profile"


def test_expired_session_redirect_explains_why(client: TestClient, expire) -> None:  # type: ignore[no-untyped-def]
    sign_up(client)
    expire()
    response = client.get("/account")
    assert (
        "Your session has expired. Sign in again." in client.get(response.headers["location"]).text
    )


def test_sign_in_after_expiry_returns_to_the_page_asked_for(
    client: TestClient,
    expire,  # type: ignore[no-untyped-def]
) -> None:
    email = sign_up(client)
    expire()
    signin_page = client.get(client.get("/account").headers["location"])
    assert 'name="next" value="/account"' in signin_page.text
    response = post_form(
        client, "/signin", {"email": email, "password": PASSWORD, "next": "/account"}
    )
    assert response.headers["location"] == "/account"


def test_expired_session_form_post_answers_401_with_sign_in_page_and_saves_nothing(
    client: TestClient,
    db: Session,
    rt: Runtime,
    expire,  # type: ignore[no-untyped-def]
) -> None:
    sign_up(client)
    token = page_csrf(client, "/profile/fields/given_name")
    expire()
    response = client.post("/profile/fields/given_name", data={"value": "Ada", "csrf_token": token})
    assert response.status_code == 401
    assert "<h1>Sign in</h1>" in response.text
    assert "Your session has expired. Sign in again." in response.text
    db.expire_all()
    assert db.scalars(select(ProfileField.field_key)).all() == ["email"]


def test_expired_session_api_read_answers_401_json(client: TestClient, expire) -> None:  # type: ignore[no-untyped-def]
    sign_up(client)
    expire()
    response = client.get("/api/v1/profile")
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "not_authenticated"
    assert body["detail"]


def test_expired_session_api_write_answers_401_and_changes_nothing(
    client: TestClient,
    count: Count,
    expire,  # type: ignore[no-untyped-def]
) -> None:
    sign_up(client)
    headers = api_headers(client)
    expire()
    response = client.put(
        "/api/v1/profile/fields/given_name", json={"value": "Ada"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert count(ProfileField) == 1


def test_expired_session_cookie_is_removed(client: TestClient, expire) -> None:  # type: ignore[no-untyped-def]
    sign_up(client)
    expire()
    response = client.get("/profile")
    attrs = attributes(set_cookie_header(response, "vrm_session"))
    assert "max-age=0" in attrs


def test_using_a_session_refreshes_its_last_activity(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)
    idle = rt.settings.session_idle_minutes
    db.execute(update(AccountSession).values(last_seen_at=utcnow() - timedelta(minutes=idle - 5)))
    db.flush()
    assert client.get("/profile").status_code == 200
    db.expire_all()
    seen = db.scalars(select(AccountSession.last_seen_at)).one()
    assert utcnow() - seen < timedelta(minutes=1)


def test_form_post_without_a_session_answers_401_with_sign_in_page(
    client: TestClient, count: Count
) -> None:
    token = page_csrf(client, "/signin")
    response = client.post(
        "/profile/custom", data={"label": "Pet", "value": "Cat", "csrf_token": token}
    )
    assert response.status_code == 401
    assert "<h1>Sign in</h1>" in response.text
    assert "Sign in to continue." in response.text
    assert count(ProfileField) == 0


def test_page_visit_without_a_session_redirects_to_sign_in_and_back(client: TestClient) -> None:
    response = client.get("/profile/fields/phone")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/profile/fields/phone"
