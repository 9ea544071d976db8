"""The "new sign-in" security notice: a browser an account has not signed in from before (no
device cookie the account knows) gets it, by mail and in the notices list; a browser it knows
does not. Read from the outbox as the worker would send it."""

from __future__ import annotations

import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.authenticator import SoftAuthenticator
from tests.conftest import test_settings as make_settings
from tests.helpers import PASSWORD, post_form, sign_in, sign_up, unique_email
from tests.mail import queued, text_of
from tests.web.conftest import MakeClient
from tests.web.test_second_factor import ORIGIN, add_passkey, passkey_options, turn_on_totp
from vault.accounts.models import Account, KnownDevice
from vault.crypto import new_token
from vault.db import make_engine
from vault.devices import DEVICE_COOKIE, browser_label, signed_in_from
from vault.factors import totp
from vault.mail.models import Notice
from vault.migrate import upgrade
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def new_device_mail(rt: Runtime, email: str) -> list[EmailMessage]:
    return queued(rt, email, "new_device")


def sign_out(client: TestClient) -> None:
    assert post_form(client, "/signout", {}, form_page="/account").status_code == 303


def test_a_new_browser_is_told_once_and_a_known_one_not(
    client_with: MakeClient, rt: Runtime, db: Session
) -> None:
    laptop = client_with()
    laptop.headers["user-agent"] = FIREFOX
    email = sign_up(laptop)  # the first sign-in, from a browser the account never saw

    [first] = new_device_mail(rt, email)
    assert first["Subject"] == "New sign-in to your VRM Vault"
    body = text_of(first)
    assert "a browser it had not seen before. (Firefox on Linux, " in body
    assert "rv:133.0" not in body and "Gecko" not in body  # a label, not the user agent
    assert "cannot be switched off" in body
    cookie = laptop.cookies.get(rt.settings.cookie_name(DEVICE_COOKIE))
    assert cookie and len(cookie) == 43
    # Only a keyed hash of the cookie is stored; nothing of the browser.
    [row] = db.scalars(select(KnownDevice)).all()
    assert cookie.encode() not in bytes(row.device_hash)
    assert "/notices" in laptop.get("/profile").text
    notices = laptop.get("/notices").text
    assert "New sign-in to your VRM Vault" in notices

    sign_out(laptop)
    again = sign_in(laptop, email)
    assert again.status_code == 303
    assert len(new_device_mail(rt, email)) == 1  # the same browser: nothing new
    [set_device] = [
        c for c in again.headers.get_list("set-cookie") if c.startswith(f"{DEVICE_COOKIE}=")
    ]
    assert f"{DEVICE_COOKIE}={cookie};" in set_device  # kept, for 400 days more
    assert "HttpOnly" in set_device and "Max-Age=34560000" in set_device
    assert "samesite=lax" in set_device.lower()

    phone = client_with()
    phone.headers["user-agent"] = CHROME
    assert sign_in(phone, email).status_code == 303
    mails = new_device_mail(rt, email)
    assert len(mails) == 2
    assert "(Chrome on Windows, " in text_of(mails[-1])

    # A cookie of another account's device, or a made-up one, is no known device here.
    sign_out(phone)
    other = sign_up(phone)
    assert len(new_device_mail(rt, other)) == 1
    laptop.cookies.set(rt.settings.cookie_name(DEVICE_COOKIE), "x" * 43)
    sign_out(laptop)
    assert sign_in(laptop, email).status_code == 303
    assert len(new_device_mail(rt, email)) == 3


def test_a_sign_in_with_a_second_factor_tells_only_once_it_is_finished(
    client_with: MakeClient, rt: Runtime, db: Session
) -> None:
    web = client_with()
    email, secret, _codes = turn_on_totp(web, db, rt)
    other = client_with()
    assert sign_in(other, email).status_code == 303  # to the second step
    assert len(new_device_mail(rt, email)) == 1  # the password alone is no sign-in
    finished = post_form(
        other, "/signin/verify", {"code": totp.hotp(secret, totp.current_step() + 1)}
    )
    assert finished.status_code == 303, finished.text
    assert len(new_device_mail(rt, email)) == 2


def test_passkey_sign_in_from_a_new_browser_is_told(client_with: MakeClient, rt: Runtime) -> None:
    web = client_with(base_url=ORIGIN)
    email = sign_up(web)
    device = SoftAuthenticator(ORIGIN)
    add_passkey(web, device, "Key")
    sign_out(web)

    def passkey_sign_in(client: TestClient) -> None:
        ticket, options = passkey_options(client, "/signin/passkey/options", "/signin")
        response = post_form(
            client,
            "/signin/passkey",
            {"ticket": ticket, "credential": device.get(options)},
            form_page="/signin",
        )
        assert response.status_code == 303, response.text

    passkey_sign_in(web)
    assert len(new_device_mail(rt, email)) == 1  # the browser it was signed up in
    other = client_with(base_url=ORIGIN)
    passkey_sign_in(other)
    assert len(new_device_mail(rt, email)) == 2


def test_browser_labels_are_coarse() -> None:
    assert browser_label(FIREFOX) == "Firefox on Linux"
    assert browser_label(CHROME) == "Chrome on Windows"
    assert browser_label("") == "A browser"
    assert browser_label("curl/8.5.0") == "A browser"
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
    )
    assert browser_label(iphone) == "Safari on iOS"


def test_two_sign_ins_of_one_new_browser_at_once_record_it_once(
    backend: str, new_database: Any, tmp_path: Path
) -> None:
    """On a database whose writes commit for real: the second sign-in waits for the first,
    then finds the device known (or, on PostgreSQL, its insert collides): no error, no
    second notice."""
    engine = make_engine(new_database(backend))
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    rt = Runtime.from_settings(make_settings(tmp_path / "keys", url), engine=engine)
    try:
        with rt.sessions() as db, db.begin():
            account_id = new_account(db, rt, unique_email(), PASSWORD).id
        token = new_token(32)
        first = rt.sessions()
        first.begin()
        signed_in_from(first, rt, first.get_one(Account, account_id), token, "")
        got: dict[str, str] = {}

        def second() -> None:
            with rt.sessions() as db, db.begin():
                got["token"] = signed_in_from(db, rt, db.get_one(Account, account_id), token, "")

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive()  # waiting for the first sign-in's transaction
        first.commit()
        first.close()
        thread.join(15)
        assert got == {"token": token}
        with rt.sessions() as db:
            assert db.scalar(select(func.count()).select_from(KnownDevice)) == 1
            kinds = db.scalars(select(Notice.kind)).all()
            assert kinds == ["new_device"]
    finally:
        engine.dispose()
