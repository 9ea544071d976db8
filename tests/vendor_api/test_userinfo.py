"""/oauth/userinfo: the access token in the Authorization header, or (POST only) in a
form-encoded body as RFC 6750 section 2.2 has it; never in the query."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.consent.factories import bearer, connect, individual, make_app
from vault.accounts.models import Account
from vault.runtime import Runtime

USERINFO = "/oauth/userinfo"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def person(client: TestClient, db: Session, rt: Runtime) -> Account:
    return individual(client, db, rt, given_name="Ada")


@pytest.fixture
def token(db: Session, rt: Runtime, person: Account) -> str:
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])
    return bearer(db, rt, app, grant)["Authorization"].removeprefix("Bearer ")


def test_the_token_in_a_form_encoded_post_body_reads_the_claims(
    client: TestClient, rt: Runtime, person: Account, token: str
) -> None:
    response = client.post(USERINFO, data={"access_token": token})

    assert response.status_code == 200, response.text
    claims = response.json()
    assert claims["given_name"] == "Ada"
    assert len(claims["sub"]) == 64


def test_the_token_in_the_header_of_a_post_still_reads_the_claims(
    client: TestClient, token: str
) -> None:
    response = client.post(USERINFO, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json()["given_name"] == "Ada"


def test_a_userinfo_post_counts_as_a_read(client: TestClient, rt: Runtime, token: str) -> None:
    """POST carries the token, the request reads: it uses the read budget, not the writes'."""
    by_form = client.post(USERINFO, data={"access_token": token})
    by_header = client.post(USERINFO, headers={"Authorization": f"Bearer {token}"})

    reads = str(rt.settings.vendor_reads_per_minute)
    assert by_form.headers["ratelimit-limit"] == reads
    assert by_header.headers["ratelimit-limit"] == reads


def test_an_unknown_token_in_the_body_is_invalid_token(client: TestClient) -> None:
    response = client.post(USERINFO, data={"access_token": "not-a-token"})

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_token_in_both_the_header_and_the_body_is_invalid_request(
    client: TestClient, token: str
) -> None:
    # RFC 6750 section 2: a client uses one method per request; section 3.1: invalid_request.
    response = client.post(
        USERINFO, data={"access_token": token}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


def test_the_token_in_a_multipart_body_is_not_read(client: TestClient, token: str) -> None:
    response = client.post(USERINFO, files={"access_token": (None, token)})

    assert response.status_code == 415  # only a urlencoded form is read
    assert response.json()["error"] == "unsupported_media_type"


def test_the_token_in_a_json_body_is_not_read(client: TestClient, token: str) -> None:
    response = client.post(USERINFO, json={"access_token": token})

    assert response.status_code == 415
    assert "sub" not in response.json()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_token_in_the_query_is_refused(client: TestClient, token: str, method: str) -> None:
    response = client.request(method, USERINFO, params={"access_token": token})

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_the_token_in_a_form_body_is_refused_by_the_vendor_api(
    client: TestClient, token: str
) -> None:
    # Only userinfo takes it there (OpenID Connect Core 5.3.1); /vendor/v1 wants the header.
    offers = "/vendor/v1/intents/00000000-0000-0000-0000-000000000000/offers"

    response = client.post(offers, data={"access_token": token})

    assert response.status_code == 415  # a JSON operation: the form is not read at all
    assert response.json()["error"] == "unsupported_media_type"
