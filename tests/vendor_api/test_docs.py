"""The vendor API's OpenAPI document and its rendered reference page, with the worked example."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.service import Decision, GrantService
from consent.vendors import ratelimit
from consent.webhooks import signing
from consent.webhooks.events import WebhookEvent
from consent.webhooks.models import WebhookMessage
from intents.blocks import BlockService
from intents.decisions import OfferDecisions
from intents.rules import parse_intent
from intents.service import IntentService
from intents.tokens import GRANT_TYPE as ACCEPTED_OFFER
from tests.consent.factories import individual
from tests.intents.factories import BIKE, app_token, make_intent, market_vendor, offer_body
from tests.web.conftest import MakeClient
from vault.base import utcnow
from vault.portability import erasure
from vault.runtime import Runtime
from vendor_api import docs
from vrm.wiring import portability
from web import vendor_reference

DOC = "/vendor/openapi.json"
PAGE = "/vendor/docs"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get(DOC)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operations(section: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in section.items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def event_types() -> set[str]:
    """Every webhook event type the vault's packages define (a model each)."""
    found: list[type[WebhookEvent]] = []
    todo = [WebhookEvent]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return {e.event_type for e in found if not e.__module__.startswith("tests.")}


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


# -- the document ------------------------------------------------------------------------------


def test_the_document_is_a_well_formed_openapi_3_1_document(
    document: dict[str, Any], app: FastAPI, rt: Runtime
) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] == "VRM Vault vendor API"
    assert document["info"]["version"] == app.version
    assert document["servers"] == [{"url": rt.settings.base_url}]
    for ref in refs(document):
        resolve(document, ref)
    schemes = document["components"]["securitySchemes"]
    ids = []
    for path, method, operation in [
        *operations(document["paths"]),
        *operations(document["webhooks"]),
    ]:
        ids.append(operation["operationId"])
        assert operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", status), (path, status)
            assert response["description"], (method, path, status)
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
        for requirement in operation.get("security", []):
            for scheme, needed in requirement.items():
                assert scheme in schemes, (path, scheme)
                flows = schemes[scheme].get("flows", {})
                offered = {s for flow in flows.values() for s in flow["scopes"]}
                assert set(needed) <= offered, (path, needed)
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_the_document_has_every_vendor_v1_route_and_no_portal_or_audit_route(
    document: dict[str, Any], app: FastAPI
) -> None:
    served = {
        (route.path_format, method.lower())
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        and route.include_in_schema
        and route.path_format.startswith("/vendor/v1")
        for method in route.methods
    }
    documented = {(path, method) for path, method, _ in operations(document["paths"])}

    assert served, "the app serves no /vendor/v1 routes?"
    assert served <= documented
    assert documented - served == {("/oauth/token", "post"), ("/oauth/userinfo", "get")}
    assert "/profile" not in document["paths"]
    assert not [p for p in document["paths"] if p.startswith(("/api/", "/audit", "/console"))]


def test_the_token_endpoint_is_a_form_with_every_grant_and_rfc_6749_answers(
    document: dict[str, Any],
) -> None:
    token = document["paths"]["/oauth/token"]["post"]

    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    fields = resolve(document, form["$ref"])["properties"]
    assert set(fields["grant_type"]["enum"]) >= {
        "client_credentials",
        "authorization_code",
        "refresh_token",
        ACCEPTED_OFFER,
    }
    assert {"scope", "code", "code_verifier", "refresh_token", "offer_id"} <= set(fields)
    assert set(token["responses"]) == {"200", "400", "401", "413", "415"}
    error = token["responses"]["400"]["content"]["application/json"]["schema"]
    assert "error_description" in resolve(document, error["$ref"])["properties"]
    assert {"ClientSecretBasic": []} in token["security"]
    assert document["components"]["securitySchemes"]["ClientSecretBasic"]["scheme"] == "basic"


