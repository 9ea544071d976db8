"""The whole flow with Authlib's own client: discovery, PKCE, consent, token, profile,
refresh, revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import update
from sqlalchemy.orm import Session

from tests.consent.oauth_helpers import (
    authorize_url,
    consent,
    make_vendor,
    new_verifier,
    oauth_client,
    query_of,
)
from tests.helpers import api_headers, sign_up
from vault.accounts.models import AccountSession
from vault.runtime import Runtime


def test_full_flow_with_authlib_client(client: TestClient, db: Session, rt: Runtime) -> None:
    email = sign_up(client)
    client.put(
        "/api/v1/profile/fields/given_name", json={"value": "Ada"}, headers=api_headers(client)
    )
    vendor = make_vendor(db, rt)

    discovery = client.get("/.well-known/openid-configuration").json()
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert client.get("/.well-known/oauth-authorization-server").json()["token_endpoint"]

    oauth = oauth_client(client, vendor, "openid profile:email profile:given_name")
    verifier = new_verifier()
    url, state = authorize_url(oauth, verifier, nonce="n-0S6_WzA2Mj")
    location = consent(client, url)
    params = query_of(location)
    assert location.startswith("https://shop.example/callback?")
    assert params["state"] == state

    token = oauth.fetch_token(
        "http://testserver/oauth/token", code=params["code"], code_verifier=verifier
    )
    assert token["token_type"].lower() == "bearer"
    assert token["refresh_token"]

    keys = KeySet.import_key_set(client.get("/oauth/jwks").json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["aud"] == [vendor.client_id] or claims["aud"] == vendor.client_id
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["iss"] == rt.settings.base_url

    profile = oauth.get("http://testserver/vendor/v1/profile")
    assert profile.status_code == 200, profile.text
    assert profile.json()["fields"] == {"email": email, "given_name": "Ada"}
    assert profile.json()["sub"] == claims["sub"]

    old_access = token["access_token"]
    refreshed = oauth.refresh_token("http://testserver/oauth/token")
    assert refreshed["access_token"] != old_access
    assert oauth.get("http://testserver/vendor/v1/profile").status_code == 200

    oauth.revoke_token(
        "http://testserver/oauth/revoke",
        refreshed["refresh_token"],
        token_type_hint="refresh_token",
    )
    after = oauth.get("http://testserver/vendor/v1/profile")
    assert after.status_code == 401


def test_the_id_token_auth_time_is_when_the_person_signed_in(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up(client)
    signed_in_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    db.execute(update(AccountSession).values(created_at=signed_in_at))
    db.commit()
    vendor = make_vendor(db, rt)
    oauth = oauth_client(client, vendor, "openid profile:email")
    verifier = new_verifier()
    url, _ = authorize_url(oauth, verifier, nonce="n-auth-time")
    code = query_of(consent(client, url))["code"]

    token = oauth.fetch_token("http://testserver/oauth/token", code=code, code_verifier=verifier)

    keys = KeySet.import_key_set(client.get("/oauth/jwks").json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["auth_time"] == int(signed_in_at.timestamp())  # not when the code was issued
    assert claims["iat"] - claims["auth_time"] >= 3 * 3600 - 60


def test_userinfo_returns_granted_fields_as_claims_and_is_logged(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    from sqlalchemy import func, select

    from consent.grants.models import AccessLogEntry

    email = sign_up(client)
    client.put(
        "/api/v1/profile/fields/phone",
        json={"value": "+31 20 123 4567"},
        headers=api_headers(client),
    )
    vendor = make_vendor(db, rt)
    oauth = oauth_client(client, vendor, "openid profile:email profile:phone")
    verifier = new_verifier()
    url, _ = authorize_url(oauth, verifier)
    code = query_of(consent(client, url))["code"]
    oauth.fetch_token("http://testserver/oauth/token", code=code, code_verifier=verifier)

    claims = oauth.get("http://testserver/oauth/userinfo").json()

    assert claims["email"] == email
    assert claims["phone_number"] == "+31201234567"
    assert claims["email_verified"] is True  # confirmed from the sign-up mail
    assert len(claims["sub"]) == 64
    reads = db.scalar(
        select(func.count())
        .select_from(AccessLogEntry)
        .where(AccessLogEntry.app_id == vendor.app.id)
    )
    assert reads == 1
