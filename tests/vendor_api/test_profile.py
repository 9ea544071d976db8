"""GET /vendor/v1/profile: only what the individual grants, to a live token, and logged."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import AccessLogEntry, Grant
from consent.grants.service import GrantService, pairwise_subject
from tests.consent.factories import bearer, connect, individual, make_app
from tests.web.conftest import MakeClient
from vault.base import utcnow
from vault.runtime import Runtime

PROFILE = "/vendor/v1/profile"
FILLED = {"given_name": "Ada", "email": "ada@example.org", "phone": "+31201234567"}


def log_entries(db: Session, grant: Grant) -> list[AccessLogEntry]:
    db.expire_all()
    return list(
        db.scalars(
            select(AccessLogEntry)
            .where(
                AccessLogEntry.individual_id == grant.individual_id,
                AccessLogEntry.app_id == grant.app_id,
            )
            .order_by(AccessLogEntry.accessed_at)
        )
    )


def test_profile_read_returns_only_granted_fields(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada", phone="+31201234567")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["phone", "given_name"])

    response = client.get(PROFILE, headers=bearer(db, rt, app, grant))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fields"] == {"given_name": "Ada", "phone": "+31201234567"}
    assert body["granted_fields"] == ["given_name", "phone"]
    assert "email" not in body["fields"]
    assert body["sub"] == pairwise_subject(rt, app.id, person.id)
    assert body["expires_at"] is not None


def test_token_scope_limits_the_fields_read(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada", phone="+31201234567")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name", "phone"])

    headers = bearer(db, rt, app, grant, scope="openid profile:phone")
    body = client.get(PROFILE, headers=headers).json()

    assert body["fields"] == {"phone": "+31201234567"}
    assert body["granted_fields"] == ["phone"]


def test_granted_but_empty_fields_are_absent(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name", "birthdate"])

    body = client.get(PROFILE, headers=bearer(db, rt, app, grant)).json()

    assert body["fields"] == {"given_name": "Ada"}
    assert body["granted_fields"] == ["given_name", "birthdate"]


def test_each_read_is_logged_with_the_fields_returned(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name", "birthdate"])
    headers = bearer(db, rt, app, grant)

    client.get(PROFILE, headers=headers)
    client.get(PROFILE, headers=headers)

    entries = log_entries(db, grant)
    assert len(entries) == 2
    assert all(e.fields == ["given_name"] for e in entries)
    assert all(utcnow() - e.accessed_at < timedelta(minutes=1) for e in entries)


def test_a_read_that_returns_nothing_is_not_logged(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    app = make_app(db)
    grant = connect(db, rt, person, app, ["birthdate"])

    body = client.get(PROFILE, headers=bearer(db, rt, app, grant)).json()

    assert body["fields"] == {}
    assert log_entries(db, grant) == []


def test_subject_differs_between_apps(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    shop, bank = make_app(db, name="Shop"), make_app(db, name="Bank")
    from_shop = client.get(
        PROFILE, headers=bearer(db, rt, shop, connect(db, rt, person, shop, ["given_name"]))
    )
    from_bank = client.get(
        PROFILE, headers=bearer(db, rt, bank, connect(db, rt, person, bank, ["given_name"]))
    )

    assert from_shop.json()["sub"] != from_bank.json()["sub"]


# -- refused ---------------------------------------------------------------------------------


def assert_invalid_token(response, *, challenge_error: bool = True) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert response.json()["detail"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is challenge_error


def test_missing_token_is_401_without_error_code(client: TestClient) -> None:
    assert_invalid_token(client.get(PROFILE), challenge_error=False)


def test_other_authorization_scheme_is_401(client: TestClient) -> None:
    response = client.get(PROFILE, headers={"Authorization": "Basic YTpi"})
    assert_invalid_token(response, challenge_error=False)


def test_unknown_token_is_401(client: TestClient) -> None:
    assert_invalid_token(client.get(PROFILE, headers={"Authorization": "Bearer nope"}))


def test_overlong_token_is_401(client: TestClient) -> None:
    assert_invalid_token(client.get(PROFILE, headers={"Authorization": "Bearer " + "x" * 5000}))


def test_expired_token_is_401(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])

    assert_invalid_token(client.get(PROFILE, headers=bearer(db, rt, app, grant, expires_in=-1)))


def test_expired_grant_makes_the_token_401(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)
    assert client.get(PROFILE, headers=headers).status_code == 200

    grant.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()

    assert_invalid_token(client.get(PROFILE, headers=headers))


def test_revoked_grant_rejects_next_profile_read(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)

    GrantService(db, rt).revoke(person.id, grant.id)
    db.commit()

    assert_invalid_token(client.get(PROFILE, headers=headers))
    assert log_entries(db, grant) == []


def test_client_credentials_token_is_403_insufficient_scope(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    app = make_app(db)

    response = client.get(PROFILE, headers=bearer(db, rt, app, None, scope="intents:read"))

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_token_without_profile_scopes_is_403(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])

    response = client.get(PROFILE, headers=bearer(db, rt, app, grant, scope="openid"))

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


def test_openapi_documents_the_errors_and_bearer_auth(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    operation = spec["paths"][PROFILE]["get"]
    assert {"200", "401", "403"} <= set(operation["responses"])
    # As the vendor API's own document says it: a token an individual's consent gave the app.
    assert operation["security"] == [{"IndividualToken": []}]
    vendor = client.get("/vendor/openapi.json").json()
    assert operation["security"] == vendor["paths"][PROFILE]["get"]["security"]
    assert spec["components"]["securitySchemes"]["IndividualToken"]["type"] == "oauth2"


@pytest.mark.parametrize("refused", ["app's own token", "ended grant"])
def test_reads_refused_after_the_token_check_still_count_against_the_limit(
    client_with: MakeClient, db: Session, rt: Runtime, refused: str
) -> None:
    """Every read counts when it arrives (``consent.vendors.ratelimit``), a refused one too: an app
    cannot read or probe without limit with tokens that no longer read anything."""
    vendor_client = client_with(vendor_reads_per_minute=2)
    app = make_app(db)
    if refused == "ended grant":
        person = individual(client_with(), db, rt, given_name="Ada")
        grant = connect(db, rt, person, app, ["given_name"])
        headers = bearer(db, rt, app, grant)
        grant.expires_at = utcnow() - timedelta(seconds=1)
        db.commit()
        status = 401
    else:
        headers = bearer(db, rt, app, None, scope="openid")
        status = 403
    if utcnow().second >= 55:  # do not straddle a window boundary
        threading.Event().wait(61 - utcnow().second)

    statuses = [vendor_client.get(PROFILE, headers=headers).status_code for _ in "abc"]

    assert statuses == [status, status, 429]
