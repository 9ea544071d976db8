"""Intents, market vendors and their app tokens, made through the services, for tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from consent.oauth.tokens import TokenService
from intents.models import Intent
from intents.rules import parse_intent
from intents.service import IntentService
from tests.consent.oauth_helpers import Vendor, make_vendor
from vault.accounts.models import Account
from vault.runtime import Runtime

MARKET_SCOPES = ("intents:read", "offers:write")
MARKET_AGREEMENTS = ("intent-sharing", "service-only")

BIKE: dict[str, Any] = {
    "category": "sports.bicycles",
    "title": "Road bike, size 56",
    "description": "Carbon or aluminium, disc brakes. Delivered or picked up in Utrecht.",
    "quantity": "1",
    "budget": "900",
    "currency": "EUR",
    "country": "NL",
    "city": "Utrecht",
    "online": "on",
}


def make_intent(
    db: Session, rt: Runtime, owner: Account, *, publish: bool = True, **values: Any
) -> Intent:
    intent = IntentService(db, rt).create(owner, parse_intent({**BIKE, **values}), publish=publish)
    db.commit()
    return intent


def market_vendor(
    db: Session,
    rt: Runtime,
    *,
    name: str = "Velo Shop",
    webhook_url: str | None = "https://vendor.example/hooks",
    agreements: tuple[str, ...] = MARKET_AGREEMENTS,
    vendor_scopes: tuple[str, ...] = MARKET_SCOPES,
) -> Vendor:
    """A vendor app that may list intents and make offers (client credentials)."""
    return make_vendor(
        db,
        rt,
        name=name,
        agreements=agreements,
        vendor_scopes=vendor_scopes,
        webhook_url=webhook_url,
    )


def app_token(
    db: Session, rt: Runtime, vendor: Vendor, scope: str = " ".join(MARKET_SCOPES)
) -> dict[str, str]:
    """Authorization headers with the app's own (client credentials) token."""
    token = "app-" + uuid.uuid4().hex
    TokenService(db, rt).issue(vendor.app, scope, grant=None, access_token=token)
    db.commit()
    return {"Authorization": f"Bearer {token}"}


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def offer_body(price: str = "850.00", **extra: Any) -> dict[str, Any]:
    return {
        "price": price,
        "currency": "EUR",
        "message": "Shimano 105, size 56, delivered within a week.",
        "valid_until": in_days(7),
        **extra,
    }
