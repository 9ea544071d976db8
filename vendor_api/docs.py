"""The vendor API's own OpenAPI document (``/vendor/openapi.json``) and reference page
(``/vendor/docs``).

The document is built from the running app's vendor-facing routes (every ``/vendor/v1/...``
route and ``GET /oauth/userinfo``), so it cannot drift from the code. Two things are described
here by hand because no route declares them: the token endpoint (Authlib reads its raw form)
and the webhooks (the vault sends them; it does not serve them). The page renders that same
document as HTML, without JavaScript, under the strict CSP, after a worked example of the
whole loop.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args

import fastapi.routing
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from consent import scopes, webhooks
from consent.server import grant_types_supported
from consent.tokens import ACCESS_TOKEN_SECONDS, REFRESH_TOKEN_DAYS
from intents.tokens import GRANT_TYPE as ACCEPTED_OFFER_GRANT
from vault.accounts.dependencies import ViewerDep
from vault.dependencies import RuntimeDep
from vault.profile.catalogue import FIELDS
from vault.settings import Settings
from vendor_api.dependencies import (
    IndividualTokenDep,
    IntentsReader,
    OffersWriter,
    access_token,
)
from vendor_api.schemas import IntentOut, IntentPage, OfferOut, VendorProfileOut
from web.templating import render

router = APIRouter(include_in_schema=False)

VENDOR_PREFIX: Final = "/vendor/v1"
TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 (a path, not a secret)
USERINFO_PATH: Final = "/oauth/userinfo"
_STATE_KEY: Final = "vendor_openapi"

# Security scheme names in components.securitySchemes.
APP_SCHEME: Final = "AppToken"
INDIVIDUAL_SCHEME: Final = "IndividualToken"
BEARER_SCHEME: Final = "AccessToken"  # the HTTPBearer of vendor_api.dependencies
BASIC_SCHEME: Final = "ClientSecretBasic"

_SCHEMAS_REF: Final = "#/components/schemas/"
_HEADERS_REF: Final = "#/components/headers/"
_RATE_HEADERS: Final = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


# -- Shapes no route declares: the token endpoint and the webhook payloads ---------------------


def _grant_type_enum(schema: dict[str, Any]) -> None:
    # Evaluated when the document is built, after create_app registered the extension grant.
    schema["enum"] = grant_types_supported()


class TokenRequest(BaseModel):
    """The token request (RFC 6749), `application/x-www-form-urlencoded`. Authenticate your
    app with HTTP Basic (`client_secret_basic`), or with `client_id` and `client_secret` in
    the form (`client_secret_post`)."""

    grant_type: str = Field(
        json_schema_extra=_grant_type_enum,
        description="`client_credentials` for your app's own token (intents and offers); "
        "`authorization_code` and `refresh_token` for an individual's consent; "
        f"`{ACCEPTED_OFFER_GRANT}` to exchange an accepted offer for the individual's tokens.",
    )
    scope: str | None = Field(
        default=None,
        description="client_credentials: space-separated vendor scopes your app is registered "
        "for, e.g. `intents:read offers:write`.",
    )
    code: str | None = Field(
        default=None,
        description="authorization_code: the code from the redirect (single use, 60 seconds).",
    )
    redirect_uri: str | None = Field(
        default=None,
        description="authorization_code: the exact redirect URI of the authorization request.",
    )
    code_verifier: str | None = Field(
        default=None,
        description="authorization_code: the PKCE verifier of the `S256` challenge you sent.",
    )
    refresh_token: str | None = Field(
        default=None,
        description="refresh_token: your latest refresh token. The answer carries a new one; "
        "presenting an old one again revokes the whole family.",
    )
    offer_id: str | None = Field(
        default=None,
        description="accepted-offer grant: the id of your offer that the individual accepted "
        "with shared fields. Works once per offer; keep the refresh token.",
    )
    client_id: str | None = Field(default=None, description="client_secret_post only.")
    client_secret: str | None = Field(default=None, description="client_secret_post only.")


class TokenResponse(BaseModel):
    """A successful token response (RFC 6749 section 5.1), sent with `Cache-Control: no-store`."""

    access_token: str = Field(description="Opaque; send it as `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"]
    expires_in: int = Field(
        description=f"Seconds the access token lives ({ACCESS_TOKEN_SECONDS}).",
        examples=[ACCESS_TOKEN_SECONDS],
    )
    scope: str = Field(description="What the token may do, space-separated.")
    refresh_token: str | None = Field(
        default=None,
        description="Absent for client_credentials (ask again instead). Otherwise single use: "
        f"each refresh answers with a new one; unused, it lapses after {REFRESH_TOKEN_DAYS} days.",
    )
    id_token: str | None = Field(
        default=None,
        description="authorization_code with `openid`: an RS256 JWT (keys at `/oauth/jwks`).",
    )


class OAuthError(BaseModel):
    """An error of the token endpoint (RFC 6749 section 5.2)."""

    error: Literal[
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ]
    error_description: str | None = Field(default=None, description="A sentence for people.")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OfferEventData(_Payload):
    """What every offer event says about the offer."""

    offer_id: str
    intent_id: str
    subject: str = Field(
        description="The intent owner's pseudonym for your app (`anon-...`): the `owner` of "
        "the intent and the offer. It is not the OpenID Connect `sub`."
    )
    offer_status: str = Field(
        description="The offer's status after the event: `accepted`, `declined` or `lapsed`."
    )
    price: str = Field(description="Decimal string.", examples=["849.00"])
    currency: str = Field(examples=["EUR"])


class OfferAcceptedData(OfferEventData):
    grant_id: str | None = Field(
        description="The grant for the fields the individual shared with you, or null when "
        "they shared none. Exchange the offer for its tokens with the accepted-offer grant."
    )
    shared_fields: list[str] = Field(
        description="The profile scopes shared with this acceptance, e.g. `profile:email`."
    )


class OfferLapsedData(OfferEventData):
    reason: Literal["another_offer_accepted", "intent_expired", "intent_unavailable"] = Field(
        description="`intent_unavailable`: the individual stopped showing intents to your app."
    )


class GrantEventData(_Payload):
    """What every consent event says about the grant (never profile values)."""

    grant_id: str
    subject: str = Field(
        description="The individual's pairwise `sub` for your app (as in /vendor/v1/profile)."
    )
    scopes: list[str] = Field(description="The profile scopes the grant allows now.")
    purpose: str
    agreement: str = Field(description="The standard agreement both sides accepted (`/terms`).")
    granted_at: datetime
    expires_at: datetime | None = Field(description="Null: until the individual revokes it.")
    revoked_at: datetime | None


class GrantRevokedData(GrantEventData):
    reason: Literal["revoked", "expired"]


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    name: str
    data: type[_Payload]
    summary: str
    description: str


WEBHOOK_EVENTS: Final = (
    WebhookEvent(
        "offer.accepted",
        OfferAcceptedData,
        "The individual accepted your offer",
        "The intent is closed and the other offers on it lapsed. When the individual shared "
        "fields, `grant_id` names the grant (announced by `consent.granted`, or "
        "`consent.changed` when it added fields to a grant you had) and you exchange the offer "
        "for its tokens once, with the accepted-offer grant.",
    ),
    WebhookEvent(
        "offer.declined",
        OfferEventData,
        "The individual declined your offer",
        "The intent takes no new offer from your app (409 `offer_declined`).",
    ),
    WebhookEvent(
        "offer.lapsed",
        OfferLapsedData,
        "Your live offer ended undecided",
        "Another offer was accepted, the intent expired, or the individual stopped showing "
        "their intents to your app.",
    ),
    WebhookEvent(
        "intent.withdrawn",
        OfferEventData,
        "An intent you made a live offer on was withdrawn",
        "The individual withdrew the intent (or erased their account); your offer lapsed "
        "(`offer_status` `lapsed`). Sent once per live offer.",
    ),
    WebhookEvent(
        "consent.granted",
        GrantEventData,
        "An individual gave your app a permission",
        "From the consent screen, or by accepting your offer with shared fields; also when a "
        "permission that had ended is given again.",
    ),
    WebhookEvent(
        "consent.changed",
        GrantEventData,
        "A permission changed",
        "Fields were added or removed, or the duration, agreement or purpose changed. "
        "Tokens read only the fields the grant allows now.",
    ),
    WebhookEvent(
        "consent.revoked",
        GrantRevokedData,
        "A permission ended",
        "The individual revoked it, or it expired. Its tokens stop working at once.",
    ),
)


# -- Which routes, and what each needs ------------------------------------------------------------


def _dependency(annotated: Any) -> Callable[..., Any]:
    """The callable inside ``Annotated[T, Depends(f)]``."""
    call: Callable[..., Any] = get_args(annotated)[1].dependency
    return call


# In priority order: the first that a route depends on says how it is authorised.
_REQUIREMENTS: Final[tuple[tuple[Callable[..., Any], dict[str, list[str]]], ...]] = (
    (_dependency(IntentsReader), {APP_SCHEME: ["intents:read"]}),
    (_dependency(OffersWriter), {APP_SCHEME: ["offers:write"]}),
    (_dependency(IndividualTokenDep), {INDIVIDUAL_SCHEME: []}),
    (access_token, {BEARER_SCHEME: []}),
)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _route_contexts(app: FastAPI) -> Iterator[Any]:
    # FastAPI 0.137.2+ keeps included routers as a tree that iter_route_contexts flattens;
    # before that, app.routes held every route itself.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    yield from flatten(app.routes) if flatten else app.routes


def vendor_routes(app: FastAPI) -> list[Any]:
    """The app's vendor-facing API routes: ``/vendor/v1/...`` and ``GET /oauth/userinfo``."""
    chosen = []
    for route in _route_contexts(app):
        if not isinstance(getattr(route, "original_route", route), fastapi.routing.APIRoute):
            continue
        path = route.path_format
        if path.startswith(VENDOR_PREFIX) or (path == USERINFO_PATH and "GET" in route.methods):
            chosen.append(route)
    return chosen


