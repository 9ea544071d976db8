"""A second factor: the authenticator app (TOTP, with codes computed here), recovery codes,
passkeys (through a software authenticator), the second step of sign-in and its throttle,
and step-up before grave steps."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.authenticator import SoftAuthenticator
from tests.helpers import PASSWORD, page_csrf, post_form, sign_in, sign_up
from tests.web.conftest import Count, MakeClient
from tests.web.test_accounts import redacted
from vault.accounts.models import Account, AccountSession
from vault.accounts.service import email_index
from vault.base import utcnow
from vault.factors import totp
from vault.factors.models import (
    FactorChallenge,
    Passkey,
    RecoveryCode,
    SessionFactorCheck,
    TotpFactor,
)
from vault.mail.models import AccountLink
from vault.recovery import EMAIL_CHANGE
from vault.runtime import Runtime

NOT_PROVED = "The code is not right."
ORIGIN = "http://testserver"


# -- helpers ----------------------------------------------------------------------------------


def account_of(db: Session, rt: Runtime, email: str) -> Account:
    db.expire_all()
    return db.scalars(select(Account).where(Account.email_index == email_index(rt, email))).one()


def code_now(db: Session, account_id: uuid.UUID, secret: bytes) -> str:
    """The app's code for the earliest step the vault still takes (a step whose code was used
    is never taken again; the vault takes one step either side of now)."""
    db.expire_all()
    last = db.scalar(select(TotpFactor.last_step).where(TotpFactor.account_id == account_id))
    step = totp.current_step() if last is None else max(totp.current_step(), last + 1)
    assert step <= totp.current_step() + 1, "more than two codes within one 30-second step"
    return totp.hotp(secret, step)


def start_totp(client: TestClient) -> bytes:
    response = post_form(client, "/account/security/totp", {}, form_page="/account/security")
    assert response.status_code == 303
    assert response.headers["location"] == "/account/security/totp"
    page = client.get("/account/security/totp")
    assert page.status_code == 200
    assert (
        "<svg" in page.text and "<script" not in page.text.split("<main", 1)[1].split("</main")[0]
    )
    shown = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page.text)
    assert shown
    return base64.b32decode(shown.group(1) + "=" * (-len(shown.group(1)) % 8))


def codes_on(html: str) -> list[str]:
    return re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", html)


def turn_on_totp(client: TestClient, db: Session, rt: Runtime) -> tuple[str, bytes, list[str]]:
    """Sign up, turn the app on; the email, the secret and the recovery codes shown."""
    email = sign_up(client)
    secret = start_totp(client)
    account = account_of(db, rt, email)
    response = post_form(
        client,
        "/account/security/totp/confirm",
        {"code": code_now(db, account.id, secret)},
        form_page="/account/security/totp",
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    codes = codes_on(response.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    return email, secret, codes


def passkey_options(client: TestClient, path: str, page: str) -> tuple[str, dict[str, Any]]:
    response = client.post(path, headers={"X-CSRF-Token": page_csrf(client, page)})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["ticket"], body["options"]


def add_passkey(client: TestClient, authenticator: SoftAuthenticator, name: str) -> Any:
    ticket, options = passkey_options(
        client, "/account/security/passkeys/options", "/account/security"
    )
    assert options["authenticatorSelection"]["residentKey"] == "required"
    return post_form(
        client,
        "/account/security/passkeys",
        {"name": name, "ticket": ticket, "credential": authenticator.create(options)},
        form_page="/account/security",
    )


def signed_in(client: TestClient) -> bool:
    return client.get("/profile").status_code == 200


@pytest.fixture
def web(client_with: MakeClient) -> TestClient:
    """A browser on a vault whose public address is the test client's own origin."""
    return client_with(base_url=ORIGIN)


@pytest.fixture
def other(client_with: MakeClient) -> TestClient:
    return client_with(base_url=ORIGIN)


def age_step_up(db: Session, minutes: int = 11) -> None:
    """As if the session last proved its factor ``minutes`` ago."""
    db.execute(update(SessionFactorCheck).values(checked_at=utcnow() - timedelta(minutes=minutes)))
    db.flush()


