"""Bad input on every operation of both OpenAPI documents never gets a 500.

The app serves two documents: ``/api/openapi.json`` (everything with a schema) and
``/vendor/openapi.json`` (the vendor's view, with the token endpoint's form). For each
operation, with the credentials it needs, every JSON string of its request body (values and
object keys, every alternative of a union), every form field, every string query and path
parameter gets text that is not Unicode (a lone UTF-16 surrogate) and text that PostgreSQL
cannot hold (a NUL), and every integer (query or body) a value no column holds; one request
per input, the rest of the request valid. A field added later is fed the same without anyone
listing it.

JSON carries a lone surrogate as the escape ``\\ud800``; a URL or a form can only carry the
bytes ``%ED%A0%80`` (what U+D800 would be in UTF-8), which the server decodes with
replacement characters. Every request carries valid credentials, and the answers must be
validation errors, not 401s, so the test cannot pass without reaching the handlers.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.oauth.registration import issue_registration_token
from intents.tokens import GRANT_TYPE as ACCEPTED_OFFER
from tests.consent.factories import bearer, connect, individual
from tests.consent.oauth_helpers import REDIRECT_URI
from tests.helpers import PASSWORD, api_headers, sign_in, unique_email
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from tests.web.conftest import runtime_with
from vault.accounts.models import Role
from vault.profile.catalogue import STANDARD_FIELDS
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from vrm.app import create_app

DOCUMENTS = ("/api/openapi.json", "/vendor/openapi.json")
BAD_TEXT = ["Al\ud800ice", "Al\x00ice"]  # json.dumps sends "Al\ud800ice", "Al\u0000ice"
BAD_TEXT_IN_A_URL = ["Al%ED%A0%80ice", "Al%00ice"]
HUGE = 67382396045834911744  # more than 64 bits
KEY = object()  # a step in a path: "an object key", not a property
METHODS = ("get", "put", "post", "patch", "delete")
# What an answer says when the credentials did not do (Authlib's 401 unsupported_token_type
# for a token_type_hint it does not know is about the input, not the caller).
AUTH_FAILURES = {
    "not_authenticated",
    "forbidden",
    "csrf_failed",
    "invalid_client",
    "invalid_token",
    "insufficient_scope",
}

# Valid requests, each input of which is then replaced in turn; an operation not listed gets
# a body made from its schema.
GOOD_JSON: dict[tuple[str, str], Callable[[], Any]] = {
    ("put", "/api/v1/profile/fields/{key}"): lambda: {"value": "Ada"},
    ("post", "/api/v1/profile/custom"): lambda: {"label": "Pet", "value": "Cat"},
    ("post", "/vendor/v1/intents/{intent_id}/offers"): offer_body,
    ("patch", "/vendor/v1/offers/{offer_id}"): lambda: {"message": "Delivered tomorrow."},
    ("post", "/oauth/register"): lambda: {
        "client_name": "Acme Outdoor",
        "redirect_uris": ["https://acme.example/callback"],
        "client_uri": "https://acme.example",
        "policy_uri": "https://acme.example/privacy",
        "purpose": "Ship your orders.",
        "accepted_agreements": ["service-only"],
    },
}
GOOD_FORMS: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/oauth/token"): {"grant_type": "client_credentials", "scope": "intents:read"},
    ("post", "/oauth/introspect"): {"token": "whatever", "token_type_hint": "access_token"},
    ("post", "/oauth/revoke"): {"token": "whatever", "token_type_hint": "access_token"},
}
# Forms the main document does not describe (their endpoints read the form themselves).
UNDESCRIBED_FORMS = {("post", "/oauth/introspect"), ("post", "/oauth/revoke")}


@dataclass
class World:
    """One of each kind of caller, and something of each kind to point at."""

    person: TestClient
    auditor: TestClient
    csrf: dict[str, str]
    app_token: dict[str, str]
    grant_token: dict[str, str]
    basic: dict[str, str]
    path_values: dict[str, list[str]]
    db: Session
    rt: Runtime

    def credentials(self, path: str) -> tuple[TestClient, dict[str, str]]:
        """The browser and headers an operation at ``path`` needs."""
        if path.startswith("/api/v1/profile"):
            return self.person, self.csrf
        if path.startswith("/api/audit/"):
            return self.auditor, {}
        if path in ("/vendor/v1/profile", "/oauth/userinfo") or path.startswith(
            "/vendor/v1/receipts/"
        ):
            return self.person, self.grant_token
        if path.startswith("/vendor/v1/"):
            return self.person, self.app_token
        if path in ("/oauth/token", "/oauth/introspect", "/oauth/revoke"):
            return self.person, self.basic
        if path == "/oauth/register":
            _, token = issue_registration_token(self.db, self.rt)
            self.db.commit()
            return self.person, {"Authorization": f"Bearer {token}"}
        if path in ("/healthz", "/readyz", "/oauth/jwks") or path.startswith("/.well-known/"):
            return self.person, {}
        pytest.fail(f"no credentials for {path}: say in World.credentials which it needs")


@pytest.fixture
def world(rt: Runtime, db: Session) -> Iterator[World]:
    runtime = runtime_with(
        rt, vendor_reads_per_minute=1_000_000, vendor_writes_per_minute=1_000_000
    )
    app: FastAPI = create_app(runtime=runtime)
    # A 500 is an answer to count here, not an exception to stop at.
    with (
        TestClient(app, raise_server_exceptions=False, follow_redirects=False) as person,
        TestClient(app, raise_server_exceptions=False, follow_redirects=False) as auditor,
    ):
        account = individual(person, db, rt, given_name="Ada", phone="+31 20 123 4567")
        vendor = market_vendor(db, rt)
        app_headers = app_token(db, rt, vendor)
        grant = connect(db, rt, account, vendor.app, ["given_name", "email"])
        intent = make_intent(db, rt, account)
        offer = person.post(
            f"/vendor/v1/intents/{intent.id}/offers", headers=app_headers, json=offer_body()
        )
        assert offer.status_code == 201, offer.text
        subscription = person.post(
            "/vendor/v1/subscriptions", headers=app_headers, json={"currency": "EUR"}
        )
        assert subscription.status_code == 201, subscription.text
        email = unique_email("auditor")
        new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
        db.commit()
        assert sign_in(auditor, email).status_code == 303
        secret = base64.b64encode(f"{vendor.client_id}:{vendor.secret}".encode()).decode()
        yield World(
            person=person,
            auditor=auditor,
            csrf=api_headers(person),
            app_token=app_headers,
            grant_token=bearer(db, rt, vendor.app, grant),
            basic={"Authorization": f"Basic {secret}"},
            path_values={
                "key": [spec.key for spec in STANDARD_FIELDS],
                "intent_id": [str(intent.id)],
                "offer_id": [offer.json()["id"]],
                "subscription_id": [subscription.json()["id"]],
                "grant_id": [str(grant.id)],
            },
            db=db,
            rt=rt,
        )


# -- what to send -------------------------------------------------------------------------------


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        schema = document["components"]["schemas"][name]
    return schema


def types_of(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type", [])
    found = {kind} if isinstance(kind, str) else set(kind)
    if "enum" in schema or "const" in schema:
        found.add("string")
    return found


def leaves(
    schema: dict[str, Any], document: dict[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every place in a JSON document of ``schema`` that holds a string, an integer or a
    number (``(path, kind)``), through every alternative of a union."""
    schema = resolve(schema, document)
    for alternative in [
        *schema.get("anyOf", []),
        *schema.get("oneOf", []),
        *schema.get("allOf", []),
    ]:
        yield from leaves(alternative, document, path)
    kinds = types_of(schema)
    if not kinds and not set(schema) & {"anyOf", "oneOf", "allOf", "properties"}:
        kinds = {"string"}  # any JSON at all: a string is one
    for kind in ("string", "integer", "number"):
        if kind in kinds:
            yield path, kind
    if "array" in kinds:
        yield from leaves(schema.get("items", {}), document, (*path, 0))
    if "object" in kinds or "properties" in schema:
        for name, sub in schema.get("properties", {}).items():
            yield from leaves(sub, document, (*path, name))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            yield (*path, KEY), "key"
            yield from leaves(extra, document, (*path, "extra"))