# -- The document ---------------------------------------------------------------------------------


def _schemas(models: Iterable[tuple[type[BaseModel], JsonSchemaMode]]) -> dict[str, Any]:
    _, defs = models_json_schema(list(models), ref_template=_SCHEMAS_REF + "{model}")
    found: dict[str, Any] = defs.get("$defs", {})
    return found


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _SCHEMAS_REF + name}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _token_path_item() -> dict[str, Any]:
    basic_challenge = {
        "WWW-Authenticate": {
            "description": "`Basic` with the error, when you authenticated with HTTP Basic.",
            "schema": {"type": "string"},
        }
    }
    no_store = {
        "Cache-Control": {"description": "`no-store`.", "schema": {"type": "string"}},
    }
    return {
        "post": {
            "tags": ["oauth"],
            "summary": "Get tokens",
            "description": (
                "The OAuth 2 token endpoint. `client_credentials` gives your app its own token "
                "for intents and offers (no refresh token). `authorization_code` (PKCE `S256`) "
                "and `refresh_token` (rotating) give and renew an individual's token. "
                f"`{ACCEPTED_OFFER_GRANT}` exchanges, once, an offer the individual accepted "
                "with shared fields for an access and a refresh token of that grant. Errors are "
                "RFC 6749 bodies, not the API's `{error, detail}`."
            ),
            "operationId": "oauth_token",
            "security": [{BASIC_SCHEME: []}, {}],
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": _ref("TokenRequest")}},
            },
            "responses": {
                "200": {
                    "description": "The tokens.",
                    "headers": no_store,
                    "content": _json(_ref("TokenResponse")),
                },
                "400": {
                    "description": "`invalid_request`, `invalid_grant` (a used, expired or "
                    "unknown code, refresh token or offer), `unauthorized_client` (the grant "
                    "type is not open to your app), `unsupported_grant_type` or `invalid_scope`.",
                    "headers": no_store,
                    "content": _json(_ref("OAuthError")),
                },
                "401": {
                    "description": "`invalid_client`: the client id or secret is wrong.",
                    "headers": {**basic_challenge, **no_store},
                    "content": _json(_ref("OAuthError")),
                },
            },
        }
    }


