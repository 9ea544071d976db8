"""Vendor apps, grants and bearer tokens made directly in the database, for tests."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import Client
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.models import Grant
from consent.grants.service import Decision, GrantService
from consent.oauth.tokens import TokenService
from consent.vendors.models import VendorApp
from tests.helpers import sign_up
from vault.accounts.models import Account
from vault.crypto import blind_index, normalise_email
from vault.profile.service import ProfileService
from vault.runtime import Runtime


def make_app(
    db: Session,
    *,
    name: str = "Example Shop",
    agreements: tuple[str, ...] = ("service-only", "no-tracking"),
    purpose: str = "Deliver your orders to your door.",
) -> VendorApp:
    app = VendorApp(
        id=uuid.uuid4(),
        owner_id=None,
        client_id="app-" + uuid.uuid4().hex[:16],
        client_secret_hash=None,
        name=name,
        homepage_url="https://shop.example",
        privacy_policy_url="https://shop.example/privacy",
        redirect_uris=["https://shop.example/callback"],
        purpose=purpose,
        accepted_agreements=list(agreements),
        vendor_scopes=[],
    )
    db.add(app)
    db.commit()
    return app


def account_of(db: Session, rt: Runtime, email: str) -> Account:
    index = blind_index(rt.secrets.blind_index_key, "email", normalise_email(email))
    return db.scalars(select(Account).where(Account.email_index == index)).one()


def individual(client: Client, db: Session, rt: Runtime, **values: Any) -> Account:
    """Sign up in ``client`` (which stays signed in) and fill in the given profile fields."""
    account = account_of(db, rt, sign_up(client, rt=rt))
    profile = ProfileService(db, rt)
    for key, value in values.items():
        # The sign-in address as if its change had been confirmed from the mail.
        profile.set_field(account, key, value, confirmed=key == "email")
    db.commit()
    return account


def connect(
    db: Session,
    rt: Runtime,
    account: Account,
    app: VendorApp,
    fields: list[str],
    *,
    duration: str = "30d",
    agreement: str = "service-only",
) -> Grant:
    grant = GrantService(db, rt).decide(account.id, app, Decision(fields, duration), agreement)
    db.commit()
    return grant


def bearer(
    db: Session,
    rt: Runtime,
    app: VendorApp,
    grant: Grant | None,
    *,
    scope: str | None = None,
    expires_in: int = 600,
) -> dict[str, str]:
    """Authorization headers with a fresh access token (for the grant's fields by default)."""
    token = "tok-" + uuid.uuid4().hex
    if scope is None:
        scope = scopes.scope_for(grant.fields if grant else [], openid=True)
    TokenService(db, rt).issue(app, scope, grant=grant, access_token=token, expires_in=expires_in)
    db.commit()
    return {"Authorization": f"Bearer {token}"}
