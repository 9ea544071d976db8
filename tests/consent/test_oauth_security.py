"""The authorization server against RFC 9700 (OAuth 2.0 Security Best Current Practice).

Redirect URIs, PKCE, single-use codes bound to client and redirect URI, refresh-token rotation
with reuse detection, client credentials for vendor scopes, revocation (RFC 7009),
introspection (RFC 7662), grant revocation and expiry, and the consent screen's promises.
Each test looks at what the vendor or the individual observes.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.grants.models import AuthorizationCode, Grant, OAuthToken
from consent.grants.service import GrantService
from consent.ledger.models import LedgerEntry
from consent.oauth.models import ConsentEvent
from consent.oauth.objects import CODE_SECONDS
from tests.consent.factories import individual
from tests.consent.oauth_helpers import (
    REDIRECT_URI,
    Vendor,
    authorize_url,
    consent,
    hidden_fields,
    make_vendor,
    new_verifier,
    oauth_client,
    query_of,
)
from tests.sequencer import sequence
from vault.accounts.models import Account
from vault.base import utcnow
from vault.runtime import Runtime

BASE = "http://testserver"
TOKEN_URL = f"{BASE}/oauth/token"
SCOPE = "openid profile:email profile:given_name"


# -- helpers ----------------------------------------------------------------------------------
@pytest.fixture
def person(client: TestClient, db: Session, rt: Runtime) -> Account:
    """An individual, signed in in ``client``, with a given name filled in."""
    return individual(client, db, rt, given_name="Ada")


@pytest.fixture
def vendor(db: Session, rt: Runtime) -> Vendor:
    return make_vendor(db, rt)


@pytest.fixture
def http(client: TestClient) -> httpx.Client:
    """The vendor's back end: same app, none of the individual's cookies."""
    return httpx.Client(transport=client._transport, base_url=BASE)


def start(
    client: TestClient, vendor: Vendor, scope: str = SCOPE, **extra: str
) -> tuple[OAuth2Client, str, str, str]:
    """The vendor's authorization request: (its OAuth client, verifier, URL, state)."""
    oauth = oauth_client(client, vendor, scope)
    verifier = new_verifier()
    url, state = authorize_url(oauth, verifier, **extra)
    return oauth, verifier, url, state


def code_for(
    client: TestClient, vendor: Vendor, scope: str = SCOPE, **answer: Any
) -> tuple[OAuth2Client, str, str]:
    """Consent on the page; returns (the vendor's OAuth client, code, verifier)."""
    oauth, verifier, url, _ = start(client, vendor, scope)
    return oauth, query_of(consent(client, url, **answer))["code"], verifier


def connect(
    client: TestClient, vendor: Vendor, scope: str = SCOPE
) -> tuple[OAuth2Client, dict[str, Any]]:
    """The whole flow; returns the vendor's OAuth client (holding the token) and the token."""
    oauth, code, verifier = code_for(client, vendor, scope)
    token = oauth.fetch_token(TOKEN_URL, code=code, code_verifier=verifier)
    return oauth, dict(token)


def redeem(
    http: httpx.Client,
    vendor: Vendor,
    code: str,
    verifier: str | None,
    redirect_uri: str | None = REDIRECT_URI,
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    return http.post("/oauth/token", data=data, auth=(vendor.client_id, vendor.secret))


def refresh(http: httpx.Client, vendor: Vendor, refresh_token: str) -> httpx.Response:
    return http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(vendor.client_id, vendor.secret),
    )


def client_credentials(http: httpx.Client, vendor: Vendor, scope: str) -> httpx.Response:
    return http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(vendor.client_id, vendor.secret),
    )


def introspect(
    http: httpx.Client, vendor: Vendor, token: str, hint: str | None = None
) -> dict[str, Any]:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    response = http.post("/oauth/introspect", data=data, auth=(vendor.client_id, vendor.secret))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def revoke(
    http: httpx.Client, vendor: Vendor, token: str, hint: str | None = None
) -> httpx.Response:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    return http.post("/oauth/revoke", data=data, auth=(vendor.client_id, vendor.secret))


def profile_status(http: httpx.Client, access_token: str) -> int:
    response = http.get("/vendor/v1/profile", headers={"Authorization": f"Bearer {access_token}"})
    return response.status_code


def error_of(response: httpx.Response) -> str:
    error: str = response.json()["error"]
    return error


def authorize_query(vendor: Vendor, **overrides: str) -> str:
    params = {
        "response_type": "code",
        "client_id": vendor.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "st-123",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v != ""})