def _security_schemes() -> dict[str, Any]:
    individual_scopes = {scopes.OPENID: "OpenID Connect: an id_token and /oauth/userinfo."}
    individual_scopes |= {
        scopes.PROFILE_PREFIX + key: f"Read the {spec.label.lower()} field."
        for key, spec in FIELDS.items()
    }
    return {
        APP_SCHEME: {
            "type": "oauth2",
            "description": "Your app's own token, from the client credentials grant, for "
            "intents and offers. Your app must accept the `intent-sharing` agreement.",
            "flows": {
                "clientCredentials": {"tokenUrl": TOKEN_PATH, "scopes": dict(scopes.VENDOR_SCOPES)}
            },
        },
        INDIVIDUAL_SCHEME: {
            "type": "oauth2",
            "description": "A token an individual's consent gave your app: the authorization "
            "code flow with PKCE (`S256`), or an accepted offer exchanged at the token endpoint. "
            "It reads only the fields the individual grants now.",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": "/oauth/authorize",
                    "tokenUrl": TOKEN_PATH,
                    "refreshUrl": TOKEN_PATH,
                    "scopes": individual_scopes,
                }
            },
        },
        BASIC_SCHEME: {
            "type": "http",
            "scheme": "basic",
            "description": "`client_secret_basic`: your client id and secret. Or send them as "
            "`client_id` and `client_secret` form fields (`client_secret_post`).",
        },
    }


def _rate_headers(settings: Settings) -> dict[str, Any]:
    integer = {"type": "integer"}
    return {
        "RateLimit-Limit": {
            "description": "Requests your app may make in this one-minute window for this kind "
            f"of request (reads {settings.vendor_reads_per_minute}, writes "
            f"{settings.vendor_writes_per_minute}).",
            "schema": integer,
        },
        "RateLimit-Remaining": {"description": "Requests left in the window.", "schema": integer},
        "RateLimit-Reset": {"description": "Seconds until the window ends.", "schema": integer},
        "Retry-After": {"description": "Seconds to wait before trying again.", "schema": integer},
    }