# -- the authenticator app --------------------------------------------------------------------


def test_totp_turns_on_only_with_a_right_first_code(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(client)
    secret = start_totp(client)
    account = account_of(db, rt, email)
    wrong = totp.hotp(secret, totp.current_step() + 5)
    response = post_form(
        client, "/account/security/totp/confirm", {"code": wrong}, "/account/security/totp"
    )
    assert response.status_code == 400
    assert NOT_PROVED in response.text
    assert "Off." in client.get("/account/security").text
    response = post_form(
        client,
        "/account/security/totp/confirm",
        {"code": code_now(db, account.id, secret)},
        "/account/security/totp",
    )
    assert response.status_code == 200
    assert len(codes_on(response.text)) == 10
    assert "On." in client.get("/account/security").text


def test_the_totp_secret_and_the_recovery_codes_are_not_stored_in_clear(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email, secret, codes = turn_on_totp(client, db, rt)
    account = account_of(db, rt, email)
    row = db.scalars(select(TotpFactor).where(TotpFactor.account_id == account.id)).one()
    assert secret not in bytes(row.secret_ct)
    assert totp.base32(secret).encode() not in bytes(row.secret_ct)
    hashes = db.scalars(
        select(RecoveryCode.code_hash).where(RecoveryCode.account_id == account.id)
    ).all()
    assert len(hashes) == 10
    for code in codes:
        assert all(code.replace("-", "").encode() not in bytes(h) for h in hashes)
    # The codes are shown once: the security page tells how many are left, not which.
    page = client.get("/account/security").text
    assert "10 of 10 unused" in page
    assert not any(code in page for code in codes)


def test_sign_in_asks_for_the_code_after_the_password_and_grants_nothing_before(
    client: TestClient, db: Session, rt: Runtime, web: TestClient
) -> None:
    email, secret, _codes = turn_on_totp(client, db, rt)
    response = sign_in(web, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/signin/verify"
    assert rt.settings.cookie_name("vrm_session") not in web.cookies
    # The half-signed-in browser can open nothing.
    assert web.get("/profile").status_code == 303
    assert web.get("/account").status_code == 303
    assert web.get("/api/v1/profile").status_code == 401
    account = account_of(db, rt, email)
    response = post_form(web, "/signin/verify", {"code": code_now(db, account.id, secret)})
    assert response.status_code == 303
    assert response.headers["location"] == "/profile"
    assert signed_in(web)


def test_a_code_is_accepted_once(
    client: TestClient, db: Session, rt: Runtime, web: TestClient, other: TestClient
) -> None:
    email, secret, _codes = turn_on_totp(client, db, rt)
    account = account_of(db, rt, email)
    code = code_now(db, account.id, secret)
    sign_in(web, email)
    assert post_form(web, "/signin/verify", {"code": code}).status_code == 303
    sign_in(other, email)
    again = post_form(other, "/signin/verify", {"code": code})
    assert again.status_code == 400
    assert NOT_PROVED in again.text
    assert not signed_in(other)


def test_the_next_parameter_survives_the_second_step(
    client: TestClient, db: Session, rt: Runtime, web: TestClient
) -> None:
    email, secret, _codes = turn_on_totp(client, db, rt)
    response = post_form(web, "/signin", {"email": email, "password": PASSWORD, "next": "/intents"})
    assert response.headers["location"] == "/signin/verify?next=/intents"
    account = account_of(db, rt, email)
    token = page_csrf(web, "/signin/verify?next=/intents")
    response = web.post(
        "/signin/verify",
        data={"code": code_now(db, account.id, secret), "next": "/intents", "csrf_token": token},
    )
    assert response.headers["location"] == "/intents"


def test_a_wrong_password_looks_the_same_with_or_without_a_second_factor(
    client: TestClient, db: Session, rt: Runtime, web: TestClient, other: TestClient
) -> None:
    with_factor, _secret, _codes = turn_on_totp(client, db, rt)
    plain = sign_up(other)
    other.cookies.clear()
    first = sign_in(web, with_factor, "not the password at all")
    second = sign_in(other, plain, "not the password at all")
    assert first.status_code == second.status_code == 401
    assert "The email address or password is not right." in first.text
    assert "/signin/verify" not in first.text
    assert redacted(first.text, with_factor) == redacted(second.text, plain)
    assert rt.settings.cookie_name("vrm_signin_step") not in web.cookies


def test_too_many_wrong_codes_end_the_sign_in(
    client: TestClient, db: Session, rt: Runtime, client_with: MakeClient
) -> None:
    email, _secret, _codes = turn_on_totp(client, db, rt)
    web = client_with(base_url=ORIGIN, signin_max_failures_per_account=100)
    sign_in(web, email)
    for _ in range(4):
        response = post_form(web, "/signin/verify", {"code": "000000"})
        assert response.status_code == 400
        assert NOT_PROVED in response.text
    ended = post_form(web, "/signin/verify", {"code": "000000"})
    assert ended.status_code == 401
    assert "This sign-in has expired" in ended.text
    # Even the right code is too late now: the password must be given again.
    assert web.get("/signin/verify").status_code == 401


def test_codes_share_the_sign_in_throttle_with_passwords(
    client: TestClient, db: Session, rt: Runtime, client_with: MakeClient
) -> None:
    email, secret, _codes = turn_on_totp(client, db, rt)
    web = client_with(base_url=ORIGIN, signin_max_failures_per_account=3)
    sign_in(web, email)
    for _ in range(3):
        assert post_form(web, "/signin/verify", {"code": "999999"}).status_code == 400
    account = account_of(db, rt, email)
    throttled = post_form(web, "/signin/verify", {"code": code_now(db, account.id, secret)})
    assert throttled.status_code == 429
    assert "Too many failed sign-in attempts" in throttled.text
    assert not signed_in(web)
    # The password step is throttled too, right password or not.
    assert sign_in(web, email).status_code == 429


def test_a_half_finished_sign_in_expires(
    client: TestClient, db: Session, rt: Runtime, web: TestClient
) -> None:
    email, secret, _codes = turn_on_totp(client, db, rt)
    sign_in(web, email)
    token = page_csrf(web, "/signin/verify")
    db.execute(update(FactorChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.flush()
    account = account_of(db, rt, email)
    response = web.post(
        "/signin/verify", data={"code": code_now(db, account.id, secret), "csrf_token": token}
    )
    assert response.status_code == 401
    assert not signed_in(web)


# -- recovery codes ---------------------------------------------------------------------------


def test_a_recovery_code_signs_in_once(
    client: TestClient, db: Session, rt: Runtime, web: TestClient, other: TestClient
) -> None:
    email, _secret, codes = turn_on_totp(client, db, rt)
    sign_in(web, email)
    response = post_form(web, "/signin/verify", {"code": codes[3].upper().replace("-", " ")})
    assert response.status_code == 303
    assert signed_in(web)
    assert "9 of 10 unused" in web.get("/account/security").text
    sign_in(other, email)
    assert post_form(other, "/signin/verify", {"code": codes[3]}).status_code == 400


def test_new_recovery_codes_replace_the_old_ones(
    client: TestClient, db: Session, rt: Runtime, web: TestClient
) -> None:
    email, _secret, old = turn_on_totp(client, db, rt)
    response = post_form(client, "/account/security/recovery-codes", {}, "/account/security")
    assert response.status_code == 200
    new = codes_on(response.text)
    assert len(new) == 10 and not set(new) & set(old)
    sign_in(web, email)
    assert post_form(web, "/signin/verify", {"code": old[0]}).status_code == 400
    assert post_form(web, "/signin/verify", {"code": new[0]}).status_code == 303


# -- step-up ----------------------------------------------------------------------------------


def _email_changes(db: Session) -> int:
    """Address-change links issued (a change asked for and mailed)."""
    return len(db.scalars(select(AccountLink).where(AccountLink.purpose == EMAIL_CHANGE)).all())


def test_grave_steps_ask_for_the_factor_again_after_ten_minutes(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    _email, _secret, codes = turn_on_totp(client, db, rt)
    # Just proved (turning the app on): no question asked.
    assert client.get("/account/export").status_code == 200
    assert client.get("/account/erase").status_code == 200
    age_step_up(db)
    for path in ("/account/export", "/account/erase"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/account/confirm?next={path}"
    # A form posted now is not carried out.
    token = page_csrf(client, "/account/security")
    response = client.post(
        "/account/erase",
        data={"csrf_token": token, "password": PASSWORD, "confirmation": "erase my vault"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account/confirm?next=/account/erase"
    assert count(Account) == 1
    response = client.post("/account/security/totp/off", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"] == "/account/confirm?next=/account/security"
    assert count(TotpFactor) == 1
    # Nor is a change of the sign-in address.
    response = client.post(
        "/account/email",
        data={"csrf_token": token, "new_email": "new-address@example.org", "password": PASSWORD},
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/account/confirm")
    assert _email_changes(db) == 0
    # A wrong code does not count as a check; a right one does.
    wrong = post_form(client, "/account/confirm", {"code": "123456", "next": "/account/export"})
    assert wrong.status_code == 400
    assert client.get("/account/export").status_code == 303
    page = client.get("/account/confirm?next=/account/export")
    right = client.post(
        "/account/confirm",
        data={
            "code": codes[0],
            "next": "/account/export",
            "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
        },
    )
    assert right.status_code == 303
    assert right.headers["location"] == "/account/export"
    assert client.get("/account/export").status_code == 200
    token = page_csrf(client, "/account")
    response = client.post(
        "/account/email",
        data={"csrf_token": token, "new_email": "new-address@example.org", "password": PASSWORD},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account"
    assert _email_changes(db) == 1


def test_without_a_second_factor_nothing_asks_for_one(client: TestClient) -> None:
    sign_up(client)
    assert client.get("/account/export").status_code == 200
    assert client.get("/account/erase").status_code == 200
    assert client.get("/account").status_code == 200


def test_turning_the_app_off_removes_it_and_its_recovery_codes(
    client: TestClient, db: Session, rt: Runtime, web: TestClient, count: Count
) -> None:
    email, _secret, _codes = turn_on_totp(client, db, rt)
    response = post_form(client, "/account/security/totp/off", {}, "/account/security")
    assert response.status_code == 303
    assert count(TotpFactor) == 0
    assert count(RecoveryCode) == 0
    response = sign_in(web, email)
    assert response.headers["location"] == "/profile"


def test_security_forms_need_the_csrf_token(client: TestClient, count: Count) -> None:
    sign_up(client)
    assert client.post("/account/security/totp").status_code == 403
    assert client.post("/account/security/passkeys/options").status_code == 403
    assert client.post("/signin/passkey/options").status_code == 403
    assert count(TotpFactor) == 0
    assert count(FactorChallenge) == 0


# -- passkeys ---------------------------------------------------------------------------------


def test_passkeys_register_with_names_and_sign_in_without_a_password(
    web: TestClient, other: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up(web)
    device = SoftAuthenticator(ORIGIN)
    first = add_passkey(web, device, "Laptop of mine")
    # The first factor comes with recovery codes, shown once.
    assert first.status_code == 200
    assert len(codes_on(first.text)) == 10
    age_step_up(db)
    # Adding another factor is a change to the sign-in: the factor first.
    ticket_page = web.post(
        "/account/security/passkeys/options",
        headers={"X-CSRF-Token": page_csrf(web, "/account/security")},
    )
    assert ticket_page.status_code == 403
    assert ticket_page.json()["error"] == "step_up_required"
    ticket, options = passkey_options(web, "/account/confirm/passkey-options", "/account/confirm")
    confirmed = post_form(
        web,
        "/account/confirm",
        {"ticket": ticket, "credential": device.get(options), "next": "/account/security"},
        form_page="/account/confirm",
    )
    assert confirmed.headers["location"] == "/account/security"
    second = add_passkey(web, SoftAuthenticator(ORIGIN), "Phone")
    assert second.status_code == 303
    page = web.get("/account/security").text
    assert "Laptop of mine" in page and "Phone" in page
    names = db.scalars(select(Passkey.name_ct)).all()
    assert len(names) == 2 and all(b"Laptop" not in bytes(n) for n in names)
    # Sign in elsewhere with the passkey alone.
    ticket, options = passkey_options(other, "/signin/passkey/options", "/signin")
    assert options["allowCredentials"] == [] and options["userVerification"] == "required"
    response = post_form(
        other,
        "/signin/passkey",
        {"ticket": ticket, "credential": device.get(options)},
        form_page="/signin",
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/profile"
    assert signed_in(other)
    assert account_of(db, rt, email).id == db.scalars(select(AccountSession.account_id)).first()


def test_a_passkey_answer_works_once(web: TestClient, other: TestClient, db: Session) -> None:
    sign_up(web)
    device = SoftAuthenticator(ORIGIN)
    add_passkey(web, device, "Key")
    ticket, options = passkey_options(other, "/signin/passkey/options", "/signin")
    answer = device.get(options)
    assert (
        post_form(
            other, "/signin/passkey", {"ticket": ticket, "credential": answer}, form_page="/signin"
        ).status_code
        == 303
    )
    other.cookies.clear()
    replay = post_form(
        other, "/signin/passkey", {"ticket": ticket, "credential": answer}, form_page="/signin"
    )
    assert replay.status_code == 400
    assert not signed_in(other)


def test_passwordless_sign_in_needs_a_verified_user(web: TestClient, other: TestClient) -> None:
    sign_up(web)
    device = SoftAuthenticator(ORIGIN)
    add_passkey(web, device, "Key")
    device.verifies_user = False
    ticket, options = passkey_options(other, "/signin/passkey/options", "/signin")
    response = post_form(
        other,
        "/signin/passkey",
        {"ticket": ticket, "credential": device.get(options)},
        form_page="/signin",
    )
    assert response.status_code == 400
    assert not signed_in(other)


def test_a_passkey_is_a_second_factor_and_only_for_its_own_account(
    web: TestClient, other: TestClient, client_with: MakeClient, db: Session
) -> None:
    email = sign_up(web)
    mine = SoftAuthenticator(ORIGIN)
    add_passkey(web, mine, "Mine")
    stranger = client_with(base_url=ORIGIN)
    sign_up(stranger)
    theirs = SoftAuthenticator(ORIGIN)
    add_passkey(stranger, theirs, "Theirs")
    assert sign_in(other, email).headers["location"] == "/signin/verify"
    ticket, options = passkey_options(other, "/signin/verify/passkey-options", "/signin/verify")
    refused = post_form(
        other,
        "/signin/verify",
        {"ticket": ticket, "credential": theirs.get({**options, "allowCredentials": []})},
    )
    assert refused.status_code == 400
    assert not signed_in(other)
    ticket, options = passkey_options(other, "/signin/verify/passkey-options", "/signin/verify")
    response = post_form(
        other, "/signin/verify", {"ticket": ticket, "credential": mine.get(options)}
    )
    assert response.status_code == 303
    assert signed_in(other)


def test_removing_the_last_passkey_turns_the_second_factor_off(
    web: TestClient, other: TestClient, db: Session, count: Count
) -> None:
    email = sign_up(web)
    add_passkey(web, SoftAuthenticator(ORIGIN), "Only one")
    passkey_id = db.scalars(select(Passkey.id)).one()
    response = post_form(
        web, f"/account/security/passkeys/{passkey_id}/remove", {}, "/account/security"
    )
    assert response.status_code == 303
    assert count(Passkey) == 0 and count(RecoveryCode) == 0
    assert sign_in(other, email).headers["location"] == "/profile"


def test_erasure_leaves_no_second_factor_behind(
    client: TestClient, db: Session, rt: Runtime, count: Count
) -> None:
    _email, _secret, _codes = turn_on_totp(client, db, rt)
    response = post_form(
        client,
        "/account/erase",
        {"password": PASSWORD, "confirmation": "erase my vault"},
        form_page="/account/erase",
    )
    assert response.status_code == 200, response.text
    for model in (TotpFactor, RecoveryCode, Passkey, SessionFactorCheck):
        assert count(model) == 0