def field_rows(page: str) -> dict[str, str]:
    """Each requested field on the consent page: key -> the text of its row."""
    rows = re.findall(
        r'<div class="check consent-field">\s*<input type="checkbox" id="field-(\w+)"'
        r"(.*?)</div>",
        page,
        flags=re.S,
    )
    return {key: " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()) for key, row in rows}


def events(db: Session, event_type: str) -> list[ConsentEvent]:
    db.expire_all()
    return list(db.scalars(select(ConsentEvent).where(ConsentEvent.event_type == event_type)))


def find_grant(db: Session, account: Account, vendor: Vendor) -> Grant | None:
    db.expire_all()
    return db.scalars(
        select(Grant).where(Grant.individual_id == account.id, Grant.app_id == vendor.app.id)
    ).one_or_none()


def grant_of(db: Session, account: Account, vendor: Vendor) -> Grant:
    grant = find_grant(db, account, vendor)
    assert grant is not None
    return grant


def assert_error_page(response: httpx.Response) -> None:
    """The individual sees an error page; the browser is sent nowhere."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers
    assert "This sign-in request from an app is not valid" in response.text


# -- the authorization endpoint: never redirect where the client did not register --------------
@pytest.mark.parametrize("client_id", ["no-such-client", "vrm_\x00", "vrm_\u00e9"])
def test_unknown_client_id_shows_an_error_page_and_does_not_redirect(
    client: TestClient, person: Account, client_id: str
) -> None:
    response = client.get(
        "/oauth/authorize?"
        + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": "https://evil.example/cb",
                "state": "s",
            }
        )
    )

    assert_error_page(response)
    assert "evil.example" not in response.headers.get("location", "")


AUTHORIZE_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "nonce",
    "max_age",
)


@pytest.mark.parametrize("value", ["Al%ED%A0%80ice", "caf%C3%A9"], ids=["surrogate", "accent"])
@pytest.mark.parametrize("name", AUTHORIZE_PARAMETERS)
def test_text_outside_ascii_in_an_authorization_request_is_an_answer_not_a_500(
    client: TestClient, person: Account, vendor: Vendor, name: str, value: str
) -> None:
    # A URL cannot carry a lone surrogate: %ED%A0%80 (U+D800 as UTF-8 would have it) arrives
    # as replacement characters. Authlib repeated response_type and redirect_uri in an error
    # description, which must be ASCII, and raised ValueError: a 500.
    response = client.get(authorize_query(vendor, **{name: ""}) + f"&{name}={value}")
    if name in ("client_id", "redirect_uri"):  # nowhere to send an error to
        assert_error_page(response)
        assert f"{name} must be printable ASCII text." in response.text
    elif name in ("response_type", "scope", "code_challenge"):
        assert response.status_code == 302
        assert response.headers["location"].startswith(REDIRECT_URI + "?")
        answer = query_of(response.headers["location"])
        assert answer["error"] == "invalid_request"
        assert answer["error_description"] == f"{name} must be printable ASCII text."
        assert answer["state"] == "st-123"
    else:
        assert response.status_code in (200, 302, 400), response.text


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        "https://shop.example/callback/extra",
        "https://shop.example/callback?next=https://evil.example",
        "http://shop.example/callback",
        "https://shop.example.evil.example/callback",
    ],
)
def test_unregistered_redirect_uri_shows_an_error_page_and_does_not_redirect(
    client: TestClient, person: Account, vendor: Vendor, redirect_uri: str
) -> None:
    response = client.get(authorize_query(vendor, redirect_uri=redirect_uri))

    assert_error_page(response)


def test_missing_redirect_uri_shows_an_error_page(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    response = client.get(authorize_query(vendor, redirect_uri=""))

    assert_error_page(response)


def test_repeated_client_id_shows_an_error_page(
    client: TestClient, db: Session, rt: Runtime, person: Account, vendor: Vendor
) -> None:
    other = make_vendor(db, rt, name="Other Shop")
    query = authorize_query(vendor) + "&" + urlencode({"client_id": other.client_id})

    response = client.get(query)

    assert_error_page(response)


def test_implicit_grant_is_refused_with_unsupported_response_type(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    response = client.get(authorize_query(vendor, response_type="token"))

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["error"] == "unsupported_response_type"
    assert params["state"] == "st-123"
    assert set(params) == {"error", "error_description", "state", "iss"}
    assert "access_token" not in location and "#" not in location


def test_authorization_request_without_pkce_is_refused(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    response = client.get(authorize_query(vendor, code_challenge="", code_challenge_method=""))

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-123"
    assert "code" not in params


def test_authorization_request_without_challenge_method_is_refused(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    response = client.get(authorize_query(vendor, code_challenge_method=""))

    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "invalid_request"


def test_plain_pkce_method_is_refused(client: TestClient, person: Account, vendor: Vendor) -> None:
    verifier = new_verifier()
    response = client.get(
        authorize_query(vendor, code_challenge=verifier, code_challenge_method="plain")
    )

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["error"] == "invalid_request"
    assert "code" not in params


def test_metadata_advertises_only_code_flow_and_s256(client: TestClient) -> None:
    meta = client.get("/.well-known/oauth-authorization-server").json()

    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "password" not in meta["grant_types_supported"]
    assert "implicit" not in meta["grant_types_supported"]


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"]
)
def test_metadata_says_request_uri_is_not_supported_and_lists_email_verified(
    client: TestClient, path: str
) -> None:
    meta = client.get(path).json()

    assert meta["request_uri_parameter_supported"] is False
    assert "email_verified" in meta["claims_supported"]


@pytest.mark.parametrize(
    ("name", "error"),
    [("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")],
)
def test_a_request_object_is_refused_not_ignored(
    client: TestClient, person: Account, vendor: Vendor, name: str, error: str
) -> None:
    response = client.get(authorize_query(vendor, **{name: "https://shop.example/request.jwt"}))

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["error"] == error
    assert params["state"] == "st-123"


def test_signed_out_visitor_is_sent_to_sign_in(vendor: Vendor, app: Any) -> None:
    with TestClient(app, base_url=BASE, follow_redirects=False) as stranger:
        response = stranger.get(authorize_query(vendor))

    assert response.status_code == 303
    assert urlsplit(response.headers["location"]).path == "/signin"


# -- RFC 9207: every authorization response names its issuer ----------------------------------
def test_metadata_says_authorization_responses_carry_the_issuer(client: TestClient) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        meta = client.get(path).json()

        assert meta["authorization_response_iss_parameter_supported"] is True


def test_a_code_comes_with_the_issuer(
    client: TestClient, rt: Runtime, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor)

    params = query_of(consent(client, url))

    assert params["code"]
    assert params["iss"] == rt.settings.base_url


def test_a_code_without_the_consent_page_comes_with_the_issuer(
    client: TestClient, rt: Runtime, person: Account, vendor: Vendor
) -> None:
    code_for(client, vendor)
    _, _, url, _ = start(client, vendor)

    response = client.get(url)

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["code"]
    assert params["iss"] == rt.settings.base_url


def test_a_refusal_on_the_consent_page_comes_with_the_issuer(
    client: TestClient, rt: Runtime, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor)

    params = query_of(consent(client, url, decision="deny"))

    assert params["error"] == "access_denied"
    assert params["iss"] == rt.settings.base_url


@pytest.mark.parametrize(
    "overrides",
    [{"response_type": "token"}, {"code_challenge_method": "plain"}, {"scope": "caf\u00e9"}],
    ids=["unsupported_response_type", "plain_pkce", "scope_outside_ascii"],
)
def test_an_error_sent_to_the_client_comes_with_the_issuer(
    client: TestClient, rt: Runtime, person: Account, vendor: Vendor, overrides: dict[str, str]
) -> None:
    response = client.get(authorize_query(vendor, **overrides))

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["error"]
    assert params["iss"] == rt.settings.base_url


# -- prompt=none: an answer without showing a page, or the reason there is none ----------------
@pytest.mark.parametrize("scope", [SCOPE, "profile:email"], ids=["openid", "oauth"])
def test_prompt_none_without_consent_is_consent_required(
    client: TestClient, db: Session, person: Account, vendor: Vendor, scope: str
) -> None:
    response = client.get(authorize_query(vendor, scope=scope, prompt="none"))

    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    params = query_of(response.headers["location"])
    assert params["error"] == "consent_required"
    assert params["state"] == "st-123"
    assert "code" not in params
    assert find_grant(db, person, vendor) is None


def test_prompt_none_asking_for_a_field_not_yet_granted_is_consent_required(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    code_for(client, vendor, "openid profile:email")

    response = client.get(authorize_query(vendor, prompt="none"))  # adds given_name

    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == "consent_required"


@pytest.mark.parametrize("scope", [SCOPE, "profile:email"], ids=["openid", "oauth"])
def test_prompt_none_with_consent_given_answers_a_code(
    client: TestClient, person: Account, vendor: Vendor, scope: str
) -> None:
    code_for(client, vendor, scope)
    _, _, url, state = start(client, vendor, scope, prompt="none")

    response = client.get(url)

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["code"]
    assert params["state"] == state


@pytest.mark.parametrize("scope", [SCOPE, "profile:email"], ids=["openid", "oauth"])
def test_prompt_none_signed_out_is_login_required(vendor: Vendor, app: Any, scope: str) -> None:
    with TestClient(app, base_url=BASE, follow_redirects=False) as stranger:
        response = stranger.get(authorize_query(vendor, scope=scope, prompt="none"))

    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    params = query_of(response.headers["location"])
    assert params["error"] == "login_required"
    assert params["state"] == "st-123"


# -- state, the consent page and the decision -------------------------------------------------
def test_state_round_trips_unchanged(client: TestClient, person: Account, vendor: Vendor) -> None:
    state = "a b/c?d=e&f=ü+%20"
    _, _, url, _ = start(client, vendor, state=state)

    params = query_of(consent(client, url))

    assert params["state"] == state
    assert params["code"]


def test_state_of_1024_characters_round_trips(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    state = "s" * 1024
    _, _, url, _ = start(client, vendor, state=state)

    assert query_of(consent(client, url))["state"] == state


@pytest.mark.parametrize("scope", [SCOPE, "profile:email"], ids=["openid", "oauth"])
def test_state_longer_than_1024_characters_is_invalid_request(
    client: TestClient, db: Session, person: Account, vendor: Vendor, scope: str
) -> None:
    response = client.get(authorize_query(vendor, scope=scope, state="s" * 1025))

    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    params = query_of(response.headers["location"])
    assert params["error"] == "invalid_request"
    assert "state" in params["error_description"]
    assert "state" not in params  # not a copy of what was too long to accept
    assert find_grant(db, person, vendor) is None


def test_nonce_longer_than_255_characters_is_invalid_request(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    response = client.get(authorize_query(vendor, nonce="n" * 256))

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["error"] == "invalid_request"
    assert "nonce" in params["error_description"]
    assert params["state"] == "st-123"


def test_consent_page_shows_each_requested_field_with_its_value_or_not_filled_in(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor, "openid profile:given_name profile:phone")

    page = client.get(url)

    assert page.status_code == 200
    rows = field_rows(page.text)
    assert list(rows) == ["given_name", "phone"]
    assert "Given name" in rows["given_name"] and "Ada" in rows["given_name"]
    assert "Phone number" in rows["phone"] and "not filled in" in rows["phone"]
    assert "not filled in" not in rows["given_name"]


def test_consent_page_shows_the_vendors_purpose_and_that_it_accepts_the_terms(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor)

    text = " ".join(html.unescape(client.get(url).text).split())

    assert "Deliver your orders to your door." in text
    assert "Your terms: Service delivery only" in re.sub(r"<[^>]+>", "", text)
    assert "Example Shop accepts them." in text


def test_consent_page_warns_when_the_vendor_does_not_accept_the_individuals_terms(
    client: TestClient, db: Session, rt: Runtime, person: Account
) -> None:
    picky = make_vendor(db, rt, name="Picky Shop", agreements=("no-tracking",))
    _, _, url, _ = start(client, picky)

    page = html.unescape(client.get(url).text)

    assert "Picky Shop does not accept your terms." in page
    assert 'value="no-tracking" checked' in page


def test_consent_page_offers_a_choice_of_duration(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor)

    page = client.get(url).text

    select_html = re.search(r'<select id="duration" name="duration">(.*?)</select>', page, re.S)
    assert select_html is not None
    options = re.findall(r'<option value="([^"]+)"', select_html.group(1))
    assert options == ["1d", "30d", "1y", "revoked"]


def test_grant_records_exactly_the_ticked_fields(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    oauth, code, verifier = code_for(
        client,
        vendor,
        "openid profile:email profile:given_name profile:phone",
        fields=["given_name", "phone"],
    )
    token = oauth.fetch_token(TOKEN_URL, code=code, code_verifier=verifier)

    assert grant_of(db, person, vendor).fields == ["given_name", "phone"]
    assert token["scope"].split() == ["openid", "profile:given_name", "profile:phone"]
    read = oauth.get(f"{BASE}/vendor/v1/profile").json()
    assert read["fields"] == {"given_name": "Ada"}
    assert read["granted_fields"] == ["given_name", "phone"]


def test_fields_not_requested_cannot_be_slipped_into_the_grant(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor, "openid profile:email")

    consent(client, url, fields=["email", "birthdate", "address"])

    assert grant_of(db, person, vendor).fields == ["email"]


def test_chosen_duration_sets_when_the_grant_ends(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor)

    consent(client, url, duration="1d")

    expires_at = grant_of(db, person, vendor).expires_at
    assert expires_at is not None
    assert timedelta(hours=23) < expires_at - utcnow() <= timedelta(days=1)


def test_deny_redirects_with_access_denied_and_state_and_grants_nothing(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    _, _, url, state = start(client, vendor)

    location = consent(client, url, decision="deny")

    assert location.startswith(REDIRECT_URI + "?")
    params = query_of(location)
    assert params["error"] == "access_denied"
    assert params["state"] == state
    assert "code" not in params
    assert find_grant(db, person, vendor) is None


def test_consent_post_with_a_tampered_redirect_uri_shows_an_error_page(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    _, _, url, _ = start(client, vendor)
    data = hidden_fields(client.get(url).text)
    data.update(redirect_uri="https://evil.example/callback", decision="allow", duration="30d")

    response = client.post("/oauth/authorize", data={**data, "field": ["email"]})

    assert_error_page(response)
    assert find_grant(db, person, vendor) is None


# -- incremental consent ----------------------------------------------------------------------
def test_already_granted_fields_get_a_code_without_showing_the_page(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    connect(client, vendor, SCOPE)
    oauth, verifier, url, state = start(client, vendor, "openid profile:email")

    response = client.get(url)

    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["state"] == state
    token = oauth.fetch_token(TOKEN_URL, code=params["code"], code_verifier=verifier)
    assert token["access_token"]


def test_asking_a_new_field_shows_the_page_with_only_that_field_marked_new(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    connect(client, vendor, "openid profile:email")
    _, _, url, _ = start(client, vendor, "openid profile:email profile:given_name")

    page = client.get(url)

    assert page.status_code == 200
    rows = field_rows(page.text)
    assert "new" not in rows["email"].split()
    assert "new" in rows["given_name"].split()


def test_consenting_to_a_new_field_widens_the_grant(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    connect(client, vendor, "openid profile:email")
    _, _, url, _ = start(client, vendor, "openid profile:given_name")

    consent(client, url)

    assert grant_of(db, person, vendor).fields == ["given_name", "email"]


def test_unticking_an_already_granted_field_narrows_the_grant(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, first = connect(client, vendor, SCOPE)
    oauth, code, verifier = code_for(
        client, vendor, "openid profile:email profile:given_name profile:phone", fields=["phone"]
    )
    token = oauth.fetch_token(TOKEN_URL, code=code, code_verifier=verifier)

    assert grant_of(db, person, vendor).fields == ["phone"]
    assert token["scope"].split() == ["openid", "profile:phone"]
    old_read = http.get(
        "/vendor/v1/profile", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert old_read.status_code == 200
    assert old_read.json()["fields"] == {}


# -- the token endpoint: codes ----------------------------------------------------------------
def test_code_with_a_different_redirect_uri_is_invalid_grant(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)

    response = redeem(http, vendor, code, verifier, redirect_uri="https://shop.example/other")

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_code_without_its_redirect_uri_is_invalid_grant(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)

    response = redeem(http, vendor, code, verifier, redirect_uri=None)

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_code_without_verifier_is_refused(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, _ = code_for(client, vendor)

    response = redeem(http, vendor, code, None)

    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert "access_token" not in response.json()


def test_code_with_the_wrong_verifier_is_invalid_grant(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, _ = code_for(client, vendor)

    response = redeem(http, vendor, code, new_verifier())

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_code_refused_for_a_wrong_verifier_cannot_be_tried_again(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)
    redeem(http, vendor, code, new_verifier())

    response = redeem(http, vendor, code, verifier)

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_replayed_code_is_invalid_grant_and_revokes_what_the_first_use_issued(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)
    first = redeem(http, vendor, code, verifier)
    assert first.status_code == 200
    token = first.json()
    assert profile_status(http, token["access_token"]) == 200

    replay = redeem(http, vendor, code, verifier)

    assert replay.status_code == 400
    assert error_of(replay) == "invalid_grant"
    assert profile_status(http, token["access_token"]) == 401
    assert introspect(http, vendor, token["access_token"]) == {"active": False}
    assert error_of(refresh(http, vendor, token["refresh_token"])) == "invalid_grant"
    [event] = events(db, "code.replayed")
    assert event.app_id == vendor.app.id


def ledger_count(db: Session, *event_types: str) -> int:
    db.expire_all()
    sequence(db)
    return int(
        db.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.event_type.in_(event_types))
        )
        or 0
    )


def test_a_family_replayed_again_and_again_is_recorded_once(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    """A client replaying its spent code and refresh tokens in a loop cannot grow the ledger:
    the first replay revokes the family and is recorded; the others change nothing."""
    _, code, verifier = code_for(client, vendor)
    first = redeem(http, vendor, code, verifier).json()
    refresh(http, vendor, first["refresh_token"])
    before = ledger_count(db, "code.replayed", "token.reuse_detected")

    for _ in range(5):
        assert error_of(redeem(http, vendor, code, verifier)) == "invalid_grant"
        assert error_of(refresh(http, vendor, first["refresh_token"])) == "invalid_grant"

    assert ledger_count(db, "code.replayed", "token.reuse_detected") == before + 1
    [event] = events(db, "code.replayed")
    assert events(db, "token.reuse_detected") == []
    assert event.family_id is not None


def test_code_is_bound_to_the_client_it_was_issued_to(
    client: TestClient, http: httpx.Client, db: Session, rt: Runtime, person: Account
) -> None:
    vendor = make_vendor(db, rt)
    thief = make_vendor(db, rt, name="Thief Shop")
    _, code, verifier = code_for(client, vendor)

    stolen = redeem(http, thief, code, verifier)

    assert stolen.status_code == 400
    assert error_of(stolen) == "invalid_grant"
    assert redeem(http, vendor, code, verifier).status_code == 200


def test_codes_live_for_at_most_a_minute(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    code_for(client, vendor)

    db.expire_all()
    row = db.scalars(select(AuthorizationCode)).one()
    assert CODE_SECONDS <= 60
    assert row.expires_at - row.created_at == timedelta(seconds=CODE_SECONDS)


def test_expired_code_is_invalid_grant(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)
    row = db.scalars(select(AuthorizationCode)).one()
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()

    response = redeem(http, vendor, code, verifier)

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


def test_unknown_code_is_invalid_grant(http: httpx.Client, vendor: Vendor, person: Account) -> None:
    response = redeem(http, vendor, "not-a-code", new_verifier())

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"


# -- the token endpoint: clients and grant types ----------------------------------------------
def test_password_grant_is_unsupported(http: httpx.Client, vendor: Vendor) -> None:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "someone", "password": "secret"},
        auth=(vendor.client_id, vendor.secret),
    )

    assert response.status_code == 400
    assert error_of(response) == "unsupported_grant_type"


def test_client_secret_post_authenticates_at_the_token_endpoint(
    client: TestClient, db: Session, rt: Runtime, person: Account
) -> None:
    vendor = make_vendor(db, rt, auth_method="client_secret_post")
    oauth = oauth_client(client, vendor, SCOPE, auth_method="client_secret_post")
    verifier = new_verifier()
    url, _ = authorize_url(oauth, verifier)
    code = query_of(consent(client, url))["code"]

    token = oauth.fetch_token(TOKEN_URL, code=code, code_verifier=verifier)

    assert token["access_token"] and token["refresh_token"]
    assert oauth.get(f"{BASE}/vendor/v1/profile").status_code == 200


def test_wrong_client_secret_is_401_invalid_client(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)

    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(vendor.client_id, vendor.secret + "x"),
    )

    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert redeem(http, vendor, code, verifier).status_code == 200


def test_wrong_client_secret_in_the_body_is_401_invalid_client(
    http: httpx.Client, vendor: Vendor
) -> None:
    response = http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "whatever",
            "client_id": vendor.client_id,
            "client_secret": "not-the-secret",
        },
    )

    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


# Each endpoint that authenticates clients, with a request an app may make there.
AUTHENTICATED_REQUESTS = {
    "token": ("/oauth/token", {"grant_type": "client_credentials", "scope": "intents:read"}),
    "introspect": ("/oauth/introspect", {"token": "whatever"}),
    "revoke": ("/oauth/revoke", {"token": "whatever"}),
}


def authenticated_post(
    http: httpx.Client, vendor: Vendor, endpoint: str, method: str
) -> httpx.Response:
    path, data = AUTHENTICATED_REQUESTS[endpoint]
    if method == "client_secret_basic":
        return http.post(path, data=data, auth=(vendor.client_id, vendor.secret))
    body = {**data, "client_id": vendor.client_id, "client_secret": vendor.secret}
    return http.post(path, data=body)


AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@pytest.mark.parametrize("endpoint", sorted(AUTHENTICATED_REQUESTS))
@pytest.mark.parametrize("registered", AUTH_METHODS)
def test_an_app_authenticates_only_with_the_method_it_registered(
    http: httpx.Client, db: Session, rt: Runtime, registered: str, endpoint: str
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=("intents:read",), auth_method=registered)
    other = next(m for m in AUTH_METHODS if m != registered)
    tokens = db.scalar(select(func.count()).select_from(OAuthToken))

    refused = authenticated_post(http, vendor, endpoint, other)

    assert refused.status_code == 401, refused.text
    assert error_of(refused) == "invalid_client"
    assert "token_endpoint_auth_method" in refused.json()["error_description"]
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(OAuthToken)) == tokens
    assert authenticated_post(http, vendor, endpoint, registered).status_code == 200


def test_revocation_with_the_wrong_auth_method_leaves_the_token_alive(
    client: TestClient, http: httpx.Client, db: Session, rt: Runtime, person: Account
) -> None:
    vendor = make_vendor(db, rt, auth_method="client_secret_post")
    oauth = oauth_client(client, vendor, SCOPE, auth_method="client_secret_post")
    verifier = new_verifier()
    url, _ = authorize_url(oauth, verifier)
    code = query_of(consent(client, url))["code"]
    token = oauth.fetch_token(TOKEN_URL, code=code, code_verifier=verifier)

    response = revoke(http, vendor, token["access_token"])  # HTTP Basic

    assert response.status_code == 401
    assert profile_status(http, token["access_token"]) == 200


def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


# Authorization headers a broken (or hostile) client might send instead of HTTP Basic
# (RFC 7617: base64 of the UTF-8 "client_id:secret", each form-urlencoded by RFC 6749 2.3.1).
BAD_BASIC: dict[str, str | Callable[[Vendor], str]] = {
    "not_utf8": "Basic //46/w==",
    "not_utf8_with_a_colon": basic(b"\xff\xfe:\xff"),
    "not_base64": "Basic !!not*base64!!",
    "bad_padding": "Basic YWJjZA",
    "nothing_after_the_scheme": "Basic  ",
    "no_colon": lambda vendor: basic(vendor.client_id.encode()),
    "empty_secret": lambda vendor: basic(vendor.client_id.encode() + b":"),
    "nul_in_client_id": basic(b"vrm_\x00:secret"),
    "encoded_nul_in_client_id": basic(b"vrm_%00:secret"),
    "control_character_in_client_id": lambda vendor: basic(
        vendor.client_id.encode() + b"\n:" + vendor.secret.encode()
    ),
}
CLIENT_ENDPOINTS = {
    "token": ("/oauth/token", {"grant_type": "client_credentials"}),
    "introspect": ("/oauth/introspect", {"token": "whatever"}),
    "revoke": ("/oauth/revoke", {"token": "whatever"}),
}


@pytest.mark.parametrize("endpoint", sorted(CLIENT_ENDPOINTS))
@pytest.mark.parametrize("case", sorted(BAD_BASIC))
def test_malformed_basic_credentials_are_401_invalid_client(
    http: httpx.Client, db: Session, vendor: Vendor, case: str, endpoint: str
) -> None:
    header = BAD_BASIC[case]
    path, data = CLIENT_ENDPOINTS[endpoint]
    tokens = db.scalar(select(func.count()).select_from(OAuthToken))

    response = http.post(
        path, data=data, headers={"Authorization": header(vendor) if callable(header) else header}
    )

    assert response.status_code == 401, response.text
    assert error_of(response) == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(OAuthToken)) == tokens


@pytest.mark.parametrize("client_id", ["vrm_\x00", "vrm_\x7f", "vrm_\u00e9"])
def test_a_client_id_outside_rfc_6749s_characters_in_the_body_is_invalid_client(
    http: httpx.Client, client_id: str
) -> None:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"},
    )

    assert response.status_code in (400, 401)
    assert error_of(response) == "invalid_client"


# -- refresh tokens ---------------------------------------------------------------------------
def test_refresh_rotates_both_tokens(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)

    response = refresh(http, vendor, token["refresh_token"])

    assert response.status_code == 200
    new = response.json()
    assert new["access_token"] != token["access_token"]
    assert new["refresh_token"] != token["refresh_token"]
    assert profile_status(http, new["access_token"]) == 200
    assert profile_status(http, token["access_token"]) == 401


def test_reused_refresh_token_revokes_the_family_and_records_reuse(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)
    rotated = refresh(http, vendor, token["refresh_token"]).json()

    reuse = refresh(http, vendor, token["refresh_token"])

    assert reuse.status_code == 400
    assert error_of(reuse) == "invalid_grant"
    assert profile_status(http, rotated["access_token"]) == 401
    assert introspect(http, vendor, rotated["refresh_token"]) == {"active": False}
    assert error_of(refresh(http, vendor, rotated["refresh_token"])) == "invalid_grant"
    [event] = events(db, "token.reuse_detected")
    assert event.app_id == vendor.app.id
    assert event.grant_id == grant_of(db, person, vendor).id


def test_refresh_token_is_bound_to_its_client(
    client: TestClient, http: httpx.Client, db: Session, rt: Runtime, person: Account
) -> None:
    vendor = make_vendor(db, rt)
    thief = make_vendor(db, rt, name="Thief Shop")
    _, token = connect(client, vendor)

    stolen = refresh(http, thief, token["refresh_token"])

    assert stolen.status_code == 400
    assert error_of(stolen) == "invalid_grant"
    assert refresh(http, vendor, token["refresh_token"]).status_code == 200


# -- client credentials -----------------------------------------------------------------------
def test_client_credentials_give_a_vendor_scoped_token_without_refresh(
    http: httpx.Client, db: Session, rt: Runtime
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=("intents:read", "offers:write"))

    response = client_credentials(http, vendor, "intents:read offers:write")

    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"].lower() == "bearer"
    assert set(token["scope"].split()) == {"intents:read", "offers:write"}
    assert "refresh_token" not in token
    body = introspect(http, vendor, token["access_token"])
    assert body["active"] is True
    assert body["client_id"] == vendor.client_id
    assert "sub" not in body


def test_client_credentials_for_a_scope_the_app_lacks_is_invalid_scope(
    http: httpx.Client, db: Session, rt: Runtime
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=("intents:read",))

    response = client_credentials(http, vendor, "intents:read offers:write")

    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"


def test_client_credentials_cannot_ask_for_profile_fields(
    http: httpx.Client, db: Session, rt: Runtime
) -> None:
    vendor = make_vendor(db, rt, vendor_scopes=("intents:read",))

    response = client_credentials(http, vendor, "profile:email")

    assert response.status_code == 400
    assert error_of(response) == "invalid_scope"


def test_client_credentials_for_an_app_without_vendor_scopes_is_unauthorized_client(
    http: httpx.Client, vendor: Vendor
) -> None:
    response = client_credentials(http, vendor, "intents:read")

    assert response.status_code == 400
    assert error_of(response) == "unauthorized_client"


# -- introspection and revocation -------------------------------------------------------------
def test_introspection_describes_a_live_access_token(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)
    sub = jwt.decode(
        token["id_token"], KeySet.import_key_set(http.get("/oauth/jwks").json())
    ).claims["sub"]

    body = introspect(http, vendor, token["access_token"])

    assert body["active"] is True
    assert body["sub"] == sub
    assert body["client_id"] == vendor.client_id
    assert set(body["scope"].split()) == {"openid", "profile:email", "profile:given_name"}
    assert body["token_type"] == "Bearer"
    assert body["exp"] > body["iat"]


def test_introspection_describes_a_live_refresh_token(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)

    body = introspect(http, vendor, token["refresh_token"], hint="refresh_token")

    assert body["active"] is True
    assert body["client_id"] == vendor.client_id
    assert body["sub"]


def test_introspection_of_an_unknown_token_is_inactive(http: httpx.Client, vendor: Vendor) -> None:
    assert introspect(http, vendor, "no-such-token") == {"active": False}


def test_client_cannot_introspect_another_clients_token(
    client: TestClient, http: httpx.Client, db: Session, rt: Runtime, person: Account
) -> None:
    vendor = make_vendor(db, rt)
    other = make_vendor(db, rt, name="Other Shop")
    _, token = connect(client, vendor)

    assert introspect(http, other, token["access_token"]) == {"active": False}
    assert introspect(http, other, token["refresh_token"]) == {"active": False}
    assert introspect(http, vendor, token["access_token"])["active"] is True


def test_introspection_needs_client_authentication(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)

    response = http.post("/oauth/introspect", data={"token": token["access_token"]})

    assert response.status_code == 401
    assert error_of(response) == "invalid_client"


def test_revoked_access_token_is_inactive_and_refused(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)

    response = revoke(http, vendor, token["access_token"], hint="access_token")

    assert response.status_code == 200
    assert introspect(http, vendor, token["access_token"]) == {"active": False}
    assert profile_status(http, token["access_token"]) == 401


def test_revoking_the_refresh_token_ends_its_access_token_too(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)

    assert revoke(http, vendor, token["refresh_token"], hint="refresh_token").status_code == 200

    assert introspect(http, vendor, token["refresh_token"]) == {"active": False}
    assert profile_status(http, token["access_token"]) == 401
    assert error_of(refresh(http, vendor, token["refresh_token"])) == "invalid_grant"


def test_revoking_an_unknown_token_answers_200(http: httpx.Client, vendor: Vendor) -> None:
    assert revoke(http, vendor, "no-such-token").status_code == 200


def test_client_cannot_revoke_another_clients_token(
    client: TestClient, http: httpx.Client, db: Session, rt: Runtime, person: Account
) -> None:
    vendor = make_vendor(db, rt)
    other = make_vendor(db, rt, name="Other Shop")
    _, token = connect(client, vendor)

    response = revoke(http, other, token["access_token"])

    assert response.status_code == 400
    assert error_of(response) == "invalid_grant"
    assert profile_status(http, token["access_token"]) == 200
    assert introspect(http, vendor, token["access_token"])["active"] is True
    assert refresh(http, vendor, token["refresh_token"]).status_code == 200


def test_expired_access_token_is_inactive_and_refused(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)
    db.expire_all()
    row = db.scalars(select(OAuthToken)).one()
    row.access_expires_at = utcnow() - timedelta(seconds=1)
    db.commit()

    assert introspect(http, vendor, token["access_token"]) == {"active": False}
    assert profile_status(http, token["access_token"]) == 401
    assert refresh(http, vendor, token["refresh_token"]).status_code == 200


def test_expired_refresh_token_is_inactive_and_refused(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)
    db.expire_all()
    row = db.scalars(select(OAuthToken)).one()
    row.refresh_expires_at = utcnow() - timedelta(seconds=1)
    db.commit()

    assert introspect(http, vendor, token["refresh_token"]) == {"active": False}
    assert error_of(refresh(http, vendor, token["refresh_token"])) == "invalid_grant"


# -- grant revocation and expiry --------------------------------------------------------------
def _pending_code(client: TestClient, vendor: Vendor) -> tuple[str, str]:
    """A second code for the same grant, issued without the page (nothing new asked)."""
    _, verifier, url, _ = start(client, vendor)
    response = client.get(url)
    assert response.status_code == 302
    return query_of(response.headers["location"])["code"], verifier


def assert_grant_is_dead(
    http: httpx.Client, vendor: Vendor, token: dict[str, Any], code: str, verifier: str
) -> None:
    assert profile_status(http, token["access_token"]) == 401
    assert introspect(http, vendor, token["access_token"]) == {"active": False}
    assert introspect(http, vendor, token["refresh_token"]) == {"active": False}
    assert error_of(refresh(http, vendor, token["refresh_token"])) == "invalid_grant"
    assert error_of(redeem(http, vendor, code, verifier)) == "invalid_grant"


def test_revoking_the_grant_invalidates_its_codes_and_tokens_at_once(
    client: TestClient,
    http: httpx.Client,
    db: Session,
    rt: Runtime,
    person: Account,
    vendor: Vendor,
) -> None:
    _, token = connect(client, vendor)
    code, verifier = _pending_code(client, vendor)
    grant = grant_of(db, person, vendor)

    GrantService(db, rt).revoke(person.id, grant.id)
    db.commit()

    assert_grant_is_dead(http, vendor, token, code, verifier)
    db.expire_all()
    assert all(row.revoked_at is not None for row in db.scalars(select(OAuthToken)))
    assert all(row.used_at is not None for row in db.scalars(select(AuthorizationCode)))


def test_expired_grant_invalidates_its_codes_and_tokens(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)
    code, verifier = _pending_code(client, vendor)
    grant = grant_of(db, person, vendor)
    grant.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()

    assert_grant_is_dead(http, vendor, token, code, verifier)


def test_expired_grant_asks_for_consent_again(
    client: TestClient, db: Session, person: Account, vendor: Vendor
) -> None:
    connect(client, vendor)
    grant = grant_of(db, person, vendor)
    grant.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    _, _, url, _ = start(client, vendor)

    page = client.get(url)

    assert page.status_code == 200
    assert all("new" in row.split() for row in field_rows(page.text).values())


# -- pairwise subjects ------------------------------------------------------------------------
def test_two_vendors_see_different_subjects_for_the_same_person(
    client: TestClient, http: httpx.Client, db: Session, rt: Runtime, person: Account
) -> None:
    keys = KeySet.import_key_set(http.get("/oauth/jwks").json())
    subs = []
    for name in ("First Shop", "Second Shop"):
        vendor = make_vendor(db, rt, name=name)
        oauth, token = connect(client, vendor)
        id_sub = jwt.decode(token["id_token"], keys).claims["sub"]
        assert oauth.get(f"{BASE}/vendor/v1/profile").json()["sub"] == id_sub
        subs.append(id_sub)

    assert subs[0] != subs[1]
    assert not {str(person.id), person.id.hex} & set(subs)


def test_tokens_of_an_expired_grant_stay_dead_after_consenting_again(
    client: TestClient, http: httpx.Client, db: Session, person: Account, vendor: Vendor
) -> None:
    _, token = connect(client, vendor)
    grant = grant_of(db, person, vendor)
    grant.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    _, _, url, _ = start(client, vendor)

    consent(client, url)

    assert profile_status(http, token["access_token"]) == 401
    assert introspect(http, vendor, token["refresh_token"]) == {"active": False}
    assert error_of(refresh(http, vendor, token["refresh_token"])) == "invalid_grant"


def test_replaying_a_code_after_refresh_revokes_the_rotated_tokens_too(
    client: TestClient, http: httpx.Client, person: Account, vendor: Vendor
) -> None:
    _, code, verifier = code_for(client, vendor)
    first = redeem(http, vendor, code, verifier).json()
    rotated = refresh(http, vendor, first["refresh_token"]).json()

    assert error_of(redeem(http, vendor, code, verifier)) == "invalid_grant"

    assert profile_status(http, rotated["access_token"]) == 401
    assert error_of(refresh(http, vendor, rotated["refresh_token"])) == "invalid_grant"


def test_implicit_grant_with_an_unregistered_redirect_uri_shows_an_error_page(
    client: TestClient, person: Account, vendor: Vendor
) -> None:
    response = client.get(
        authorize_query(vendor, response_type="token", redirect_uri="https://evil.example/cb")
    )

    assert_error_page(response)