def example(schema: dict[str, Any], document: dict[str, Any]) -> Any:
    """A value of ``schema`` for operations without a listed good request."""
    schema = resolve(schema, document)
    for given in ("default", "example"):
        if given in schema:
            return schema[given]
    if schema.get("examples"):
        return schema["examples"][0]
    if schema.get("anyOf"):
        return example(schema["anyOf"][0], document)
    kinds = types_of(schema)
    if "object" in kinds or "properties" in schema:
        required = schema.get("required", [])
        return {
            k: example(v, document)
            for k, v in schema.get("properties", {}).items()
            if k in required
        }
    if "array" in kinds:
        return [example(schema.get("items", {}), document)]
    if "integer" in kinds or "number" in kinds:
        return schema.get("minimum", 1)
    if "boolean" in kinds:
        return True
    return "x"


def put(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``document`` with ``value`` at ``path`` (made to fit: a string becomes a list or an
    object when the path goes through one)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if head is KEY:
        return {**(document if isinstance(document, dict) else {}), value: "x"}
    if isinstance(head, int):
        items = list(document) if isinstance(document, list) and document else [None]
        items[0] = put(items[0], rest, value)
        return items
    found = dict(document) if isinstance(document, dict) else {}
    found[head] = put(found.get(head), rest, value)
    return found


JSON_VALUES = {"string": BAD_TEXT, "key": BAD_TEXT, "integer": [HUGE, -HUGE], "number": [1e308]}
URL_VALUES = {
    "string": BAD_TEXT_IN_A_URL,
    "integer": [str(HUGE), str(-HUGE)],
    "number": ["1e308"],
}


@dataclass
class Probe:
    """One request: the operation and the one input it makes bad."""

    method: str
    template: str
    what: str
    path: str
    query: str = ""
    json_body: Any = None
    form: str | None = None


def good_form(method: str, template: str, field: str, world: World) -> dict[str, str]:
    """A valid form for the operation, of the grant that reads ``field`` at the token
    endpoint (the others ignore it)."""
    if (method, template) != ("post", "/oauth/token"):
        return GOOD_FORMS.get((method, template), {})
    if field in ("code", "redirect_uri", "code_verifier"):
        return {
            "grant_type": "authorization_code",
            "code": "c" * 43,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43,
        }
    if field == "refresh_token":
        return {"grant_type": "refresh_token", "refresh_token": "r" * 43}
    if field == "offer_id":
        return {"grant_type": ACCEPTED_OFFER, "offer_id": world.path_values["offer_id"][0]}
    return GOOD_FORMS[(method, template)]


def probes(
    operation: dict[str, Any], method: str, template: str, document: dict[str, Any], world: World
) -> Iterator[Probe]:
    """A valid request to the operation (one for each value a path parameter may well take)
    with one of its inputs made bad, for each input in turn."""
    params = operation.get("parameters", [])
    path_params = [p for p in params if p["in"] == "path"]
    query_params = [p for p in params if p["in"] == "query"]
    content = operation.get("requestBody", {}).get("content", {})
    json_schema = content.get("application/json", {}).get("schema")
    form_fields: list[str] = []
    if "application/x-www-form-urlencoded" in content:
        form = resolve(content["application/x-www-form-urlencoded"]["schema"], document)
        form_fields = list(form.get("properties", {}))
    elif (method, template) in UNDESCRIBED_FORMS:
        form_fields = list(GOOD_FORMS[(method, template)])

    def paths(bad: str | None = None, value: str = "") -> Iterator[str]:
        choices: list[dict[str, str]] = [{}]
        for p in path_params:
            values = [value] if p["name"] == bad else world.path_values[p["name"]]
            choices = [{**c, p["name"]: v} for c in choices for v in values]
        for c in choices:
            yield template.format(**c)

    def good_json() -> Any:
        if json_schema is None:
            return None
        return GOOD_JSON.get((method, template), lambda: example(json_schema, document))()

    def form_with(field: str | None = None, value: str = "") -> str | None:
        if not form_fields:
            return None
        good = {k: v for k, v in good_form(method, template, field or "", world).items()}
        good.pop(field or "", None)
        bad = f"{field}={value}" if field else ""
        return "&".join(filter(None, [urlencode(good), bad]))

    def probe(what: str, path: str, query: str = "", body: Any = None, form: Any = None) -> Probe:
        return Probe(
            method,
            template,
            what,
            path,
            query,
            good_json() if body is None else body,
            form_with() if form is None else form,
        )

    good_query = {
        p["name"]: str(example(p["schema"], document)) for p in query_params if p.get("required")
    }
    for p in path_params:
        for value in BAD_TEXT_IN_A_URL:
            for path in paths(p["name"], value):
                yield probe(f"path {p['name']}={value}", path, urlencode(good_query))
    for p in query_params:
        for kind in sorted({kind for _, kind in leaves(p["schema"], document)}):
            for value in URL_VALUES.get(kind, []):
                others = urlencode({k: v for k, v in good_query.items() if k != p["name"]})
                query = "&".join(filter(None, [others, f"{p['name']}={value}"]))
                for path in paths():
                    yield probe(f"query {p['name']}={value}", path, query)
    if json_schema is not None:
        found = sorted(set(leaves(json_schema, document)), key=repr)
        assert found, f"{method} {template}: a JSON body with no string or number in it"
        for where, kind in found:
            label = ".".join("<key>" if s is KEY else str(s) for s in where) or "body"
            for value in JSON_VALUES[kind]:
                for path in paths():
                    body = put(good_json(), where, value)
                    yield probe(f"json {label} ({kind})", path, urlencode(good_query), body=body)
    for name in form_fields:
        for value in BAD_TEXT_IN_A_URL:
            for path in paths():
                form = form_with(name, value)
                yield probe(f"form {name}={value}", path, urlencode(good_query), form=form)


def send(world: World, probe: Probe) -> tuple[int, str]:
    """The status and the ``error`` code of the answer."""
    browser, headers = world.credentials(probe.template)
    url = probe.path + (f"?{probe.query}" if probe.query else "")
    content: bytes | None = None
    if probe.json_body is not None:
        content = json.dumps(probe.json_body).encode()  # ensure_ascii: \ud800 escapes
        headers = {**headers, "content-type": "application/json"}
    elif probe.form is not None:
        content = probe.form.encode()
        headers = {**headers, "content-type": "application/x-www-form-urlencoded"}
    response = browser.request(probe.method.upper(), url, content=content, headers=headers)
    try:
        error = str(response.json().get("error", ""))
    except ValueError:  # a page
        error = ""
    return response.status_code, error


@pytest.mark.parametrize("url", DOCUMENTS)
def test_no_input_of_any_documented_operation_gets_a_500(world: World, url: str) -> None:
    document = world.person.get(url).json()
    answers: list[tuple[int, str, Probe]] = []
    for template, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                for probe in probes(item[method], method, template, document, world):
                    answers.append((*send(world, probe), probe))

    def listed(found: list[tuple[int, str, Probe]]) -> str:
        return "\n".join(f"{s} {e} {p.method.upper()} {p.template}: {p.what}" for s, e, p in found)

    assert len(answers) > 30, f"{url}: too few inputs found"
    assert listed([a for a in answers if a[0] >= 500]) == ""
    # Credentials worked: the handlers were reached, and refused the input as input.
    assert listed([a for a in answers if a[1] in AUTH_FAILURES]) == ""
    statuses = Counter(status for status, _, _ in answers)
    refused_as_input = statuses[400] + statuses[404] + statuses[422]  # a bad id is not found
    assert refused_as_input >= 0.75 * len(answers) and statuses[422] > 0, statuses
