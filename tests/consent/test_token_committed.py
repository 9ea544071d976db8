"""The token endpoint's client-credentials tests again, on a database whose writes commit.

On PostgreSQL a client-credentials request that passes every check is answered in the event
loop (``consent.oauth.hot``), which the rolled-back tests cannot reach; every refusal still
goes to Authlib. So the tests below (the answer, the refusals, the per-client rate limit in the
database and in Redis) run here against both paths as a served vault takes them. SQLite has
no event-loop path (every request is Authlib's, as in the rolled-back tests), so this module is
PostgreSQL's.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import OAuthToken
from consent.oauth import hot
from tests.committed import committed_engine, committed_runtime, recorded, rt
from tests.consent.oauth_helpers import make_vendor
from tests.consent.test_oauth_security import (
    client_credentials,
    http,
    introspect,
    person,
    test_a_client_id_outside_rfc_6749s_characters_in_the_body_is_invalid_client,
    test_an_app_authenticates_only_with_the_method_it_registered,
    test_client_credentials_cannot_ask_for_profile_fields,
    test_client_credentials_for_a_scope_the_app_lacks_is_invalid_scope,
    test_client_credentials_for_an_app_without_vendor_scopes_is_unauthorized_client,
    test_client_credentials_give_a_vendor_scoped_token_without_refresh,
    test_malformed_basic_credentials_are_401_invalid_client,
    test_wrong_client_secret_in_the_body_is_401_invalid_client,
    vendor,
)
from tests.consent.test_token_rate_limit import (
    frozen_window,
    test_a_client_over_its_token_limit_gets_429_slow_down_and_another_client_does_not,
    test_requests_that_fail_client_authentication_use_up_nobodys_budget,
    vault,
)
from tests.web.conftest import client_with
from vault.runtime import Runtime

__all__ = [
    "client_with",
    "committed_engine",
    "committed_runtime",
    "frozen_window",
    "http",
    "person",
    "rt",
    "test_a_client_id_outside_rfc_6749s_characters_in_the_body_is_invalid_client",
    "test_a_client_over_its_token_limit_gets_429_slow_down_and_another_client_does_not",
    "test_an_app_authenticates_only_with_the_method_it_registered",
    "test_client_credentials_cannot_ask_for_profile_fields",
    "test_client_credentials_for_a_scope_the_app_lacks_is_invalid_scope",
    "test_client_credentials_for_an_app_without_vendor_scopes_is_unauthorized_client",
    "test_client_credentials_give_a_vendor_scoped_token_without_refresh",
    "test_malformed_basic_credentials_are_401_invalid_client",
    "test_requests_that_fail_client_authentication_use_up_nobodys_budget",
    "test_wrong_client_secret_in_the_body_is_401_invalid_client",
    "vault",
    "vendor",
]

SCOPES = ("intents:read", "offers:write")
AGREEMENTS = ("service-only", "no-tracking", "intent-sharing")
BACKENDS = ["postgresql"]


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each token request was answered in the event loop (True) or by Authlib."""
    return recorded(monkeypatch, hot, "issue", lambda answer: answer is not None)


def test_a_postgresql_vault_issues_client_credentials_in_the_event_loop(
    http: httpx.Client, db: Session, rt: Runtime, backend: str, answered: list[bool]
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=SCOPES, agreements=AGREEMENTS)

    response = client_credentials(http, vendor, "intents:read")

    assert response.status_code == 200, response.text
    assert answered == [True]
    token = response.json()
    assert token == {
        "token_type": "Bearer",
        "access_token": token["access_token"],
        "expires_in": 600,
        "scope": "intents:read",
    }
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["ratelimit-limit"]
    # The token works where a vendor token works, and is stored only as its hash.
    listing = http.get(
        "/vendor/v1/intents", headers={"authorization": f"Bearer {token['access_token']}"}
    )
    assert listing.status_code == 200, listing.text
    stored = db.scalars(select(OAuthToken).where(OAuthToken.app_id == vendor.app.id)).one()
    assert stored.scope == "intents:read"
    assert stored.grant_id is None and stored.refresh_token_hash is None
    assert token["access_token"].encode() not in stored.access_token_hash


def test_a_revoked_event_loop_token_is_refused_at_once(
    http: httpx.Client, db: Session, rt: Runtime
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=SCOPES, agreements=AGREEMENTS)
    access = client_credentials(http, vendor, "intents:read").json()["access_token"]

    revoked = http.post(
        "/oauth/revoke", data={"token": access}, auth=(vendor.client_id, vendor.secret)
    )

    assert revoked.status_code == 200
    assert introspect(http, vendor, access) == {"active": False}
    listing = http.get("/vendor/v1/intents", headers={"authorization": f"Bearer {access}"})
    assert listing.status_code == 401


ODD_REQUESTS = {
    # RFC 6749 says a parameter must not repeat, but Authlib answers as if once; a parameter
    # the grant does not take is ignored; credentials both in the header and in the body
    # authenticate with the header. The event loop takes none of them: they keep Authlib's
    # answers exactly, whatever those are.
    "repeated": [("grant_type", "client_credentials"), ("grant_type", "client_credentials")],
    "unexpected": [("grant_type", "client_credentials"), ("code", "x")],
    "both ways": [("grant_type", "client_credentials"), ("client_id", ""), ("client_secret", "")],
}


@pytest.mark.parametrize("odd", sorted(ODD_REQUESTS))
def test_requests_the_event_loop_does_not_take_get_authlibs_answer(
    http: httpx.Client, db: Session, rt: Runtime, backend: str, answered: list[bool], odd: str
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=SCOPES, agreements=AGREEMENTS)
    form = [(k, vendor.client_id if k == "client_id" else v) for k, v in ODD_REQUESTS[odd]]
    form = [(k, vendor.secret if k == "client_secret" else v) for k, v in form]

    response = http.post(
        "/oauth/token",
        content=str(httpx.QueryParams([*form, ("scope", "intents:read")])),
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=(vendor.client_id, vendor.secret),
    )

    assert answered == [False]
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "intents:read"


def test_a_scope_in_the_query_string_is_authlibs_to_refuse(
    http: httpx.Client, db: Session, rt: Runtime, answered: list[bool]
) -> None:
    """Authlib reads the query too (and refuses this scope); the event loop reads no query."""
    vendor = make_vendor(db, rt, vendor_scopes=SCOPES, agreements=AGREEMENTS)

    response = http.post(
        "/oauth/token?scope=nonsense",
        data={"grant_type": "client_credentials", "scope": "intents:read"},
        auth=(vendor.client_id, vendor.secret),
    )

    assert answered == []
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
