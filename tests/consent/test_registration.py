"""RFC 7591 dynamic client registration, gated by single-use initial access tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from consent.oauth.models import RegistrationToken
from consent.oauth.registration import claim_registration_token, issue_registration_token
from consent.vendors.models import VendorApp
from consent.vendors.service import app_for_client_id, authenticate_client
from vault.base import utcnow
from vault.runtime import Runtime

METADATA: dict[str, Any] = {
    "client_name": "Acme Outdoor",
    "redirect_uris": ["https://acme.example/callback", "http://127.0.0.1:8765/cb"],
    "client_uri": "https://acme.example",
    "policy_uri": "https://acme.example/privacy",
    "token_endpoint_auth_method": "client_secret_post",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "scope": "openid profile:email intents:read",
    "purpose": "Ship your orders.",
    "accepted_agreements": ["service-only", "no-tracking"],
    "webhook_url": "https://acme.example/hooks",
    "logo_uri": "https://acme.example/logo.png",  # not understood: ignored
}

Register = Callable[..., Any]


@pytest.fixture
def token(db: Session, rt: Runtime) -> str:
    _, clear = issue_registration_token(db, rt)
    db.commit()
    return clear


@pytest.fixture
def register(client: TestClient) -> Register:
    def post(token: str | None, metadata: dict[str, Any] | None = None, **changes: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {**(METADATA if metadata is None else metadata), **changes}
        return client.post("/oauth/register", json=body, headers=headers)

    return post


def apps(db: Session) -> int:
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(VendorApp)) or 0)


def assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["error"] == "invalid_token"
    assert response.json()["error_description"]


# -- the happy path -------------------------------------------------------------------------


def test_registration_returns_client_credentials_and_the_metadata(
    register: Register, token: str, db: Session, rt: Runtime
) -> None:
    before = utcnow()
    response = register(token)

    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["client_id"].startswith("vrm_")
    assert body["client_secret_expires_at"] == 0
    assert abs(body["client_id_issued_at"] - before.timestamp()) < 60
    assert body["client_name"] == "Acme Outdoor"
    assert body["redirect_uris"] == METADATA["redirect_uris"]
    assert body["client_uri"] == "https://acme.example"
    assert body["policy_uri"] == "https://acme.example/privacy"
    assert body["token_endpoint_auth_method"] == "client_secret_post"
    assert body["response_types"] == ["code"]
    assert body["grant_types"] == ["authorization_code", "refresh_token", "client_credentials"]
    assert set(body["scope"].split()) >= {"openid", "profile:email", "intents:read"}
    assert "offers:write" not in body["scope"].split()
    assert body["purpose"] == "Ship your orders."
    assert body["accepted_agreements"] == ["service-only", "no-tracking"]
    assert body["webhook_url"] == "https://acme.example/hooks"
    assert "logo_uri" not in body

    app = app_for_client_id(db, body["client_id"])
    assert app is not None
    assert app.owner_id is None
    assert app.registered_via == "dynamic"
    assert app.vendor_scopes == ["intents:read"]
    assert authenticate_client(db, rt, body["client_id"], body["client_secret"]) is app


def test_defaults_apply_when_optional_metadata_is_left_out(register: Register, token: str) -> None:
    minimal = {
        k: METADATA[k]
        for k in (
            "client_name",
            "redirect_uris",
            "client_uri",
            "policy_uri",
            "purpose",
            "accepted_agreements",
        )
    }
    response = register(token, minimal)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["webhook_url"] is None
    assert "intents:read" not in body["scope"]
    assert body["grant_types"] == ["authorization_code", "refresh_token"]


def test_a_successful_registration_uses_the_token_up(
    register: Register, token: str, db: Session, rt: Runtime
) -> None:
    assert register(token).status_code == 201
    db.expire_all()
    row = db.scalars(select(RegistrationToken)).one()
    assert row.used_at is not None
    assert token.encode() not in row.token_hash


# -- the initial access token ---------------------------------------------------------------


def test_registration_without_a_token_is_refused(register: Register, db: Session) -> None:
    before = apps(db)
    assert_invalid_token(register(None))
    assert apps(db) == before


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Bearer not-a-real-token", "Basic dXNlcjpwYXNz", "bearer  "]
)
def test_registration_with_a_bad_token_is_refused(
    client: TestClient, token: str, db: Session, authorization: str
) -> None:
    before = apps(db)
    response = client.post(
        "/oauth/register", json=METADATA, headers={"Authorization": authorization}
    )
    assert_invalid_token(response)
    assert apps(db) == before


def test_a_used_token_cannot_register_a_second_client(
    register: Register, token: str, db: Session
) -> None:
    assert register(token).status_code == 201
    before = apps(db)

    again = register(token, client_name="Acme Again")

    assert_invalid_token(again)
    assert apps(db) == before


def test_an_expired_token_is_refused(
    register: Register, token: str, db: Session, rt: Runtime
) -> None:
    db.execute(update(RegistrationToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert_invalid_token(register(token))


def test_the_scheme_name_is_case_insensitive(client: TestClient, token: str) -> None:
    response = client.post(
        "/oauth/register", json=METADATA, headers={"Authorization": f"bearer {token}"}
    )
    assert response.status_code == 201, response.text


def test_a_token_is_claimed_only_once(db: Session, rt: Runtime) -> None:
    row, _ = issue_registration_token(db, rt)
    assert claim_registration_token(db, row) is True
    assert claim_registration_token(db, row) is False


def test_token_lifetime_is_bounded(db: Session, rt: Runtime) -> None:
    for expires_in in (timedelta(0), timedelta(days=31)):
        with pytest.raises(ValueError, match="30 days"):
            issue_registration_token(db, rt, expires_in=expires_in)


# -- bad metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uris", "says"),
    [
        (["http://acme.example/callback"], "plain http is allowed only on 127.0.0.1"),
        (["https://acme.example/callback#frag"], "must not contain a fragment"),
        (["/callback"], "must be an absolute https:// URL"),
        ([], "at least one redirect URI"),
        ([f"https://acme.example/{i}" for i in range(11)], "at most 10"),
        ("https://acme.example/callback", "redirect_uris"),
        ([42], "redirect_uris.0"),
    ],
)
def test_a_bad_redirect_uri_is_invalid_redirect_uri(
    register: Register, token: str, db: Session, uris: object, says: str
) -> None:
    before = apps(db)
    response = register(token, redirect_uris=uris)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_redirect_uri"
    assert says in body["error_description"]
    assert apps(db) == before


def test_a_refused_registration_leaves_the_token_usable(register: Register, token: str) -> None:
    assert register(token, redirect_uris=["http://acme.example/cb"]).status_code == 400
    assert register(token).status_code == 201


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"client_name": None}, "client_name: App name cannot be empty."),
        ({"client_uri": "http://acme.example"}, "client_uri: Homepage must use https"),
        ({"policy_uri": None}, "policy_uri: Privacy policy URL is required."),
        ({"purpose": None}, "purpose: Purpose cannot be empty."),
        ({"purpose": "p" * 501}, "purpose: Purpose can be at most 500 characters."),
        ({"accepted_agreements": []}, "accepted_agreements: Accept at least one"),
        ({"accepted_agreements": ["whatever"]}, "Unknown agreement: whatever"),
        ({"webhook_url": "http://acme.example/h"}, "webhook_url: Webhook URL must use https"),
        ({"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method"),
        ({"grant_types": ["password"]}, "grant_types: unsupported password"),
        ({"grant_types": ["implicit"]}, "grant_types: unsupported implicit"),
        ({"response_types": ["token"]}, "response_types: unsupported token"),
        ({"grant_types": ["client_credentials"]}, "grant_types and response_types disagree"),
        ({"scope": "openid admin"}, "scope: unknown scope admin"),
        ({"client_name": 7}, "client_name"),
    ],
)
def test_bad_metadata_is_invalid_client_metadata(
    register: Register, token: str, db: Session, changes: dict[str, Any], says: str
) -> None:
    before = apps(db)
    response = register(token, **changes)

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_client_metadata"
    assert says in body["error_description"]
    assert apps(db) == before


def test_a_software_statement_is_refused(register: Register, token: str) -> None:
    response = register(token, software_statement="eyJhbGciOiJub25lIn0.e30.")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_software_statement"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"not json", "application/json"),
        (b'["a list"]', "application/json"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    client: TestClient, token: str, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/oauth/register",
        content=content,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


def test_a_form_instead_of_json_is_refused_as_an_unsupported_media_type(
    client: TestClient, token: str, db: Session
) -> None:
    before = apps(db)
    response = client.post(
        "/oauth/register",
        content=b"client_name=Acme",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert apps(db) == before


def test_a_client_name_with_a_lone_surrogate_is_invalid_client_metadata(
    client: TestClient, token: str, db: Session
) -> None:
    before = apps(db)
    response = client.post(
        "/oauth/register",
        # json.dumps escapes the lone surrogate as \ud800.
        content=json.dumps({**METADATA, "client_name": "Acme \ud800 Outdoor"}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"
    assert "client_name holds a lone UTF-16 surrogate" in response.json()["error_description"]
    assert apps(db) == before


def test_the_endpoint_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    operation = paths["/oauth/register"]["post"]
    assert set(operation["responses"]) >= {"201", "400", "401"}
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"redirect_uris", "purpose", "accepted_agreements"} <= set(schema["properties"])