def test_the_app_token_is_client_credentials_with_both_scopes_and_each_route_names_its_own(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    flow = schemes["AppToken"]["flows"]["clientCredentials"]

    assert flow["tokenUrl"] == "/oauth/token"
    assert set(flow["scopes"]) == {"intents:read", "offers:write"}
    assert schemes["AccessToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["AccessToken"]["description"],
    }
    paths = document["paths"]
    assert paths["/vendor/v1/intents"]["get"]["security"] == [{"AppToken": ["intents:read"]}]
    offer = paths["/vendor/v1/intents/{intent_id}/offers"]["post"]
    assert offer["security"] == [{"AppToken": ["offers:write"]}]
    assert paths["/vendor/v1/profile"]["get"]["security"] == [{"IndividualToken": []}]
    assert "security" not in paths["/vendor/v1/categories"]["get"]


def test_authenticated_operations_declare_rate_limit_headers_and_429_with_retry_after(
    document: dict[str, Any],
) -> None:
    listing = document["paths"]["/vendor/v1/intents"]["get"]["responses"]

    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
        listing["200"]["headers"]
    )
    assert "Retry-After" in listing["429"]["headers"]
    # The app's 422 body is {error, detail}, not FastAPI's default list of errors.
    invalid = listing["422"]["content"]["application/json"]["schema"]
    assert invalid == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_webhooks_describe_every_event_the_vault_sends_with_their_headers(
    document: dict[str, Any],
) -> None:
    hooks = document["webhooks"]

    assert set(hooks) == event_types()
    for name, item in hooks.items():
        post = item["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}, name
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["type"]["const"] == name
        assert resolve(document, body["properties"]["data"]["$ref"])["properties"], name


def test_the_document_is_built_once_per_app(client: TestClient, app: FastAPI) -> None:
    first = client.get(DOC).json()
    cached = app.state.vendor_openapi

    assert client.get(DOC).json() == first
    assert app.state.vendor_openapi is cached


# -- the documented payloads are the ones the vault queues --------------------------------------


def queued(db: Session, *apps: Any) -> list[WebhookMessage]:
    db.expire_all()
    return list(
        db.scalars(
            select(WebhookMessage)
            .where(WebhookMessage.app_id.in_([a.id for a in apps]))
            .order_by(WebhookMessage.created_at)
        )
    )


def documented_body(document: dict[str, Any], event_type: str) -> jsonschema.Validator:
    """A validator of the webhook body the document describes for ``event_type`` (its
    ``$ref``s resolved in the document; moments checked as ISO 8601 with an offset)."""
    post = document["webhooks"][event_type]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    formats = jsonschema.FormatChecker(formats=())

    @formats.checks("date-time", raises=ValueError)
    def moment(value: object) -> bool:
        return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None

    schema = {**body, "components": document["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=formats)


def test_every_queued_webhook_payload_matches_its_documented_schema(
    client: TestClient, db: Session, rt: Runtime, document: dict[str, Any]
) -> None:
    owner = individual(client, db, rt, given_name="Ada", email="ada@example.org")
    shop, other = market_vendor(db, rt), market_vendor(db, rt, name="Other")
    blocked = market_vendor(db, rt, name="Blocked")
    subscriber = market_vendor(db, rt, name="Subscriber")  # intent.published and the rest
    subscribed = client.post(
        "/vendor/v1/subscriptions", headers=app_token(db, rt, subscriber), json={}
    )
    assert subscribed.status_code == 201, subscribed.text
    shop_auth, other_auth = app_token(db, rt, shop), app_token(db, rt, other)
    accepted, declined, withdrawn, changed, hidden, plain = (
        make_intent(db, rt, owner, title=t) for t in "ABCDEF"
    )

    def offer(intent_id: uuid.UUID, headers: dict[str, str]) -> uuid.UUID:
        response = client.post(
            f"/vendor/v1/intents/{intent_id}/offers", headers=headers, json=offer_body()
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    intents = IntentService(db, rt)
    decisions = OfferDecisions(db, rt)
    winner = offer(accepted.id, shop_auth)
    offer(accepted.id, other_auth)
    decisions.accept(owner, accepted.id, winner, fields=["given_name", "email"], duration="30d")
    decisions.accept(owner, plain.id, offer(plain.id, other_auth), fields=[])  # grant_id null
    decisions.decline(owner, declined.id, offer(declined.id, shop_auth))
    offer(withdrawn.id, shop_auth)
    intents.withdraw(owner, withdrawn.id)
    offer(changed.id, shop_auth)  # lapses when the individual changes the terms
    intents.update(owner, changed.id, parse_intent({**BIKE, "title": "D", "currency": "JPY"}))
    offer(hidden.id, app_token(db, rt, blocked))
    BlockService(db, rt).block(owner, blocked.app.id)
    grants = GrantService(db, rt)
    grant = grants.active(owner.id, shop.app.id)
    assert grant is not None
    grants.narrow(owner.id, grant.id, ["given_name"])
    grants.revoke(owner.id, grant.id)
    ending = grants.decide(owner.id, other.app, Decision(["email"], "1d"), "service-only")
    ending.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    assert grants.expire_due() == 1
    erasure.erase(db, rt, portability(rt), owner.id)  # subject.erased to every app
    db.commit()

    messages = queued(db, shop.app, other.app, blocked.app, subscriber.app)
    assert {m.event_type for m in messages} == event_types()
    reasons = {(m.event_type, m.payload["data"].get("reason")) for m in messages}
    assert {("offer.lapsed", "intent_changed"), ("consent.revoked", "expired")} <= reasons
    for message in messages:
        assert message.payload["type"] == message.event_type
        # Documented schemas forbid unknown keys: a new, missing or mistyped key fails here.
        errors = documented_body(document, message.event_type).iter_errors(message.payload)
        assert [e.message for e in errors] == [], message.payload


def test_the_document_checks_a_payload_it_does_not_describe(document: dict[str, Any]) -> None:
    validator = documented_body(document, "consent.revoked")
    payload = {
        "type": "consent.revoked",
        "timestamp": "2030-05-17T09:30:12.345678Z",
        "data": {
            "grant_id": str(uuid.uuid4()),
            "subject": "3f" * 32,
            "scopes": ["profile:email"],
            "purpose": "Contact you about your repair",
            "agreement": "sd-base",
            "granted_at": "2030-05-01T08:00:00+00:00",
            "expires_at": None,
            "revoked_at": "2030-05-02T08:00:00+00:00",
            "reason": "revoked",
        },
    }
    assert validator.is_valid(payload)
    for data in (
        {**payload["data"], "fields": ["email"]},
        {**payload["data"], "reason": "erased"},
        {**payload["data"], "granted_at": "yesterday"},
        {k: v for k, v in payload["data"].items() if k != "subject"},
    ):
        assert not validator.is_valid({**payload, "data": data}), data


# -- the errors it declares are the ones it answers with --------------------------------------


def test_every_error_a_vendor_gets_is_declared_on_its_operation(
    client: TestClient,
    client_with: MakeClient,
    db: Session,
    rt: Runtime,
    document: dict[str, Any],
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = individual(client, db, rt)
    intent, closed = make_intent(db, rt, owner), make_intent(db, rt, owner, title="Closed")
    shop = market_vendor(db, rt)
    auth = app_token(db, rt, shop)
    IntentService(db, rt).withdraw(owner, closed.id)
    db.commit()
    made = client.post(f"/vendor/v1/intents/{intent.id}/offers", headers=auth, json=offer_body())
    OfferDecisions(db, rt).decline(owner, intent.id, uuid.UUID(made.json()["id"]))
    db.commit()
    offers = "/vendor/v1/intents/{intent_id}/offers"
    answered = [
        ("/vendor/v1/intents", "get", client.get("/vendor/v1/intents")),
        (
            "/vendor/v1/intents",
            "get",
            client.get("/vendor/v1/intents", headers=app_token(db, rt, shop, "offers:write")),
        ),
        (
            "/vendor/v1/intents",
            "get",
            client.get(
                "/vendor/v1/intents",
                headers=app_token(db, rt, market_vendor(db, rt, agreements=("service-only",))),
            ),
        ),
        ("/vendor/v1/intents", "get", client.get("/vendor/v1/intents?limit=0", headers=auth)),
        (
            "/vendor/v1/intents/{intent_id}",
            "get",
            client.get(f"/vendor/v1/intents/{uuid.uuid4()}", headers=auth),
        ),
        (
            offers,
            "post",
            client.post(
                f"/vendor/v1/intents/{intent.id}/offers",
                headers=auth,
                json=offer_body(currency="USD"),
            ),
        ),
        (
            offers,
            "post",
            client.post(f"/vendor/v1/intents/{intent.id}/offers", headers=auth, json=offer_body()),
        ),
        (
            offers,
            "post",
            client.post(f"/vendor/v1/intents/{closed.id}/offers", headers=auth, json=offer_body()),
        ),
        (
            offers,
            "post",
            client.post(
                f"/vendor/v1/intents/{intent.id}/offers", headers=auth, json={"price": ["1"]}
            ),
        ),
    ]
    moment = datetime.now(UTC).replace(second=20, microsecond=0)  # no window boundary between
    monkeypatch.setattr(ratelimit, "utcnow", lambda: moment)
    limited = client_with(vendor_reads_per_minute=1)
    limited.get("/vendor/v1/intents", headers=auth)
    answered.append(("/vendor/v1/intents", "get", limited.get("/vendor/v1/intents", headers=auth)))

    listed = {(e.status, e.code) for e in docs.error_codes(app)}
    seen = set()
    for path, method, response in answered:
        status, code = str(response.status_code), response.json()["error"]
        seen.add(code)
        declared = document["paths"][path][method]["responses"]
        assert status in declared, (path, method, status, code)
        assert f"`{code}`" in declared[status]["description"], (path, method, status, code)
        assert (response.status_code, code) in listed, (status, code)
    assert seen == {
        "invalid_token",
        "insufficient_scope",
        "agreement_required",
        "invalid_input",
        "not_found",
        "currency_mismatch",
        "offer_declined",
        "intent_closed",
        "validation_error",
        "rate_limited",
    }


def test_the_error_codes_are_those_the_routes_declare_with_their_sentences(app: FastAPI) -> None:
    codes = docs.error_codes(app)
    by_code = {(e.status, e.code): e.description for e in codes}

    assert len(by_code) == len(codes)
    assert by_code[(403, "agreement_required")].startswith("Your app does not accept")
    assert by_code[(429, "rate_limited")] == (
        "Your app is over its rate limit; wait `Retry-After` seconds."
    )
    assert "validation_error" in {code for _, code in by_code}
    # What no vendor route raises is not listed: the portal's and the generic codes.
    assert not {"forbidden", "conflict", "too_many_requests", "not_authenticated"} & {
        code for _, code in by_code
    }
    assert [(e.status, e.code) for e in codes] == sorted(by_code)


# -- the worked example runs -----------------------------------------------------------------------


def test_the_worked_example_loop_runs_against_the_api(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    example = vendor_reference.worked_example(rt.settings)
    owner = individual(client, db, rt, given_name="Ada", email="ada@example.org")
    intent = make_intent(db, rt, owner)
    shop = market_vendor(db, rt)
    basic = (shop.client_id, shop.secret)

    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "intents:read offers:write"},
        auth=basic,
    )
    assert token.status_code == 200, token.text
    assert set(token.json()) == set(json.loads(example["token_response"]))
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}

    listed = client.get("/vendor/v1/intents" + example["intents_query"], headers=bearer)
    assert [i["id"] for i in listed.json()["data"]] == [str(intent.id)]
    assert set(listed.json()["data"][0]) == set(json.loads(example["intents_response"])["data"][0])

    made = client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers={**bearer, "Content-Type": "application/json"},
        content=example["offer_body"],
    )
    assert made.status_code == 201, made.text
    assert set(made.json()) == set(json.loads(example["offer_response"]))

    OfferDecisions(db, rt).accept(
        owner, intent.id, uuid.UUID(made.json()["id"]), fields=["given_name", "email"]
    )
    db.commit()
    [event] = [m for m in queued(db, shop.app) if m.event_type == "offer.accepted"]
    assert set(event.payload["data"]) == set(json.loads(example["webhook_body"])["data"])

    exchanged = client.post(
        "/oauth/token",
        data={"grant_type": ACCEPTED_OFFER, "offer_id": event.payload["data"]["offer_id"]},
        auth=basic,
    )
    assert exchanged.status_code == 200, exchanged.text
    assert set(exchanged.json()) == set(json.loads(example["exchange_response"]))
    profile = client.get(
        "/vendor/v1/profile",
        headers={"Authorization": f"Bearer {exchanged.json()['access_token']}"},
    )
    assert profile.json()["fields"] == {"given_name": "Ada", "email": "ada@example.org"}


def test_the_sample_webhook_verifies_with_the_documented_python_snippet(rt: Runtime) -> None:
    example = vendor_reference.worked_example(rt.settings, now=datetime(2026, 3, 1, tzinfo=UTC))
    headers = {
        "webhook-id": example["webhook_id"],
        "webhook-timestamp": example["webhook_timestamp"],
        "webhook-signature": example["webhook_signature"],
    }
    body = example["webhook_raw_body"].encode()
    namespace: dict[str, Any] = {}
    exec(vendor_reference.VERIFY_SNIPPET, namespace)  # noqa: S102 (our own documented snippet)
    verify = namespace["verify"]

    payload = verify(example["webhook_secret"], headers, body, tolerance=10**10)

    assert payload["type"] == "offer.accepted"
    assert payload == signing.verify_signature(
        example["webhook_secret"],
        headers,
        body,
        now=datetime.fromtimestamp(int(example["webhook_timestamp"]), UTC),
    )
    with pytest.raises(ValueError, match="signature"):
        verify(example["webhook_secret"], headers, body.replace(b"849", b"1"), tolerance=10**10)
    with pytest.raises(ValueError, match="timestamp"):
        verify(example["webhook_secret"], headers, body)  # signed long ago


# -- the page --------------------------------------------------------------------------------------


def test_the_reference_page_shows_every_vendor_path_and_the_whole_loop(
    client: TestClient, document: dict[str, Any], rt: Runtime
) -> None:
    response = client.get(PAGE)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = html.unescape(response.text)
    for path, method, _ in operations(document["paths"]):
        assert f"{method.upper()} {path}" in page, (method, path)
    for event in event_types():
        assert event in page
    assert (
        'curl -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials '
        '-d "scope=intents:read offers:write" $BASE/oauth/token'
    ) in page
    assert f"BASE={rt.settings.base_url}" in page
    assert "/vendor/v1/intents?category=sports&country=NL&currency=EUR&budget_max=1000" in page
    assert "webhook-signature: v1," in page
    assert f"grant_type={ACCEPTED_OFFER}" in page
    assert "$BASE/vendor/v1/profile" in page
    assert vendor_reference.VERIFY_SNIPPET.strip() in page


def test_the_reference_page_documents_rate_limits_and_errors(client: TestClient) -> None:
    page = html.unescape(client.get(PAGE).text)

    for text in (
        "VRM_VENDOR_READS_PER_MINUTE",
        "VRM_VENDOR_WRITES_PER_MINUTE",
        "Retry-After",
        "RateLimit-Remaining",
        "rate_limited",
        '{"error": code, "detail": sentence}',
    ):
        assert text in page, text


def test_the_reference_page_lists_the_error_codes_the_routes_declare(
    client: TestClient, app: FastAPI
) -> None:
    page = client.get(PAGE).text
    table = page[page.index('id="errors"') : page.index('id="auth"')]

    rows = re.findall(r'<tr><th scope="row">(\d{3})</th><td><code>(\w+)</code></td>', table)

    assert [(int(status), code) for status, code in rows] == [
        (e.status, e.code) for e in docs.error_codes(app)
    ]
    assert ("403", "agreement_required") in rows and ("409", "offer_declined") in rows
    assert "wait <code>Retry-After</code> seconds" in table


def test_the_reference_page_renders_schema_tables_from_the_document(
    client: TestClient, document: dict[str, Any]
) -> None:
    page = client.get(PAGE).text

    for name, schema in document["components"]["schemas"].items():
        assert f'id="schema-{name}"' in page, name
        for field in schema.get("properties", {}):
            assert f"<code>{field}</code>" in page, (name, field)


def test_the_reference_page_has_no_inline_script_style_or_outside_resource(
    client: TestClient,
) -> None:
    response = client.get(PAGE)
    page = response.text.lower()

    assert "<script" not in page
    assert "style=" not in page
    assert "<style" not in page
    assert not re.search(r"""<(script|img|link|iframe)[^>]*(src|href)=["']?(https?:)?//""", page)
    assert "script-src 'self'" in response.headers["content-security-policy"]
