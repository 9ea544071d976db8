"""Sign-up: an account, its data key, and its sign-in address kept as an encrypted profile
field. Above accounts, the profile and the mail channel, so that none of them depends on
another's service.

A person signs up by :func:`request_sign_up`, which always answers the same: a new address
gets an unconfirmed account and a confirmation link; a taken one gets an email saying someone
tried to sign up with it. :func:`confirm_sign_up` makes the account usable."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, TypeVar

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from vault.accounts.errors import EmailUnavailable
from vault.accounts.models import Account, AccountStatus, Role
from vault.accounts.service import AccountService, email_index
from vault.base import utcnow
from vault.keystore import KeyStore
from vault.mail import letters, links
from vault.mail.compose import Letter
from vault.mail.models import AccountLink
from vault.mail.outbox import queue_mail
from vault.portability import erasure
from vault.portability.parts import Portability
from vault.profile.service import ProfileService, validate_email
from vault.runtime import Runtime

CONFIRM_VALID_FOR: Final = timedelta(hours=24)
CONFIRM = "confirm_signup"
T = TypeVar("T")


def sign_up(
    db: Session,
    rt: Runtime,
    email: str,
    password: str,
    *,
    role: Role = Role.INDIVIDUAL,
    client_address: str = "",
    confirmed: bool = True,
) -> Account:
    """Create a usable account at once (in the caller's transaction): for what an operator
    does (`vrm users add-auditor`, `vrm import`: the address counts as confirmed, unless
    ``confirmed=False``: usable, but vendors see ``email_verified`` false). The email becomes
    an encrypted profile field; a taken address raises ``EmailUnavailable``. The portal's
    sign-ups use :func:`request_sign_up` and :func:`request_sign_up_with`."""
    clean_email = validate_email(email)
    account = AccountService(db, rt).create(
        clean_email, password, role=role, client_address=client_address
    )
    account.email_confirmed_at = utcnow() if confirmed else None
    ProfileService(db, rt).store_email(account, clean_email)
    return account


def _confirm_url(rt: Runtime, token: str) -> str:
    return f"{rt.settings.base_url}/signup/confirm?t={token}"


def request_sign_up(
    db: Session,
    rt: Runtime,
    email: str,
    password: str,
    *,
    role: Role = Role.INDIVIDUAL,
    client_address: str = "",
) -> Account | None:
    """Sign-up from the portal (in the caller's transaction). Raises only for what the person
    typed (an invalid address, a weak password) or throttling; whether the address is taken
    shows only in the mail that address receives:

    - new: an unconfirmed account (it cannot sign in) and a mail with a confirmation link;
    - taken by a confirmed account: a mail saying someone tried to sign up with it;
    - taken by an unconfirmed account: its confirmation link again (the first password stays).

    Returns the new account, or None (the caller must not tell the difference)."""
    clean_email = validate_email(email)
    try:
        account = AccountService(db, rt).create(
            clean_email, password, role=role, client_address=client_address
        )
    except EmailUnavailable:
        _tell_owner(db, rt, clean_email)
        return None
    account.status = AccountStatus.UNCONFIRMED.value
    ProfileService(db, rt).store_email(account, clean_email)
    _send_confirmation(db, rt, account, clean_email, letters.confirm_sign_up)
    db.flush()
    return account


def request_sign_up_with(
    db: Session,
    rt: Runtime,
    email: str,
    password: str,
    fill: Callable[[Account], T],
    *,
    client_address: str = "",
) -> T:
    """Sign-up from the portal with data to take in (an export from another vault), in the
    caller's transaction: as :func:`request_sign_up`, then ``fill(account)`` puts the data
    into the new, unconfirmed account, where it waits for the address to be confirmed (and
    is erased with the account if it never is: :func:`purge_unconfirmed`).

    For a taken address, ``fill`` runs on a throwaway account in a savepoint that is rolled
    back: the same checks refuse the same data, the work costs the same, and nothing of it is
    kept; the address's owner gets the "someone tried to sign up" mail. Returns what ``fill``
    returned either way, so the caller's answer cannot differ."""
    account = request_sign_up(db, rt, email, password, client_address=client_address)
    if account is not None:
        return fill(account)
    savepoint = db.begin_nested()
    try:
        # Never committed, so never reachable. No password hash: the taken address already
        # cost the one Argon2 verification a free address's hash costs.
        throwaway = Account(
            id=uuid.uuid4(),
            role=Role.INDIVIDUAL.value,
            status=AccountStatus.UNCONFIRMED.value,
            email_index=secrets.token_bytes(32),
            password_hash="!",  # noqa: S106 (matches no password)
            password_changed_at=utcnow(),
        )
        db.add(throwaway)
        db.flush()
        KeyStore(db, rt.keys).create(throwaway.id)
        return fill(throwaway)
    finally:
        savepoint.rollback()


def _send_confirmation(
    db: Session, rt: Runtime, account: Account, to: str, letter: Callable[[str, int], Letter]
) -> None:
    links.retire(db, account.id, CONFIRM)
    token = links.issue(db, rt, account.id, CONFIRM, CONFIRM_VALID_FOR)
    hours = int(CONFIRM_VALID_FOR.total_seconds() // 3600)
    queue_mail(db, rt, account.id, CONFIRM, to, letter(_confirm_url(rt, token), hours))


def _tell_owner(db: Session, rt: Runtime, clean_email: str) -> None:
    owner = db.scalars(
        select(Account).where(Account.email_index == email_index(rt, clean_email))
    ).first()
    if owner is None:  # gone since (erased in between): nobody to tell
        return
    address = ProfileService(db, rt).email_of(owner.id) or clean_email
    if owner.status == AccountStatus.UNCONFIRMED:
        _send_confirmation(db, rt, owner, address, letters.sign_up_unconfirmed)
        return
    base = rt.settings.base_url
    letter = letters.sign_up_taken(f"{base}/signin", f"{base}/password/forgot")
    queue_mail(db, rt, owner.id, "signup_taken", address, letter)


def confirm_sign_up(db: Session, rt: Runtime, token: str) -> Account:
    """Use a confirmation link: the account becomes usable and its address confirmed.
    Raises :class:`vault.mail.links.LinkUnusable`."""
    link = links.claim(db, rt, token, CONFIRM)
    account = db.get(Account, link.account_id)
    if account is None:
        raise links.LinkUnusable()
    if account.status == AccountStatus.UNCONFIRMED:
        account.status = AccountStatus.ACTIVE.value
    account.email_confirmed_at = utcnow()
    db.flush()
    return account


PURGE_BATCH: Final = 20
"""Unconfirmed accounts erased per pass of the scheduled job (each is a full erasure)."""


def purge_unconfirmed(
    db: Session, rt: Runtime, portability: Portability, *, now: datetime | None = None
) -> int:
    """Erase accounts whose address was never confirmed and whose last link has expired
    (in the caller's transaction), with everything they hold (an import waiting for the
    confirmation, say), as the person's own erasure would. An account is kept while any link
    sent for it (its confirmation, a password reset) can still be used. Returns how many."""
    now = now or utcnow()
    live_link = exists().where(
        AccountLink.account_id == Account.id,
        AccountLink.used_at.is_(None),
        AccountLink.expires_at > now,
    )
    stale = (
        Account.status == AccountStatus.UNCONFIRMED,
        Account.created_at <= now - CONFIRM_VALID_FOR,
        ~live_link,
    )
    found = list(
        db.scalars(select(Account.id).where(*stale).order_by(Account.created_at).limit(PURGE_BATCH))
    )
    erased = 0
    for account_id in found:
        # Locked and asked again: a sign-up with the address may have sent a new link since.
        locked = db.scalar(
            select(Account.id).where(Account.id == account_id, *stale).with_for_update()
        )
        if locked is None:
            continue
        erasure.erase(db, rt, portability, account_id)
        erased += 1
    return erased
