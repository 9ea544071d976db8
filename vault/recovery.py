"""A way back in and a new address: "forgot your password?" links, setting a new password from
one, and changing the sign-in address (confirmed from the new address, told to the old one)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.accounts.models import Account, AccountStatus
from vault.accounts.service import MAX_EMAIL, AccountService, check_password_rules, email_index
from vault.base import utcnow
from vault.crypto import blind_index, normalise_email
from vault.errors import InvalidInput
from vault.mail import letters, links
from vault.mail.notices import queue_security_notice
from vault.mail.outbox import queue_mail
from vault.profile.service import ProfileService, validate_email
from vault.runtime import Runtime

RESET_VALID_FOR: Final = timedelta(minutes=30)
EMAIL_CHANGE_VALID_FOR: Final = timedelta(hours=24)
RESET = "reset_password"
EMAIL_CHANGE = "change_email"
RESETS_PER_ADDRESS: Final = 3
"""Reset links one address may be sent per throttle window (``signin_window_minutes``)."""
RESETS_PER_CLIENT: Final = 10
"""Reset requests one client address may make per window, whatever addresses it names."""


def request_reset(db: Session, rt: Runtime, email: str, *, client_address: str = "") -> None:
    """Mail a single-use link (30 minutes) to set a new password, if ``email`` has an account.

    Answers the same whether it has one or not; throttled per address and per client
    (:class:`vault.accounts.errors.SignInThrottled`), counted whether or not the address is
    known, so the throttle tells nothing either."""
    email = email.strip()
    if not email or len(email) > MAX_EMAIL:
        raise InvalidInput("Enter the email address you sign in with.", field="email")
    key = rt.secrets.blind_index_key
    buckets = [(blind_index(key, "reset-account", normalise_email(email)), RESETS_PER_ADDRESS)]
    if client_address:
        buckets.append((blind_index(key, "reset-address", client_address), RESETS_PER_CLIENT))
    AccountService(db, rt).reserve(buckets)
    account = db.scalars(
        select(Account).where(Account.email_index == email_index(rt, email))
    ).first()
    if account is None or account.status not in (
        AccountStatus.ACTIVE,
        AccountStatus.UNCONFIRMED,
    ):
        return
    address = ProfileService(db, rt).email_of(account.id)
    if not address:
        return
    links.retire(db, account.id, RESET)
    token = links.issue(db, rt, account.id, RESET, RESET_VALID_FOR)
    url = f"{rt.settings.base_url}/password/reset?t={token}"
    minutes = int(RESET_VALID_FOR.total_seconds() // 60)
    queue_mail(db, rt, account.id, RESET, address, letters.reset_password(url, minutes))


def check_reset_link(db: Session, rt: Runtime, token: str) -> None:
    """Raise :class:`vault.mail.links.LinkUnusable` unless the link can still be used."""
    links.peek(db, rt, token, RESET)


def reset_password(db: Session, rt: Runtime, token: str, new_password: str) -> Account:
    """Set a new password from a reset link: the link is used up, every session ends, and a
    notice is mailed. The password rules are checked before the link is claimed, so a weak
    password does not spend it. A reset also confirms an unconfirmed address (the link
    proves the mailbox)."""
    link = links.peek(db, rt, token, RESET)
    account = db.get(Account, link.account_id)
    if account is None:
        raise links.LinkUnusable()
    check_password_rules(new_password, ProfileService(db, rt).email_of(account.id))
    links.claim(db, rt, token, RESET)
    now = utcnow()
    account.password_hash = rt.passwords.hash(new_password)
    account.password_changed_at = now
    if account.status == AccountStatus.UNCONFIRMED:
        account.status = AccountStatus.ACTIVE.value
        account.email_confirmed_at = now
    links.retire(db, account.id, RESET, now)
    AccountService(db, rt).end_all_sessions(account.id)
    queue_security_notice(db, rt, account.id, "password_changed", now=now)
    db.flush()
    return account


def request_email_change(
    db: Session,
    rt: Runtime,
    account: Account,
    new_email: str,
    password: str,
    *,
    client_address: str = "",
) -> None:
    """Mail a confirmation link to ``new_email``; the address changes only when it is used.

    The password is asked again (throttled like sign-in). An address taken by another
    account answers the same; its owner is told someone tried to use it."""
    clean = validate_email(new_email, "new_email")
    profiles = ProfileService(db, rt)
    current = profiles.email_of(account.id) or ""
    if normalise_email(clean) == normalise_email(current):
        raise InvalidInput("This is already your sign-in address.", field="new_email")
    if not AccountService(db, rt).confirm_password(
        account, password, email=current, client_address=client_address
    ):
        raise InvalidInput("The password is not right.", field="password")
    owner = db.scalars(select(Account).where(Account.email_index == email_index(rt, clean))).first()
    if owner is not None:
        signin = f"{rt.settings.base_url}/signin"
        queue_mail(db, rt, owner.id, "address_in_use", clean, letters.address_in_use(signin))
        return
    links.retire(db, account.id, EMAIL_CHANGE)
    token = links.issue(db, rt, account.id, EMAIL_CHANGE, EMAIL_CHANGE_VALID_FOR, payload=clean)
    url = f"{rt.settings.base_url}/account/email/confirm?t={token}"
    hours = int(EMAIL_CHANGE_VALID_FOR.total_seconds() // 3600)
    queue_mail(db, rt, account.id, EMAIL_CHANGE, clean, letters.confirm_new_address(url, hours))


def confirm_email_change(db: Session, rt: Runtime, token: str) -> Account:
    """Use an address-change link: the new address signs in from now on (and is confirmed);
    the old one is told. Raises :class:`LinkUnusable`, or ``Conflict`` when another account
    took the address in the meantime."""
    link = links.claim(db, rt, token, EMAIL_CHANGE)
    account = db.get(Account, link.account_id)
    if account is None:
        raise links.LinkUnusable()
    new_email = links.payload_of(db, rt, link)
    profiles = ProfileService(db, rt)
    old_email = profiles.email_of(account.id)
    profiles.set_field(account, "email", new_email, confirmed=True)  # refuses one taken since
    now = utcnow()
    account.email_confirmed_at = now
    if old_email:
        queue_security_notice(db, rt, account.id, "email_changed", to=old_email, now=now)
    db.flush()
    return account
