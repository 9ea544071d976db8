"""AccountService rules that pages do not show directly: rehashing, disabled accounts,
session resolution and revocation, throttle bookkeeping."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, unique_email
from vault.accounts.errors import BadCredentials, EmailUnavailable, SignInThrottled, WeakPassword
from vault.accounts.models import Account, AccountSession, AccountStatus, Role, SignInThrottle
from vault.accounts.service import AccountService, check_password_rules
from vault.base import utcnow
from vault.profile.models import ProfileField
from vault.profile.service import ProfileService
from vault.runtime import Runtime, make_password_hasher
from vault.signup import sign_up


def rows(db: Session, model: type) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def svc(db: Session, rt: Runtime) -> AccountService:
    return AccountService(db, rt)


def test_password_equal_to_the_email_is_refused() -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_rules("ada.lovelace@example.org", "Ada.Lovelace@example.org")
    assert caught.value.field == "password"


def test_password_of_few_distinct_characters_is_refused() -> None:
    with pytest.raises(WeakPassword):
        check_password_rules("abababababab")


def test_password_over_256_characters_is_refused() -> None:
    with pytest.raises(WeakPassword) as caught:
        check_password_rules("correct horse " * 20)
    assert "at most 256" in caught.value.message


def test_sign_up_keeps_the_role(svc: AccountService) -> None:
    account = sign_up(svc.db, svc.rt, unique_email(), PASSWORD, role=Role.AUDITOR)
    assert account.role == Role.AUDITOR


def test_sign_up_stores_the_email_encrypted_not_in_clear(
    svc: AccountService, db: Session, rt: Runtime
) -> None:
    email = unique_email()
    account = sign_up(svc.db, svc.rt, email, PASSWORD)
    stored = db.scalars(
        select(ProfileField.value_ct).where(ProfileField.owner_id == account.id)
    ).one()
    assert email.encode() not in stored
    assert ProfileService(db, rt).email_of(account.id) == email


def test_duplicate_sign_up_raises_email_unavailable_and_records_a_failure(
    svc: AccountService, db: Session
) -> None:
    email = unique_email()
    sign_up(svc.db, svc.rt, email, PASSWORD)
    with pytest.raises(EmailUnavailable):
        sign_up(svc.db, svc.rt, email, PASSWORD, client_address="192.0.2.1")
    assert rows(db, Account) == 1
    assert sorted(db.scalars(select(SignInThrottle.failures))) == [1, 1]


def test_sign_in_with_new_argon2_parameters_rehashes_the_password(db: Session, rt: Runtime) -> None:
    email = unique_email()
    account = sign_up(db, rt, email, PASSWORD)
    old_hash = account.password_hash
    stronger = rt.settings.model_copy(update={"argon2_time_cost": 2})
    upgraded = dataclasses.replace(rt, settings=stronger, passwords=make_password_hasher(stronger))
    AccountService(db, upgraded).authenticate(email, PASSWORD)
    assert account.password_hash != old_hash
    assert account.password_hash.startswith("$argon2id$")
    assert ",t=2," in account.password_hash


def test_disabled_account_cannot_sign_in(svc: AccountService, db: Session) -> None:
    email = unique_email()
    account = sign_up(svc.db, svc.rt, email, PASSWORD)
    account.status = AccountStatus.DISABLED
    db.flush()
    with pytest.raises(BadCredentials):
        svc.authenticate(email, PASSWORD)


def test_disabling_an_account_ends_its_sessions(svc: AccountService, db: Session) -> None:
    account = sign_up(svc.db, svc.rt, unique_email(), PASSWORD)
    signed = svc.start_session(account)
    account.status = AccountStatus.DISABLED
    db.flush()
    assert svc.resolve_session(signed.token) is None


def test_over_long_email_or_password_is_bad_credentials_not_an_error(
    svc: AccountService,
) -> None:
    with pytest.raises(BadCredentials):
        svc.authenticate("a" * 300 + "@example.org", PASSWORD)
    with pytest.raises(BadCredentials):
        svc.authenticate(unique_email(), "p" * 10_000)


def test_throttled_authentication_raises_with_retry_after(db: Session, rt: Runtime) -> None:
    strict = dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"signin_max_failures_per_account": 1})
    )
    svc = AccountService(db, strict)
    email = unique_email()
    with pytest.raises(BadCredentials):
        svc.authenticate(email, PASSWORD)
    with pytest.raises(SignInThrottled) as caught:
        svc.authenticate(email, PASSWORD)
    assert 0 < caught.value.retry_after_seconds <= 15 * 60
    assert caught.value.headers == {"Retry-After": str(caught.value.retry_after_seconds)}


def test_failures_are_counted_per_account_and_per_address(svc: AccountService, db: Session) -> None:
    for _ in range(3):
        with pytest.raises(BadCredentials):
            svc.authenticate(unique_email(), PASSWORD, client_address="192.0.2.7")
    # three account buckets with one failure each, one address bucket with three
    assert sorted(db.scalars(select(SignInThrottle.failures))) == [1, 1, 1, 3]


def test_resolve_session_finds_the_live_session(svc: AccountService) -> None:
    account = sign_up(svc.db, svc.rt, unique_email(), PASSWORD)
    signed = svc.start_session(account)
    found = svc.resolve_session(signed.token)
    assert found is not None
    assert found[0].id == account.id


@pytest.mark.parametrize("token", ["", "not-a-session", "x" * 200])
def test_resolve_session_ignores_unknown_tokens(svc: AccountService, token: str) -> None:
    assert svc.resolve_session(token) is None


def test_resolve_session_deletes_an_expired_session(svc: AccountService, db: Session) -> None:
    account = sign_up(svc.db, svc.rt, unique_email(), PASSWORD)
    signed = svc.start_session(account)
    db.execute(update(AccountSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.flush()
    db.expire_all()
    assert svc.resolve_session(signed.token) is None
    assert rows(db, AccountSession) == 0


def test_end_all_sessions_can_spare_one(svc: AccountService, db: Session) -> None:
    account = sign_up(svc.db, svc.rt, unique_email(), PASSWORD)
    keep = svc.start_session(account)
    gone = [svc.start_session(account) for _ in range(2)]
    assert svc.end_all_sessions(account.id, except_id=keep.session.id) == 2
    assert svc.resolve_session(keep.token) is not None
    assert all(svc.resolve_session(s.token) is None for s in gone)


def test_change_password_spares_only_the_given_session(svc: AccountService, db: Session) -> None:
    email = unique_email()
    account = sign_up(svc.db, svc.rt, email, PASSWORD)
    keep, other = svc.start_session(account), svc.start_session(account)
    svc.change_password(
        account, PASSWORD, "purple elephant tap dancing", email=email, keep_session=keep.session.id
    )
    assert svc.resolve_session(keep.token) is not None
    assert svc.resolve_session(other.token) is None
