"""Sign up, sign in (with throttling and without telling who has an account), sign out,
change password, and what an auditor account may open."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.helpers import (
    PASSWORD,
    confirm_address,
    page_csrf,
    post_form,
    sign_in,
    sign_up,
    unique_email,
)
from tests.mail import last_queued, text_of
from tests.web.conftest import Count, CountingHasher, MakeClient
from vault.accounts.models import Account, AccountSession, Role, SignInThrottle
from vault.accounts.service import email_index
from vault.base import utcnow
from vault.profile.models import ProfileField
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

NEW_PASSWORD = "purple elephant tap dancing"
NOT_RIGHT = "The email address or password is not right."
THROTTLED = "Too many failed sign-in attempts."


def account_of(db: Session, rt: Runtime, email: str) -> Account:
    db.expire_all()
    return db.scalars(select(Account).where(Account.email_index == email_index(rt, email))).one()


def redacted(html: str, *values: str) -> str:
    """The page without its CSRF tokens and the given (echoed) values."""
    html = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', html)
    for value in values:
        html = html.replace(value, "")
    return html


def change_password(client: TestClient, current: str, new: str, confirm: str | None = None):  # type: ignore[no-untyped-def]
    return post_form(
        client,
        "/account/password",
        {
            "current_password": current,
            "new_password": new,
            "new_password_confirm": new if confirm is None else confirm,
        },
        form_page="/account",
    )


# -- sign up --------------------------------------------------------------------------------


def test_sign_up_stores_an_argon2id_hash(client: TestClient, db: Session, rt: Runtime) -> None:
    email = sign_up(client)
    account = account_of(db, rt, email)
    assert account.password_hash.startswith("$argon2id$")
    assert PASSWORD not in account.password_hash


def test_sign_up_stores_the_email_as_the_only_profile_field(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(client)
    account = account_of(db, rt, email)
    keys = db.scalars(select(ProfileField.field_key).where(ProfileField.owner_id == account.id))
    assert list(keys) == ["email"]
    assert email in client.get("/profile").text


def test_sign_up_asks_to_confirm_and_the_account_signs_in_only_once_confirmed(
    client: TestClient, second_client: TestClient
) -> None:
    email = unique_email()
    response = post_form(
        client, "/signup", {"email": email, "password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert response.status_code == 200
    assert "Check your email to finish" in response.text
    assert "vrm_session" not in response.cookies
    refused = sign_in(second_client, email)
    assert refused.status_code == 401
    assert "Confirm your email address first" in refused.text
    confirm_address(client, email)
    assert sign_in(second_client, email).status_code == 303
    assert second_client.get("/profile").status_code == 200


def test_sign_up_with_different_passwords_names_the_repeat_field_and_creates_nothing(
    client: TestClient, count: Count
) -> None:
    response = post_form(
        client,
        "/signup",
        {"email": unique_email(), "password": PASSWORD, "password_confirm": PASSWORD + "!"},
    )
    assert response.status_code == 400
    assert "The two passwords are not the same." in response.text
    assert re.search(r'id="password_confirm"[^>]*aria-invalid="true"', response.text)
    assert count(Account) == 0
    assert count(ProfileField) == 0


def test_sign_up_with_a_short_password_names_the_password_field(
    client: TestClient, count: Count
) -> None:
    response = post_form(
        client,
        "/signup",
        {"email": unique_email(), "password": "short1", "password_confirm": "short1"},
    )
    assert response.status_code == 400
    assert "Use at least 10 characters." in response.text
    assert re.search(r'id="password"[^>]*aria-invalid="true"', response.text)
    assert count(Account) == 0


def test_sign_up_with_a_common_password_is_refused(client: TestClient, count: Count) -> None:
    response = post_form(
        client,
        "/signup",
        {"email": unique_email(), "password": "password123", "password_confirm": "password123"},
    )
    assert response.status_code == 400
    assert "This password is too easy to guess." in response.text
    assert count(Account) == 0


def test_sign_up_with_an_invalid_email_names_the_email_field_and_keeps_it(
    client: TestClient, count: Count
) -> None:
    response = post_form(
        client,
        "/signup",
        {"email": "not-an-address", "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert response.status_code == 400
    assert "This is not a valid email address" in response.text
    assert re.search(
        r'id="email"[^>]*value="not-an-address"[^>]*aria-invalid="true"', response.text
    )
    assert count(Account) == 0


def test_duplicate_sign_up_answers_as_a_new_one_and_mails_the_owner(
    client: TestClient, second_client: TestClient, count: Count, rt: Runtime
) -> None:
    email = sign_up(client)
    accounts, fields = count(Account), count(ProfileField)
    fresh = post_form(
        second_client,
        "/signup",
        {"email": unique_email(), "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    taken = post_form(
        second_client,
        "/signup",
        {"email": email, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert taken.status_code == fresh.status_code == 200
    assert redacted(taken.text) == redacted(fresh.text)
    assert "vrm_session" not in taken.cookies
    assert (count(Account), count(ProfileField)) == (accounts + 1, fields + 1)
    told = last_queued(rt, email, "signup_taken")
    assert told["Subject"] == "Someone tried to sign up to VRM Vault with your address"
    assert "No new account was made" in text_of(told)


def test_duplicate_sign_up_ignores_the_case_of_the_address(
    client: TestClient, second_client: TestClient, count: Count, rt: Runtime
) -> None:
    email = sign_up(client)
    response = post_form(
        second_client,
        "/signup",
        {"email": email.upper(), "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert response.status_code == 200
    assert count(Account) == 1
    assert last_queued(rt, email, "signup_taken")


def test_duplicate_sign_up_costs_an_argon2_verification(
    client: TestClient, counted_client: TestClient, hasher: CountingHasher
) -> None:
    email = sign_up(client)
    response = post_form(
        counted_client,
        "/signup",
        {"email": email, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert hasher.verifications == 1


def test_duplicate_sign_ups_count_as_failed_sign_ins(
    client: TestClient, client_with: MakeClient
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=2)
    for _ in range(2):
        response = post_form(
            other,
            "/signup",
            {"email": email, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        )
        assert response.status_code == 200
    response = sign_in(other, email)
    assert response.status_code == 429
    assert THROTTLED in response.text


def test_a_throttled_address_cannot_probe_through_sign_up(
    client: TestClient, client_with: MakeClient, count: Count
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=100, signin_max_failures_per_address=2)
    for _ in range(2):
        assert sign_in(other, unique_email(), "not the password at all").status_code == 401
    accounts = count(Account)
    for probe in (email, unique_email()):
        response = post_form(
            other,
            "/signup",
            {"email": probe, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        )
        assert response.status_code == 429
        assert THROTTLED in response.text
    assert count(Account) == accounts


# -- sign in --------------------------------------------------------------------------------


def test_sign_in_with_the_right_password_starts_a_session(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    response = sign_in(second_client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/profile"
    assert response.cookies.get("vrm_session")
    assert count(AccountSession) == 2
    assert second_client.get("/profile").status_code == 200


def test_sign_in_ignores_case_and_surrounding_spaces_in_the_address(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    response = sign_in(second_client, f"  {email.upper()} ")
    assert response.status_code == 303


def test_sign_in_with_a_wrong_password_says_so_and_starts_no_session(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    response = sign_in(second_client, email, "not the password at all")
    assert response.status_code == 401
    assert NOT_RIGHT in response.text
    assert "vrm_session" not in response.cookies
    assert count(AccountSession) == 1


def test_sign_in_keeps_the_typed_address_but_never_the_password(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    response = sign_in(second_client, email, "a wrong secret password")
    assert f'value="{email}"' in response.text
    assert "a wrong secret password" not in response.text


def test_wrong_password_and_unknown_email_get_the_same_answer(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    unknown = unique_email()
    wrong_password = sign_in(second_client, email, "not the password at all")
    no_account = sign_in(second_client, unknown, "not the password at all")
    assert wrong_password.status_code == no_account.status_code == 401
    assert redacted(wrong_password.text, email) == redacted(no_account.text, unknown)
    assert wrong_password.headers.get("retry-after") == no_account.headers.get("retry-after")


def test_unknown_email_sign_in_still_runs_an_argon2_verification(
    counted_client: TestClient, hasher: CountingHasher
) -> None:
    response = sign_in(counted_client, unique_email(), "not the password at all")
    assert response.status_code == 401
    assert hasher.verifications == 1


def test_wrong_password_sign_in_runs_one_argon2_verification(
    client: TestClient, counted_client: TestClient, hasher: CountingHasher
) -> None:
    email = sign_up(client)
    sign_in(counted_client, email, "not the password at all")
    assert hasher.verifications == 1


def test_sign_in_follows_a_same_site_next_path(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    response = post_form(
        second_client, "/signin", {"email": email, "password": PASSWORD, "next": "/account"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account"


def test_sign_in_ignores_an_off_site_next_address(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    response = post_form(
        second_client, "/signin", {"email": email, "password": PASSWORD, "next": "//evil.example/x"}
    )
    assert response.headers["location"] == "/profile"


def test_signed_in_visit_to_sign_in_page_goes_home(client: TestClient) -> None:
    sign_up(client)
    response = client.get("/signin")
    assert response.status_code == 303
    assert response.headers["location"] == "/profile"


# -- throttling -----------------------------------------------------------------------------


def test_too_many_wrong_passwords_throttle_the_account_even_with_the_right_one(
    client: TestClient, client_with: MakeClient, count: Count
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=3)
    for _ in range(3):
        assert sign_in(other, email, "not the password at all").status_code == 401
    response = sign_in(other, email)
    assert response.status_code == 429
    assert "Too many failed sign-in attempts. Wait 15 minutes and try again." in response.text
    assert 0 < int(response.headers["retry-after"]) <= 15 * 60
    assert "vrm_session" not in response.cookies
    assert count(AccountSession) == 1


def test_throttled_sign_in_costs_no_argon2_verification(
    hasher: CountingHasher, client_with: MakeClient
) -> None:
    other = client_with(signin_max_failures_per_account=2)
    email = unique_email()
    for _ in range(2):
        sign_in(other, email, "not the password at all")
    other.app.state.runtime.passwords = hasher  # type: ignore[attr-defined]
    response = sign_in(other, email, "not the password at all")
    assert response.status_code == 429
    assert hasher.verifications == 0


def test_throttle_message_is_the_same_whether_or_not_the_account_exists(
    client: TestClient, client_with: MakeClient
) -> None:
    email, unknown = sign_up(client), unique_email()
    other = client_with(signin_max_failures_per_account=2)
    for address in (email, unknown):
        for _ in range(2):
            sign_in(other, address, "not the password at all")
    existing = sign_in(other, email, "not the password at all")
    missing = sign_in(other, unknown, "not the password at all")
    assert existing.status_code == missing.status_code == 429
    assert redacted(existing.text, email) == redacted(missing.text, unknown)


def test_too_many_failures_from_one_address_throttle_every_account(
    client: TestClient, client_with: MakeClient
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=100, signin_max_failures_per_address=3)
    for _ in range(3):
        assert sign_in(other, unique_email(), "not the password at all").status_code == 401
    response = sign_in(other, email)
    assert response.status_code == 429
    assert THROTTLED in response.text


def test_throttle_lifts_when_the_window_has_passed(
    client: TestClient, client_with: MakeClient, db: Session
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=2, signin_window_minutes=15)
    for _ in range(2):
        sign_in(other, email, "not the password at all")
    assert sign_in(other, email).status_code == 429
    db.execute(update(SignInThrottle).values(window_started_at=utcnow() - timedelta(minutes=16)))
    db.flush()
    assert sign_in(other, email).status_code == 303


def test_a_failure_after_the_window_starts_a_new_count(
    client: TestClient, client_with: MakeClient, db: Session
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=2)
    for _ in range(2):
        sign_in(other, email, "not the password at all")
    db.execute(update(SignInThrottle).values(window_started_at=utcnow() - timedelta(minutes=16)))
    db.flush()
    assert sign_in(other, email, "not the password at all").status_code == 401
    assert sign_in(other, email).status_code == 303


def test_successful_sign_in_resets_the_account_failure_count(
    client: TestClient, client_with: MakeClient
) -> None:
    email = sign_up(client)
    other = client_with(signin_max_failures_per_account=3)
    for _ in range(2):
        sign_in(other, email, "not the password at all")
    assert sign_in(other, email).status_code == 303
    other.post("/signout", data={"csrf_token": page_csrf(other, "/account")})
    for _ in range(2):
        sign_in(other, email, "not the password at all")
    assert sign_in(other, email).status_code == 303


# -- sign out -------------------------------------------------------------------------------


def test_sign_out_ends_the_session_and_clears_the_cookie(client: TestClient, count: Count) -> None:
    sign_up(client)
    response = post_form(client, "/signout", {}, form_page="/profile")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin"
    assert re.search(r'vrm_session=""; .*Max-Age=0', response.headers["set-cookie"])
    assert count(AccountSession) == 0
    assert client.get("/profile").status_code == 303


def test_session_cookie_kept_from_before_sign_out_no_longer_works(
    client: TestClient, second_client: TestClient
) -> None:
    sign_up(client)
    token = client.cookies["vrm_session"]
    post_form(client, "/signout", {}, form_page="/profile")
    second_client.cookies.set("vrm_session", token)
    response = second_client.get("/profile")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin")


def test_sign_out_shows_a_confirmation(client: TestClient) -> None:
    sign_up(client)
    post_form(client, "/signout", {}, form_page="/profile")
    assert "You are signed out." in client.get("/signin").text


# -- change password ------------------------------------------------------------------------


def test_change_password_stores_a_new_argon2id_hash(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(client)
    before = account_of(db, rt, email).password_hash
    response = change_password(client, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 303
    after = account_of(db, rt, email).password_hash
    assert after.startswith("$argon2id$")
    assert after != before
    assert "Your password is changed." in client.get("/account").text


def test_after_change_password_only_the_new_password_signs_in(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up(client)
    change_password(client, PASSWORD, NEW_PASSWORD)
    assert sign_in(second_client, email, PASSWORD).status_code == 401
    assert sign_in(second_client, email, NEW_PASSWORD).status_code == 303


def test_change_password_with_a_wrong_current_password_changes_nothing(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(client)
    before = account_of(db, rt, email).password_hash
    response = change_password(client, "not the password at all", NEW_PASSWORD)
    assert response.status_code == 400
    assert "The current password is not right." in response.text
    assert re.search(r'id="current_password"[^>]*aria-invalid="true"', response.text)
    assert account_of(db, rt, email).password_hash == before


def test_wrong_current_passwords_are_throttled_like_sign_ins(
    client_with: MakeClient, db: Session, rt: Runtime
) -> None:
    browser = client_with(signin_max_failures_per_account=2)
    email = sign_up(browser)
    before = account_of(db, rt, email).password_hash
    statuses = [
        change_password(browser, f"guess number {n}", NEW_PASSWORD).status_code for n in range(3)
    ]
    assert statuses == [400, 400, 429]
    # Even the right current password waits now: a stolen session cannot guess on.
    refused = change_password(browser, PASSWORD, NEW_PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed sign-in attempts" in refused.text
    assert account_of(db, rt, email).password_hash == before


def test_change_password_with_different_new_passwords_changes_nothing(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(client)
    before = account_of(db, rt, email).password_hash
    response = change_password(client, PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "!")
    assert response.status_code == 400
    assert "The two new passwords are not the same." in response.text
    assert re.search(r'id="new_password_confirm"[^>]*aria-invalid="true"', response.text)
    assert account_of(db, rt, email).password_hash == before


def test_change_password_to_a_weak_one_names_the_new_password_field(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(client)
    before = account_of(db, rt, email).password_hash
    response = change_password(client, PASSWORD, "short1")
    assert response.status_code == 400
    assert "Use at least 10 characters." in response.text
    assert re.search(r'id="new_password"[^>]*aria-invalid="true"', response.text)
    assert account_of(db, rt, email).password_hash == before


def test_change_password_to_the_same_password_is_refused(client: TestClient) -> None:
    sign_up(client)
    response = change_password(client, PASSWORD, PASSWORD)
    assert response.status_code == 400
    assert "Choose a password different from the current one." in response.text


# -- roles ----------------------------------------------------------------------------------


def make_auditor(db: Session, rt: Runtime) -> str:
    email = unique_email("auditor")
    new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
    db.flush()
    return email


def test_auditor_signs_in_and_lands_on_the_audit_console(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = make_auditor(db, rt)
    response = sign_in(client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/audit"
    page = client.get("/account")
    assert page.status_code == 200
    assert 'href="/profile"' not in page.text
    assert 'href="/audit"' in page.text


def test_auditor_gets_403_on_the_profile_page(client: TestClient, db: Session, rt: Runtime) -> None:
    sign_in(client, make_auditor(db, rt))
    response = client.get("/profile")
    assert response.status_code == 403
    assert "This page is for individuals" in response.text


def test_auditor_gets_403_json_on_the_profile_api(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_in(client, make_auditor(db, rt))
    response = client.get("/api/v1/profile")
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "detail": "Only individuals have a profile."}


def test_auditor_cannot_write_a_profile_field_through_the_api(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    sign_in(client, make_auditor(db, rt))
    fields = count(ProfileField)
    response = client.put(
        "/api/v1/profile/fields/given_name",
        json={"value": "Eve"},
        headers={"X-CSRF-Token": page_csrf(client, "/account")},
    )
    assert response.status_code == 403
    assert count(ProfileField) == fields