_VALIDATION = {
    "description": "The JSON body or a parameter has the wrong type, or a field is missing or "
    "unknown (`validation_error`; `detail` names them).",
    "content": _json(_ref("ErrorBody")),
}


def _refine_operation(operation: dict[str, Any], requirement: dict[str, list[str]] | None) -> None:
    """What the routes cannot declare themselves: each operation's scopes, the rate-limit
    headers, and this app's 422 body (its handler answers ``{error, detail}``, not FastAPI's
    default)."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses:
        responses["422"] = dict(_VALIDATION)
    if requirement is None:
        operation.pop("security", None)
        return
    operation["security"] = [requirement]
    # Every token-authenticated request counts against the app's rate limit.
    limited = {name: {"$ref": _HEADERS_REF + name} for name in _RATE_HEADERS}
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {}).update(limited)
    responses["429"] = {
        "description": "Your app is over its rate limit (`rate_limited`).",
        "headers": {**limited, "Retry-After": {"$ref": _HEADERS_REF + "Retry-After"}},
        "content": _json(_ref("ErrorBody")),
    }


def _webhooks() -> dict[str, Any]:
    header = {"type": "string"}
    parameters = [
        {
            "name": "webhook-id",
            "in": "header",
            "required": True,
            "schema": header,
            "description": "The message id: the same on every retry. Deduplicate on it.",
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": True,
            "schema": header,
            "description": "Unix seconds of this attempt. Refuse it when more than "
            f"{webhooks.DEFAULT_TOLERANCE} seconds from your clock.",
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": True,
            "schema": header,
            "description": "`v1,` and the base64 HMAC-SHA256 of `webhook-id.webhook-timestamp."
            "body` under your app's secret (the base64 after `whsec_`). Several signatures may "
            "be sent, separated by spaces.",
        },
    ]
    hours = int(webhooks.BACKOFF_CAP.total_seconds() // 3600)
    retry = (
        f"Anything else, a redirect, or no answer within {webhooks.REQUEST_TIMEOUT:g} seconds is "
        f"retried after {int(webhooks.BACKOFF_BASE.total_seconds())} s, each wait "
        f"{webhooks.BACKOFF_FACTOR} times the last (at most {hours} h, with jitter), and "
        "abandoned after "
        f"{webhooks.MAX_ATTEMPTS} attempts. The developer console shows every attempt."
    )
    found: dict[str, Any] = {}
    for event in WEBHOOK_EVENTS:
        envelope = {
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event.name, "description": "The event type."},
                "timestamp": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the change happened (UTC).",
                },
                "data": _ref(event.data.__name__),
            },
        }
        found[event.name] = {
            "post": {
                "summary": event.summary,
                "description": event.description,
                "operationId": "webhook_" + event.name.replace(".", "_"),
                "parameters": parameters,
                "requestBody": {"required": True, "content": _json(envelope)},
                "responses": {
                    "2XX": {"description": "Received. The body of your answer is ignored."},
                    "default": {"description": retry},
                },
            }
        }
    return found


def _referenced(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS_REF):
            yield ref.removeprefix(_SCHEMAS_REF)
        for value in node.values():
            yield from _referenced(value)
    elif isinstance(node, list):
        for value in node:
            yield from _referenced(value)


def _prune(document: dict[str, Any]) -> None:
    """Drop component schemas nothing refers to (FastAPI's 422 models, once replaced)."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    roots = {k: v for k, v in document.items() if k != "components"}
    keep: set[str] = set()
    todo = list(_referenced(roots))
    while todo:
        name = todo.pop()
        if name not in keep and name in schemas:
            keep.add(name)
            todo.extend(_referenced(schemas[name]))
    document["components"]["schemas"] = {k: v for k, v in schemas.items() if k in keep}


def build_document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the vendor API of ``app``."""
    routes = vendor_routes(app)
    document = get_openapi(
        title="VRM Vault vendor API",
        version=app.version,
        summary="Consented profile reads, purchase intents, offers and signed webhooks.",
        description=(
            "Vendors integrate through OAuth 2 / OpenID Connect, this API and webhooks. "
            'Errors are `{"error": code, "detail": sentence}` (and `field` for bad input); '
            "the token endpoint answers with RFC 6749 error bodies. Rate limits are per app "
            f"and per minute: {settings.vendor_reads_per_minute} reads (GET) and "
            f"{settings.vendor_writes_per_minute} writes. A rendered reference with a worked "
            "example is at `/vendor/docs`."
        ),
        routes=routes,
        servers=[{"url": settings.base_url}],
    )
    requirements: dict[tuple[str, str], dict[str, list[str]] | None] = {}
    for route in routes:
        calls = set(_calls(route.dependant))
        needs = next((req for dep, req in _REQUIREMENTS if dep in calls), None)
        for method in route.methods:
            requirements[(route.path_format, method.lower())] = needs
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _refine_operation(operation, requirements.get((path, method)))
    document["paths"] = {TOKEN_PATH: _token_path_item(), **document.get("paths", {})}
    document["webhooks"] = _webhooks()

    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    described = _schemas(
        [
            (TokenRequest, "validation"),
            (TokenResponse, "serialization"),
            (OAuthError, "serialization"),
            *((event.data, "serialization") for event in WEBHOOK_EVENTS),
        ]
    )
    for prop in described["TokenRequest"]["properties"].values():
        prop.update(_not_null(prop))  # a form field is sent or left out, never null
        prop.pop("anyOf", None)
        if prop.get("default", "") is None:
            del prop["default"]
    clash = set(described) & set(schemas)
    if clash:
        raise RuntimeError(f"vendor API schema names used twice: {sorted(clash)}")
    schemas.update(described)
    components.setdefault("securitySchemes", {}).update(_security_schemes())
    components["headers"] = _rate_headers(settings)
    _prune(document)
    return document


def vendor_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The document, built once per app (on first use, when every router is included)."""
    cached: dict[str, Any] | None = getattr(app.state, _STATE_KEY, None)
    if cached is None:
        cached = build_document(app, settings)
        setattr(app.state, _STATE_KEY, cached)
    return cached


# -- The document as a page -----------------------------------------------------------------------

_CODE = re.compile(r"``?([^`]+?)``?")


def text(value: str | None) -> Markup:
    """Plain text with `code` spans, as paragraphs (escaped first, so it stays text)."""
    paragraphs = [p for p in (value or "").split("\n\n") if p.strip()]
    return Markup("").join(Markup("<p>{}</p>").format(inline(p)) for p in paragraphs)


def inline(value: str | None) -> Markup:
    """Like :func:`text`, without the paragraphs (for table cells)."""
    escaped = str(escape(" ".join((value or "").split())))
    # Escaped first: only the <code> tags added here are markup.
    return Markup(_CODE.sub(r"<code>\1</code>", escaped))  # noqa: S704


def schema_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref", "")
    return ref.removeprefix(_SCHEMAS_REF) if ref.startswith(_SCHEMAS_REF) else None


def type_label(schema: dict[str, Any]) -> Markup:
    """A schema's type in a few words, with links to the named schemas it uses."""
    name = schema_name(schema)
    if name:
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return Markup(" or ").join(type_label(s) for s in schema[key])
    if "const" in schema:
        return Markup("<code>{}</code>").format(json.dumps(schema["const"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return Markup(" or ").join(type_label({**schema, "type": k}) for k in kind)
    if kind == "array":
        return Markup("array of ") + type_label(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return Markup("object of ") + type_label(schema["additionalProperties"])
    if not kind:
        return Markup("any")
    return Markup("{} ({})").format(kind, schema["format"]) if "format" in schema else escape(kind)


def _branches(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from _branches(branch)


def notes(schema: dict[str, Any]) -> list[Markup]:
    """Constraints, allowed values, default and example, in words."""
    found: list[Markup] = []
    for branch in _branches(schema):
        if "enum" in branch:
            values = Markup(", ").join(
                Markup("<code>{}</code>").format(v) for v in branch["enum"] if v is not None
            )
            found.append(Markup("One of {}.").format(values))
        if "maxLength" in branch:
            found.append(Markup("At most {} characters.").format(branch["maxLength"]))
        if "minimum" in branch or "maximum" in branch:
            low, high = branch.get("minimum", "…"), branch.get("maximum", "…")
            found.append(Markup("From {} to {}.").format(low, high))
    if schema.get("default") is not None:
        found.append(Markup("Default <code>{}</code>.").format(json.dumps(schema["default"])))
    if schema.get("examples"):
        example = schema["examples"][0]
        shown = example if isinstance(example, str) else json.dumps(example)
        found.append(Markup("Example <code>{}</code>.").format(shown))
    return found


@dataclass(frozen=True, slots=True)
class FieldRow:
    name: str
    type: Markup
    required: bool
    description: Markup
    notes: list[Markup] = field(default_factory=list)
    location: str | None = None
    """Where a parameter goes: ``query``, ``path`` or ``header``."""


@dataclass(frozen=True, slots=True)
class SchemaView:
    """A schema as a page shows it: its name (if a component), its type, its fields."""

    name: str | None
    type: Markup
    description: Markup
    rows: list[FieldRow]


@dataclass(frozen=True, slots=True)
class ResponseView:
    status: str
    description: Markup
    schema: SchemaView | None
    headers: list[str]
    show_fields: bool = False
    """A success body whose fields the page lists (once per schema and operation)."""


@dataclass(frozen=True, slots=True)
class OperationView:
    anchor: str
    method: str
    path: str
    summary: str
    description: Markup
    security: list[Markup]
    parameters: list[FieldRow]
    body_media: str | None
    body: SchemaView | None
    responses: list[ResponseView]


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its ``null`` branch: an optional parameter is left out."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


def _status_order(status: str) -> tuple[int, str]:
    return (0, status) if status[:1].isdigit() else (1, status)


class Reader:
    """Reads an OpenAPI document into what the reference page shows, resolving ``$ref``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})

    def resolve(self, schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        name = schema_name(schema)
        return (name, self.schemas.get(name, {})) if name else (None, schema)

    def view(self, schema: dict[str, Any]) -> SchemaView:
        name, resolved = self.resolve(schema)
        target = resolved
        if resolved.get("type") == "array":  # a list of a named schema: show the items' fields
            target = self.resolve(resolved.get("items", {}))[1]
        required = set(target.get("required", []))
        rows = [
            FieldRow(
                name=key,
                type=type_label(prop),
                required=key in required,
                description=inline(prop.get("description")),
                notes=notes(prop),
            )
            for key, prop in target.get("properties", {}).items()
        ]
        return SchemaView(
            name=name,
            type=type_label(schema),
            description=text(resolved.get("description")),
            rows=rows,
        )

    def operation(self, path: str, method: str, operation: dict[str, Any]) -> OperationView:
        parameters = [
            FieldRow(
                name=p["name"],
                location=p["in"],
                type=type_label(_not_null(p.get("schema", {}))),
                required=bool(p.get("required")),
                description=inline(p.get("description") or p.get("schema", {}).get("description")),
                notes=notes(p.get("schema", {})),
            )
            for p in operation.get("parameters", [])
        ]
        media: str | None = None
        body: SchemaView | None = None
        for media_type, request in operation.get("requestBody", {}).get("content", {}).items():
            media, body = media_type, self.view(request.get("schema", {}))
            break
        responses = []
        shown: set[str] = set()
        declared: dict[str, Any] = operation.get("responses", {})
        for status, response in sorted(declared.items(), key=lambda kv: _status_order(kv[0])):
            contents: list[dict[str, Any]] = list(response.get("content", {}).values())
            schema = contents[0].get("schema") if contents else None
            view = self.view(schema) if schema else None
            listed = str(view.type) if view else ""
            show = bool(view and view.rows and status.startswith("2") and listed not in shown)
            shown.add(listed)
            responses.append(
                ResponseView(
                    status=status,
                    description=inline(response.get("description")),
                    schema=view,
                    headers=list(response.get("headers", {})),
                    show_fields=show,
                )
            )
        security = [
            Markup(" + ").join(
                Markup('<a href="#auth-{0}">{0}</a>').format(scheme)
                + (
                    Markup(" with ")
                    + Markup(", ").join(Markup("<code>{}</code>").format(s) for s in needed)
                    if needed
                    else Markup("")
                )
                for scheme, needed in requirement.items()
            )
            or Markup("none (client_secret_post)")
            for requirement in operation.get("security", [])
        ]
        return OperationView(
            anchor="op-" + operation.get("operationId", f"{method}-{path}"),
            method=method.upper(),
            path=path,
            summary=operation.get("summary", ""),
            description=text(operation.get("description")),
            security=security,
            parameters=parameters,
            body_media=media,
            body=body,
            responses=responses,
        )

    def operations(self, section: str = "paths") -> list[OperationView]:
        return [
            self.operation(path, method, operation)
            for path, item in self.document.get(section, {}).items()
            for method, operation in item.items()
        ]

    def components(self) -> list[SchemaView]:
        return [self.view(_ref(name)) for name in self.schemas]

    def security_schemes(self) -> list[dict[str, Any]]:
        found = []
        for name, scheme in self.document.get("components", {}).get("securitySchemes", {}).items():
            flows = [{"name": flow, **values} for flow, values in scheme.get("flows", {}).items()]
            found.append(
                {
                    "name": name,
                    "type": scheme.get("scheme") or scheme.get("type"),
                    "description": text(scheme.get("description")),
                    "flows": flows,
                }
            )
        return found


# -- The worked example ---------------------------------------------------------------------------

EXAMPLE_SECRET: Final = "whsec_" + base64.b64encode(b"example-secret-not-a-real-one!!!").decode()
"""A made-up signing secret: the sample webhook on the page is signed with it."""

VERIFY_SNIPPET: Final = '''\
import base64, hashlib, hmac, json, time


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> dict:
    """Check a VRM Vault webhook (Standard Webhooks); return its payload or raise ValueError."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError("webhook-timestamp is too far from now")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for signature in headers["webhook-signature"].split():
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise ValueError("no valid signature")
'''
"""What a vendor runs on each webhook: the raw body bytes, before any JSON parsing."""

_IDS: Final = {
    "intent": "0b6f4a52-8c1e-4d7a-9f3b-2e5c7a1d9e40",
    "offer": "5d2e8f10-3a4b-4c6d-8e9f-0a1b2c3d4e5f",
    "grant": "9a7c3e21-6b5d-4f8e-a1c2-3d4e5f607182",
    "message": "c4a1e7d2-58b3-4f96-a0d1-7e2b9c3f6a85",
}
_OWNER: Final = "anon-3f9c2a7be81d4c06a5e7f1b2d3c4e5f6"
_SUB: Final = "7e1d9c3b5a2f4e6d8c0b1a2938475665e4d3c2b1a0f9e8d7c6b5a49382716051"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def worked_example(settings: Settings, now: datetime | None = None) -> dict[str, str]:
    """The commands and answers of the whole loop, built from the API's own models (so their
    shapes match the reference) and dated from today (so an offer's validity is in range)."""
    base = settings.base_url
    # Yesterday morning: every sample moment is past, the offer's validity and expiry ahead.
    today = (now or datetime.now(UTC)).replace(hour=9, minute=0, second=0, microsecond=0)
    today -= timedelta(days=1)
    app_token = TokenResponse(
        access_token="q8Vd3kLm0RzT1yXw5bNc7hJf2pGs4aUe6iOo9lKj1Hg",  # noqa: S106 (a sample)
        token_type="Bearer",  # noqa: S106
        expires_in=ACCESS_TOKEN_SECONDS,
        scope="intents:read offers:write",
    )
    intent = IntentOut(
        id=_IDS["intent"],
        owner=_OWNER,
        category="sports.bicycles",
        category_label="Sports and outdoors > Bicycles",
        title="Road bike, size 56",
        description="Carbon or aluminium, disc brakes. Delivered or picked up in Utrecht.",
        quantity=1,
        max_budget="900.00",
        currency="EUR",
        country="NL",
        city="Utrecht",
        online=True,
        needed_by=(today + timedelta(days=21)).date(),
        expires_at=today + timedelta(days=30),
        published_at=today - timedelta(hours=2),
        your_offer=None,
    )
    valid_until = today.replace(hour=18) + timedelta(days=8)
    offer_request = {
        "price": "849.00",
        "currency": "EUR",
        "message": "Shimano 105, size 56, delivered within a week.",
        "valid_until": _at(valid_until),
    }
    offer = OfferOut(
        id=_IDS["offer"],
        intent_id=_IDS["intent"],
        owner=_OWNER,
        status="live",
        price="849.00",
        currency="EUR",
        message=offer_request["message"],
        valid_until=valid_until,
        created_at=today + timedelta(minutes=5),
        updated_at=today + timedelta(minutes=5),
        decided_at=None,
        lapse_reason=None,
        grant_id=None,
        shared_fields=[],
        tokens_claimed=False,
    )
    accepted_at = today + timedelta(hours=3)
    shared = ["profile:given_name", "profile:email"]
    event = {
        "type": "offer.accepted",
        "timestamp": _at(accepted_at),
        "data": OfferAcceptedData(
            offer_id=_IDS["offer"],
            intent_id=_IDS["intent"],
            subject=_OWNER,
            offer_status="accepted",
            price="849.00",
            currency="EUR",
            grant_id=_IDS["grant"],
            shared_fields=shared,
        ).model_dump(mode="json"),
    }
    # The exact bytes the worker sends, and their signature under the example secret.
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    timestamp = int(accepted_at.timestamp()) + 2
    signature = webhooks.sign(EXAMPLE_SECRET, _IDS["message"], timestamp, body.encode())
    user_token = TokenResponse(
        access_token="Zx4c8Vb2Nm6Lk0Jh3Gf5Ds7Ap9Qw1Er3Ty5Ui7Op9As",  # noqa: S106 (a sample)
        token_type="Bearer",  # noqa: S106
        expires_in=ACCESS_TOKEN_SECONDS,
        refresh_token="Rt2y4U6i8O0p1A3s5D7f9G1h3J5k7L9z1X3c5V7b9Nm",  # noqa: S106
        scope=" ".join(shared),
    )
    profile = VendorProfileOut(
        sub=_SUB,
        fields={"given_name": "Ada", "email": "ada@example.org"},
        granted_fields=["given_name", "email"],
        expires_at=accepted_at + timedelta(days=30),
    )
    auth = 'curl -u "$CLIENT_ID:$CLIENT_SECRET"'
    intents_query = "?category=sports&country=NL&currency=EUR&budget_max=1000"
    offer_body = json.dumps(offer_request)
    bearer = '-H "Authorization: Bearer $TOKEN"'
    return {
        "setup": f"BASE={base}\nCLIENT_ID=<your client id>\nCLIENT_SECRET=<your client secret>",
        "token_command": (
            f'{auth} -d grant_type=client_credentials -d "scope=intents:read offers:write" '
            f"$BASE{TOKEN_PATH}"
        ),
        "token_response": _pretty(app_token.model_dump(mode="json", exclude_none=True)),
        "token_capture": (
            f"TOKEN=$({auth.replace('curl', 'curl -s')} -d grant_type=client_credentials \\\n"
            f'  -d "scope=intents:read offers:write" $BASE{TOKEN_PATH} | jq -r .access_token)'
        ),
        "intents_command": f'curl {bearer} \\\n  "$BASE{VENDOR_PREFIX}/intents{intents_query}"',
        "intents_query": intents_query,
        "intents_response": _pretty(
            IntentPage(data=[intent], next_cursor=None).model_dump(mode="json")
        ),
        "offer_command": (
            f"INTENT_ID={_IDS['intent']}\n"
            f"curl -X POST {bearer} \\\n"
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{offer_body}' \\\n"
            f'  "$BASE{VENDOR_PREFIX}/intents/$INTENT_ID/offers"'
        ),
        "offer_body": offer_body,
        "offer_response": _pretty(offer.model_dump(mode="json")),
        "offer_location": f"{VENDOR_PREFIX}/offers/{_IDS['offer']}",
        "webhook_request": (
            "POST /hooks/vrm HTTP/1.1\n"
            "Host: shop.example\n"
            "Content-Type: application/json\n"
            f"webhook-id: {_IDS['message']}\n"
            f"webhook-timestamp: {timestamp}\n"
            f"webhook-signature: {signature}\n"
            "\n"
            f"{body}"
        ),
        "webhook_body": _pretty(event),
        "webhook_id": _IDS["message"],
        "webhook_timestamp": str(timestamp),
        "webhook_signature": signature,
        "webhook_raw_body": body,
        "webhook_secret": EXAMPLE_SECRET,
        "verify_snippet": VERIFY_SNIPPET,
        "verify_usage": (
            "# raw_body: the request body as bytes; headers: a mapping with lower-case names.\n"
            "event = verify(WEBHOOK_SECRET, headers, raw_body)\n"
            'if event["type"] == "offer.accepted" and event["data"]["grant_id"]:\n'
            '    exchange_for_tokens(event["data"]["offer_id"])'
        ),
        "exchange_command": (
            f"OFFER_ID={_IDS['offer']}\n"
            f"{auth} \\\n"
            f"  -d grant_type={ACCEPTED_OFFER_GRANT} \\\n"
            f"  -d offer_id=$OFFER_ID $BASE{TOKEN_PATH}"
        ),
        "exchange_response": _pretty(user_token.model_dump(mode="json", exclude_none=True)),
        "profile_command": (
            f'curl -H "Authorization: Bearer $USER_TOKEN" $BASE{VENDOR_PREFIX}/profile'
        ),
        "profile_response": _pretty(profile.model_dump(mode="json")),
        "refresh_command": (
            f"{auth} -d grant_type=refresh_token -d refresh_token=$REFRESH_TOKEN $BASE{TOKEN_PATH}"
        ),
    }


# -- Endpoints ------------------------------------------------------------------------------------


@router.get("/vendor/openapi.json")
def openapi_document(request: Request, rt: RuntimeDep) -> JSONResponse:
    """The vendor API's OpenAPI 3.1 document."""
    return JSONResponse(vendor_openapi(request.app, rt.settings))


@router.get("/vendor/docs")
def reference_page(request: Request, rt: RuntimeDep, viewer: ViewerDep) -> Response:
    """The vendor API reference, rendered from the OpenAPI document, with a worked example."""
    document = vendor_openapi(request.app, rt.settings)
    reader = Reader(document)
    return render(
        request,
        "vendor_reference.html",
        {
            "info": document["info"],
            "operations": reader.operations(),
            "webhooks": reader.operations("webhooks"),
            "schemas": reader.components(),
            "security_schemes": reader.security_schemes(),
            "example": worked_example(rt.settings),
            "settings": rt.settings,
            "access_minutes": ACCESS_TOKEN_SECONDS // 60,
        },
    )
