"""Expiry: the sweep ends expired grants once, kills their tokens and tells the vendor."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import OAuthToken
from consent.grants.service import Decision, GrantService
from consent.oauth.tokens import TokenService
from consent.vendors.models import VendorApp
from consent.webhooks.models import WebhookMessage
from tests.consent.factories import individual, make_app
from vault.base import utcnow
from vault.runtime import Runtime


def _expired_grant(client: TestClient, db: Session, rt: Runtime) -> tuple[VendorApp, str]:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    app.webhook_url = "https://shop.example/hooks"
    grant = GrantService(db, rt).decide(
        person.id, app, Decision(["given_name"], "1d"), "service-only"
    )
    TokenService(db, rt).issue(
        app,
        "profile:given_name",
        grant=grant,
        access_token="expiring-token",
        refresh_token="expiring-refresh",
    )
    grant.expires_at = utcnow() - timedelta(minutes=1)
    db.commit()
    return app, "expiring-token"


def _revocations(db: Session, app: VendorApp) -> list[WebhookMessage]:
    return list(
        db.scalars(
            select(WebhookMessage).where(
                WebhookMessage.app_id == app.id, WebhookMessage.event_type == "consent.revoked"
            )
        )
    )


def test_expiry_sweep_revokes_tokens_and_tells_the_vendor_once(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    app, token = _expired_grant(client, db, rt)
    vendor_view = client.get("/vendor/v1/profile", headers={"Authorization": f"Bearer {token}"})
    assert vendor_view.status_code == 401  # refused even before the sweep

    assert GrantService(db, rt).expire_due() == 1
    assert GrantService(db, rt).expire_due() == 0

    messages = _revocations(db, app)
    assert len(messages) == 1
    assert messages[0].payload["data"]["reason"] == "expired"
    rows = db.scalars(select(OAuthToken).where(OAuthToken.app_id == app.id)).all()
    assert rows and all(row.revoked_at is not None for row in rows)


def test_consenting_again_after_expiry_lets_a_later_expiry_be_reported(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    app, _ = _expired_grant(client, db, rt)
    service = GrantService(db, rt)
    assert service.expire_due() == 1
    grant = service.current(_owner(db, app), app.id)
    assert grant is not None
    service.decide(grant.individual_id, app, Decision(["given_name"], "1d"), "service-only")
    grant.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    assert service.expire_due() == 1
    assert len(_revocations(db, app)) == 2


def _owner(db: Session, app: VendorApp):  # type: ignore[no-untyped-def]
    from consent.grants.models import Grant

    return db.scalars(select(Grant.individual_id).where(Grant.app_id == app.id)).one()
