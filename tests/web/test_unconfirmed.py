"""Accounts whose address was never confirmed are erased once their link expired, with all they
hold, by a job ``vrm worker`` runs."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, post_form, sign_up, unique_email
from vault.accounts.models import Account
from vault.accounts.service import email_index
from vault.base import utcnow
from vault.keystore import DataKeyRecord
from vault.mail.models import AccountLink, MailMessage
from vault.profile.models import ProfileField
from vault.runtime import Runtime
from vrm.wiring import JOBS, PURGE_UNCONFIRMED


def ask(client: TestClient, email: str) -> None:
    response = post_form(
        client, "/signup", {"email": email, "password": PASSWORD, "password_confirm": PASSWORD}
    )
    assert response.status_code == 200 and "Check your email" in response.text


def account_id(db: Session, rt: Runtime, email: str):  # type: ignore[no-untyped-def]
    db.expire_all()
    return db.scalar(select(Account.id).where(Account.email_index == email_index(rt, email)))


def age(db: Session, rt: Runtime, email: str, hours: float) -> None:
    """As if ``email`` signed up, and its links (valid for 24 hours) were sent, ``hours``
    ago."""
    found = account_id(db, rt, email)
    past = timedelta(hours=hours)
    db.execute(update(Account).where(Account.id == found).values(created_at=utcnow() - past))
    db.execute(
        update(AccountLink)
        .where(AccountLink.account_id == found)
        .values(created_at=utcnow() - past, expires_at=utcnow() - past + timedelta(hours=24))
    )
    db.commit()


def rows(db: Session, model: type, account) -> int:  # type: ignore[no-untyped-def,type-arg]
    column = getattr(model, "account_id", None) or model.owner_id  # type: ignore[attr-defined]
    return int(db.scalar(select(func.count()).select_from(model).where(column == account)) or 0)


def test_an_account_never_confirmed_is_erased_after_its_link_expired(
    client: TestClient, second_client: TestClient, rt: Runtime, db: Session
) -> None:
    assert PURGE_UNCONFIRMED in JOBS
    stale, fresh, confirmed = unique_email("stale"), unique_email("fresh"), unique_email("ok")
    ask(client, stale)
    ask(client, fresh)
    sign_up(second_client, confirmed)
    age(db, rt, confirmed, 30)
    gone = account_id(db, rt, stale)
    assert rows(db, ProfileField, gone) == 1 and rows(db, MailMessage, gone) == 1
    age(db, rt, stale, 23)
    assert PURGE_UNCONFIRMED.run(db, rt) is None  # its link still works for an hour
    age(db, rt, stale, 25)

    said = PURGE_UNCONFIRMED.run(db, rt)
    db.commit()

    assert said == "erased 1 account(s) never confirmed"
    assert account_id(db, rt, stale) is None
    for model in (ProfileField, MailMessage, AccountLink):
        assert rows(db, model, gone) == 0, model
    assert rows(db, DataKeyRecord, gone) == 0  # its data key destroyed
    assert account_id(db, rt, fresh) is not None
    assert account_id(db, rt, confirmed) is not None
    assert second_client.get("/profile").status_code == 200  # still signed in
    # The address is free again: signing up starts afresh.
    sign_up(client, stale)


def test_asking_again_keeps_the_account_while_the_new_link_works(
    client: TestClient, rt: Runtime, db: Session
) -> None:
    email = unique_email()
    ask(client, email)
    age(db, rt, email, 30)
    ask(client, email)  # the link again, valid for 24 hours more
    assert PURGE_UNCONFIRMED.run(db, rt) is None
    db.commit()
    assert account_id(db, rt, email) is not None
