"""The email channel and what it carries: confirmed sign-up, password recovery, address change,
notices. Mail is sent through a real SMTP server in the test process (aiosmtpd) or read from
the outbox; tests assert what the recipient would see."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent.grants.jobs import WARN_EXPIRING_GRANTS
from consent.grants.models import Grant
from intents.market import Market, Seller
from tests.consent.factories import bearer, connect, individual, make_app
from tests.helpers import PASSWORD, confirm_address, post_form, sign_in, sign_up, unique_email
from tests.intents.factories import make_intent, market_vendor, offer_body
from tests.mail import (
    SmtpServer,
    html_of,
    last_queued,
    link_to,
    queued,
    text_of,
    token_of,
)
from tests.web.conftest import MakeClient, runtime_with
from vault.accounts.models import Account, AccountSession, AccountStatus
from vault.accounts.service import email_index
from vault.base import utcnow
from vault.mail.delivery import MAX_ATTEMPTS, deliver_due
from vault.mail.models import AccountLink, MailMessage, Notice
from vault.mail.notices import queue_security_notice, send_due_notices
from vault.profile.service import ProfileService
from vault.runtime import Runtime

NEW_PASSWORD = "purple elephant tap dancing"


def account_of(db: Session, rt: Runtime, email: str) -> Account:
    db.expire_all()
    return db.scalars(select(Account).where(Account.email_index == email_index(rt, email))).one()


def path_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[1].join(["/", ""])


def ask_sign_up(client: TestClient, email: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return post_form(
        client, "/signup", {"email": email, "password": password, "password_confirm": password}
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the channel ----------------------------------------------------------------------------


def test_sign_up_mail_arrives_through_smtp_with_text_html_and_a_working_link(
    client_with: MakeClient,
    second_client: TestClient,
    rt: Runtime,
    db: Session,
    smtp_server: SmtpServer,
) -> None:
    email = unique_email()
    client = client_with(mail_from="Vault <v@x.example>")
    assert ask_sign_up(client, email).status_code == 200

    outcomes = deliver_due(runtime_with(rt, smtp_url=smtp_server.url))

    assert [o.result for o in outcomes] == ["sent"]
    [message] = smtp_server.inbox.to(email)
    assert smtp_server.inbox.envelopes == [("v@x.example", [email])]
    assert message["From"] == "Vault <v@x.example>"
    assert message["Subject"] == "Confirm your email address for VRM Vault"
    assert message["List-Unsubscribe"] is None  # not a notice: nothing to unsubscribe from
    link = link_to(message, "/signup/confirm")
    assert link.startswith(f"{rt.settings.base_url}/signup/confirm?t=")
    assert f'href="{link}"' in html_of(message)
    assert "24 hours" in text_of(message)
    # Sent: the content (address, link) is gone from the database.
    row = db.scalars(select(MailMessage)).one()
    assert (row.sent_at is not None, row.message_ct) == (True, None)
    assert sign_in(second_client, email).status_code == 401
    page = path_of(link)
    assert client.get(page).status_code == 200  # a page with a button: a GET uses nothing
    used = post_form(client, "/signup/confirm", {"t": token_of(link)}, form_page=page)
    assert used.status_code == 303
    assert sign_in(second_client, email).status_code == 303
    # Nothing sent twice; the first sign-in's new-device notice goes out.
    [notice] = deliver_due(runtime_with(rt, smtp_url=smtp_server.url))
    assert notice.result == "sent"
    assert [m["Subject"] for m in smtp_server.inbox.to(email)] == [
        "Confirm your email address for VRM Vault",
        "New sign-in to your VRM Vault",
    ]


def test_a_mail_server_that_is_down_loses_nothing(
    client: TestClient, rt: Runtime, db: Session, smtp_server: SmtpServer
) -> None:
    email = unique_email()
    ask_sign_up(client, email)
    down = runtime_with(rt, smtp_url=f"smtp://127.0.0.1:{closed_port()}?tls=none")

    [outcome] = deliver_due(down)

    assert (outcome.result, outcome.attempt) == ("retrying", 1)
    assert outcome.error and email not in outcome.line()
    row = db.scalars(select(MailMessage)).one()
    db.refresh(row)
    assert row.message_ct is not None and row.sent_at is None
    assert row.next_attempt_at > utcnow()
    assert deliver_due(down) == []  # backing off: not due yet

    smtp_server.inbox.refuse = True  # up, but answering 451
    db.execute(update(MailMessage).values(next_attempt_at=utcnow()))
    assert [o.result for o in deliver_due(runtime_with(rt, smtp_url=smtp_server.url))] == [
        "retrying"
    ]
    smtp_server.inbox.refuse = False
    db.execute(update(MailMessage).values(next_attempt_at=utcnow()))
    [sent] = deliver_due(runtime_with(rt, smtp_url=smtp_server.url))
    assert (sent.result, sent.attempt) == ("sent", 3)
    assert link_to(smtp_server.inbox.to(email)[0], "/signup/confirm")


def test_a_message_is_given_up_after_its_last_attempt_and_its_content_dropped(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    ask_sign_up(client, unique_email())
    db.execute(update(MailMessage).values(attempts=MAX_ATTEMPTS - 1))
    [outcome] = deliver_due(runtime_with(rt, smtp_url=f"smtp://127.0.0.1:{closed_port()}?tls=none"))
    assert outcome.result == "abandoned"
    row = db.scalars(select(MailMessage)).one()
    db.refresh(row)
    assert row.abandoned_at is not None and row.message_ct is None


def test_the_queued_message_is_encrypted_and_names_no_address_in_clear(
    client: TestClient, db: Session
) -> None:
    email = unique_email()
    ask_sign_up(client, email)
    row = db.scalars(select(MailMessage)).one()
    assert row.message_ct is not None
    assert email.encode() not in row.message_ct
    assert b"/signup/confirm" not in row.message_ct


def test_development_without_smtp_writes_eml_files_listed_on_a_page(
    client: TestClient, client_with: MakeClient, rt: Runtime, tmp_path: Path
) -> None:
    email = unique_email()
    ask_sign_up(client, email)
    deliver_due(runtime_with(rt, mail_dir=tmp_path / "mail"))

    [eml] = list((tmp_path / "mail").glob("*.eml"))
    assert eml.stat().st_mode & 0o777 == 0o600
    dev = client_with(mail_dir=tmp_path / "mail")
    listing = dev.get("/dev/mail")
    assert listing.status_code == 200
    assert "Confirm your email address for VRM Vault" in listing.text
    assert email in listing.text
    shown = dev.get(f"/dev/mail/{eml.name}")
    assert shown.status_code == 200
    assert f'href="{rt.settings.base_url}/signup/confirm?t=' in shown.text
    assert dev.get("/dev/mail/..%2F..%2Fetc%2Fpasswd").status_code == 404
    with_smtp = client_with(smtp_url="smtp://mail.example:587")
    assert with_smtp.get("/dev/mail").status_code == 404


def test_no_message_holds_a_profile_value(client: TestClient, rt: Runtime, db: Session) -> None:
    email = sign_up(client)
    account = account_of(db, rt, email)
    ProfileService(db, rt).set_field(account, "given_name", "Zephyrine")
    post_form(client, "/password/forgot", {"email": email})
    connect(db, rt, account, make_app(db), ["given_name"])
    messages = queued(rt, email)
    assert {m["Subject"] for m in messages} >= {
        "Set a new password for VRM Vault",
        "A vendor is now connected to your VRM Vault",
    }
    for message in messages:
        assert "Zephyrine" not in text_of(message) + html_of(message)


# -- sign-up ----------------------------------------------------------------------------------


def test_a_confirmation_link_works_once(client: TestClient, rt: Runtime) -> None:
    email = unique_email()
    ask_sign_up(client, email)
    link = link_to(last_queued(rt, email, "confirm_signup"), "/signup/confirm")
    first = post_form(client, "/signup/confirm", {"t": token_of(link)}, form_page=path_of(link))
    again = post_form(client, "/signup/confirm", {"t": token_of(link)}, form_page="/signin")
    assert first.status_code == 303
    assert again.status_code == 400
    assert "expired or was already used" in again.text
    assert client.get(path_of(link)).status_code == 400


def test_an_expired_confirmation_link_is_refused(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session
) -> None:
    email = unique_email()
    ask_sign_up(client, email)
    link = link_to(last_queued(rt, email, "confirm_signup"), "/signup/confirm")
    db.execute(update(AccountLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = post_form(client, "/signup/confirm", {"t": token_of(link)}, form_page="/signin")
    assert response.status_code == 400
    assert sign_in(second_client, email).status_code == 401


def test_signing_up_again_unconfirmed_resends_the_link_and_keeps_the_first_password(
    client: TestClient, second_client: TestClient, rt: Runtime, count
) -> None:  # type: ignore[no-untyped-def]
    email = unique_email()
    ask_sign_up(client, email)
    again = ask_sign_up(second_client, email, NEW_PASSWORD)
    assert again.status_code == 200
    assert count(Account) == 1
    resent = last_queued(rt, email, "confirm_signup")
    assert "The password chosen first stays" in text_of(resent)
    confirm_address(client, email)
    assert sign_in(second_client, email, NEW_PASSWORD).status_code == 401
    assert sign_in(second_client, email, PASSWORD).status_code == 303


def test_vendors_see_the_address_verified_only_once_it_was_confirmed(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    account = individual(client, db, rt)
    shop = make_app(db)
    headers = bearer(db, rt, shop, connect(db, rt, account, shop, ["email"]))
    assert client.get("/oauth/userinfo", headers=headers).json()["email_verified"] is True
    # An account from before confirmation existed: its address was never confirmed.
    db.execute(update(Account).where(Account.id == account.id).values(email_confirmed_at=None))
    db.commit()
    assert client.get("/oauth/userinfo", headers=headers).json()["email_verified"] is False


# -- forgot password --------------------------------------------------------------------------


def test_forgot_password_answers_the_same_for_unknown_addresses(
    client: TestClient, second_client: TestClient, rt: Runtime
) -> None:
    email = sign_up(client)
    known = post_form(second_client, "/password/forgot", {"email": email})
    unknown = post_form(second_client, "/password/forgot", {"email": unique_email()})
    assert known.status_code == unknown.status_code == 200
    strip = lambda html: html.split('name="csrf_token"')[0]  # noqa: E731
    assert strip(known.text) == strip(unknown.text)
    assert "If this address has a vault, we sent it a link" in known.text
    assert len(queued(rt, kind="reset_password")) == 1


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session, smtp_server: SmtpServer
) -> None:
    email = sign_up(client)  # client stays signed in
    post_form(second_client, "/password/forgot", {"email": email})
    deliver_due(runtime_with(rt, smtp_url=smtp_server.url))
    [mail] = [m for m in smtp_server.inbox.to(email) if "password" in m["Subject"]]
    assert mail["Subject"] == "Set a new password for VRM Vault"
    assert "within 30 minutes" in text_of(mail)
    link = link_to(mail, "/password/reset")
    page = path_of(link)

    weak = post_form(
        second_client,
        "/password/reset",
        {"t": token_of(link), "new_password": "short", "new_password_confirm": "short"},
        form_page=page,
    )
    assert weak.status_code == 400  # and the link is not spent
    done = post_form(
        second_client,
        "/password/reset",
        {"t": token_of(link), "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
        form_page=page,
    )
    assert done.status_code == 303
    assert client.get("/profile").status_code == 303  # the old session is over
    assert db.scalars(select(AccountSession)).all() == []
    assert sign_in(second_client, email, PASSWORD).status_code == 401
    assert sign_in(second_client, email, NEW_PASSWORD).status_code == 303
    again = post_form(
        client,
        "/password/reset",
        {"t": token_of(link), "new_password": PASSWORD, "new_password_confirm": PASSWORD},
        form_page="/signin",
    )
    assert again.status_code == 400
    notice = last_queued(rt, email, "password_changed")
    assert notice["Subject"] == "Your VRM Vault password was changed"
    assert "cannot be switched off" in text_of(notice)
    assert notice["List-Unsubscribe"] is None


def test_a_reset_link_expires_after_30_minutes(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session
) -> None:
    email = sign_up(client)
    post_form(second_client, "/password/forgot", {"email": email})
    link = link_to(last_queued(rt, email, "reset_password"), "/password/reset")
    row = db.scalars(select(AccountLink).where(AccountLink.purpose == "reset_password")).one()
    assert row.expires_at - row.created_at == timedelta(minutes=30)
    db.execute(update(AccountLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert second_client.get(path_of(link)).status_code == 400


def test_reset_requests_are_throttled_per_address_and_per_client(
    client: TestClient, client_with: MakeClient, rt: Runtime
) -> None:
    email = sign_up(client)
    other = client_with()
    for _ in range(3):
        assert post_form(other, "/password/forgot", {"email": email}).status_code == 200
    assert post_form(other, "/password/forgot", {"email": email}).status_code == 429
    assert len(queued(rt, kind="reset_password")) == 3
    for _ in range(7):  # 10 per client, whatever the addresses
        assert post_form(other, "/password/forgot", {"email": unique_email()}).status_code == 200
    refused = post_form(other, "/password/forgot", {"email": unique_email()})
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers


# -- email change -----------------------------------------------------------------------------


def test_changing_the_address_confirms_the_new_one_and_tells_the_old_one(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session
) -> None:
    old = sign_up(client)
    new = unique_email("moved")
    wrong = post_form(
        client,
        "/account/email",
        {"new_email": new, "password": "nope nope nope"},
        form_page="/account",
    )
    assert wrong.status_code == 400
    assert "The password is not right." in wrong.text
    asked = post_form(
        client, "/account/email", {"new_email": new, "password": PASSWORD}, form_page="/account"
    )
    assert asked.status_code == 303
    assert sign_in(second_client, new).status_code == 401  # not before it is confirmed
    mail = last_queued(rt, new, "change_email")
    assert mail["Subject"] == "Confirm your new email address for VRM Vault"
    link = link_to(mail, "/account/email/confirm")
    done = post_form(
        second_client, "/account/email/confirm", {"t": token_of(link)}, form_page=path_of(link)
    )
    assert done.status_code == 303
    assert sign_in(second_client, old).status_code == 401
    assert sign_in(second_client, new).status_code == 303
    told = last_queued(rt, old, "email_changed")
    assert told["Subject"] == "Your VRM Vault sign-in address was changed"
    assert new not in text_of(told) + html_of(told)
    assert ProfileService(db, rt).email_of(account_of(db, rt, new).id) == new


def test_changing_to_a_taken_address_answers_the_same_and_tells_its_owner(
    client: TestClient, second_client: TestClient, rt: Runtime
) -> None:
    taken = sign_up(second_client)
    sign_up(client)
    asked = post_form(
        client, "/account/email", {"new_email": taken, "password": PASSWORD}, form_page="/account"
    )
    assert asked.status_code == 303
    assert queued(rt, kind="change_email") == []
    assert (
        "Someone tried to use your address" in last_queued(rt, taken, "address_in_use")["Subject"]
    )


# -- notices ----------------------------------------------------------------------------------


def test_a_new_connection_is_listed_and_mailed_with_a_one_click_unsubscribe(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session, smtp_server: SmtpServer
) -> None:
    account = individual(client, db, rt)
    email = ProfileService(db, rt).email_of(account.id)
    connect(db, rt, account, make_app(db), ["email"])
    deliver_due(runtime_with(rt, smtp_url=smtp_server.url))
    [mail] = [m for m in smtp_server.inbox.to(email) if "connected" in m["Subject"]]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = mail["List-Unsubscribe"].strip("<>")
    assert unsubscribe in text_of(mail)
    page = client.get("/notices")
    # The connection, and the first sign-in (from a browser the account had not seen).
    assert "2 unread notices" in page.text
    assert "A vendor was connected to your vault" in page.text

    # RFC 8058: the mail client POSTs, without cookies or CSRF token.
    one_click = second_client.post(path_of(unsubscribe), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert "you will no longer get emails" in one_click.text
    connect(db, rt, account, make_app(db, name="Another Shop"), ["email"])
    assert [m for m in queued(rt, email) if "connected" in m["Subject"]] == []
    assert "3 unread notices" in client.get("/notices").text  # still listed
    assert second_client.post("/notices/unsubscribe?t=forged.x.1.y").status_code == 400


def test_the_account_page_switches_notices_and_security_notices_stay(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    account = individual(client, db, rt)
    email = ProfileService(db, rt).email_of(account.id)
    page = client.get("/account").text
    assert (
        'id="notice-new_connection" name="email" type="checkbox" value="new_connection" checked'
        in page
    )
    saved = post_form(client, "/account/notices", {"email": ["new_offer"]}, form_page="/account")
    assert saved.status_code == 303
    assert 'value="new_connection" checked' not in client.get("/account").text
    connect(db, rt, account, make_app(db), ["email"])
    assert [m for m in queued(rt, email) if "connected" in m["Subject"]] == []
    changed = post_form(
        client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
        form_page="/account",
    )
    assert changed.status_code == 303
    assert last_queued(rt, email, "password_changed")
    read = post_form(client, "/notices/read", {}, form_page="/notices")
    assert read.status_code == 303
    assert "Nothing unread." in client.get("/notices").text


def test_offers_on_one_intent_are_mailed_at_most_once_an_hour(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    account = individual(client, db, rt)
    email = ProfileService(db, rt).email_of(account.id)
    intent = make_intent(db, rt, account)
    shops = [market_vendor(db, rt, name=f"Shop {n}") for n in range(3)]
    Market(db, rt, Seller.of(db, shops[0].app)).make_offer(intent.id, offer_body())
    Market(db, rt, Seller.of(db, shops[1].app)).make_offer(intent.id, offer_body("800.00"))
    mailed_at = utcnow()
    assert send_due_notices(db, rt, now=mailed_at) == 1
    [first] = queued(rt, email, "new_offer")
    assert first["Subject"] == "2 new offers on one of your intents"
    assert link_to(first, f"/intents/{intent.id}")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    Market(db, rt, Seller.of(db, shops[2].app)).make_offer(intent.id, offer_body("790.00"))
    assert send_due_notices(db, rt, now=mailed_at + timedelta(minutes=59)) == 0
    assert send_due_notices(db, rt, now=mailed_at + timedelta(minutes=61)) == 1
    assert len(queued(rt, email, "new_offer")) == 2


def test_a_connection_ending_within_a_week_is_told_once(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    account = individual(client, db, rt)
    email = ProfileService(db, rt).email_of(account.id)
    grant = connect(db, rt, account, make_app(db), ["email"], duration="30d")
    assert WARN_EXPIRING_GRANTS.run(db, rt) is None  # a month away
    db.execute(
        update(Grant).where(Grant.id == grant.id).values(expires_at=utcnow() + timedelta(days=6))
    )
    assert WARN_EXPIRING_GRANTS.run(db, rt) == "1 people told a connection ends within a week"
    assert WARN_EXPIRING_GRANTS.run(db, rt) is None
    mail = last_queued(rt, email, "connection_expiring")
    assert mail["Subject"] == "A connection to your VRM Vault ends in a week"
    assert db.scalars(select(Notice).where(Notice.kind == "connection_expiring")).one()


@pytest.mark.parametrize("status", [AccountStatus.UNCONFIRMED])
def test_a_reset_link_also_confirms_an_unconfirmed_address(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session, status: str
) -> None:
    email = unique_email()
    ask_sign_up(client, email)
    assert account_of(db, rt, email).status == status
    post_form(second_client, "/password/forgot", {"email": email})
    link = link_to(last_queued(rt, email, "reset_password"), "/password/reset")
    post_form(
        second_client,
        "/password/reset",
        {"t": token_of(link), "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
        form_page=path_of(link),
    )
    assert sign_in(second_client, email, NEW_PASSWORD).status_code == 303


def test_smtp_without_starttls_on_offer_sends_nothing_in_clear(
    client: TestClient, rt: Runtime, smtp_server: SmtpServer
) -> None:
    ask_sign_up(client, unique_email())
    plain_catcher = smtp_server.url.removesuffix("?tls=none")  # smtp:// requires STARTTLS
    [outcome] = deliver_due(runtime_with(rt, smtp_url=plain_catcher))
    assert (outcome.result, outcome.error) == ("retrying", "the server does not offer STARTTLS")
    assert smtp_server.inbox.messages == []


def test_a_security_notice_from_other_code_is_listed_and_mailed(
    client: TestClient, rt: Runtime, db: Session
) -> None:

    account = individual(client, db, rt)
    email = ProfileService(db, rt).email_of(account.id)
    queue_security_notice(db, rt, account.id, "factor_added")
    mail = last_queued(rt, email, "factor_added")
    assert mail["Subject"] == "A second factor was added to your VRM Vault"
    assert mail["List-Unsubscribe"] is None
    assert "A second factor was added to your VRM Vault" in client.get("/notices").text
    with pytest.raises(ValueError, match="not a security notice"):
        queue_security_notice(db, rt, account.id, "new_offer")
