"""The vendor API's own OpenAPI document (``/vendor/openapi.json``); ``web.vendor_reference``
renders it as the reference page (``/vendor/docs``).

The document is built from the running app's vendor-facing routes (every ``/vendor/v1/...``
route and ``GET /oauth/userinfo``), so it cannot drift from the code. Two things are described
here by hand because no route declares them: the token endpoint (Authlib reads its raw form)
and the webhooks (the vault sends them; it does not serve them). The page renders that same
document as HTML, without JavaScript, under the strict CSP, after a worked example of the
whole loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import fastapi.routing
from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from consent import scopes
from consent.oauth.objects import grant_types_supported
from consent.oauth.tokens import ACCESS_TOKEN_SECONDS, REFRESH_TOKEN_DAYS
from consent.webhooks import delivery, signing
from intents.tokens import GRANT_TYPE as ACCEPTED_OFFER_GRANT
from vault.dependencies import RuntimeDep
from vault.profile.catalogue import FIELDS
from vault.settings import Settings
from vendor_api.dependencies import (
    IndividualTokenDep,
    IntentsReader,
    OffersWriter,
    access_token,
)

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

SCHEMAS_REF: Final = "#/components/schemas/"
HEADERS_REF: Final = "#/components/headers/"
RATE_HEADERS: Final = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


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
    owner: str = Field(
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


class SubjectErasedData(_Payload):
    """Who erased their vault, by the names your app knew them by (never their identity).
    Each key is there only when it applies to your app."""

    subject: str | None = Field(
        default=None,
        description="The individual's pairwise `sub` for your app, when your app ever held a "
        "grant of theirs (as in /vendor/v1/profile and the `consent.*` events).",
    )
    grant_ids: list[str] | None = Field(
        default=None, description="Every grant they gave your app (now ended and deleted)."
    )
    owner: str | None = Field(
        default=None,
        description="Their intent-owner pseudonym for your app (`anon-...`), when your app "
        "made offers on their intents.",
    )
    request: str = Field(description="What the vault asks of you, in a sentence.")


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
    WebhookEvent(
        "subject.erased",
        SubjectErasedData,
        "An individual erased their vault",
        "Everything about them is deleted from the vault: their permissions ended (each "
        "announced by `consent.revoked`) and their open intents were withdrawn. Delete every "
        "copy of their data you hold, except records the law requires you to keep. Sent once "
        "to every app that ever held a grant of theirs or made an offer on their intents.",
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
    _, defs = models_json_schema(list(models), ref_template=SCHEMAS_REF + "{model}")
    found: dict[str, Any] = defs.get("$defs", {})
    return found


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its ``null`` branch: an optional parameter is left out."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return branches[0] if len(branches) == 1 else schema


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS_REF + name}


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
                "content": {
                    "application/x-www-form-urlencoded": {"schema": schema_ref("TokenRequest")}
                },
            },
            "responses": {
                "200": {
                    "description": "The tokens.",
                    "headers": no_store,
                    "content": _json(schema_ref("TokenResponse")),
                },
                "400": {
                    "description": "`invalid_request`, `invalid_grant` (a used, expired or "
                    "unknown code, refresh token or offer), `unauthorized_client` (the grant "
                    "type is not open to your app), `unsupported_grant_type` or `invalid_scope`.",
                    "headers": no_store,
                    "content": _json(schema_ref("OAuthError")),
                },
                "401": {
                    "description": "`invalid_client`: the client id or secret is wrong.",
                    "headers": {**basic_challenge, **no_store},
                    "content": _json(schema_ref("OAuthError")),
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
    "content": _json(schema_ref("ErrorBody")),
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
    limited = {name: {"$ref": HEADERS_REF + name} for name in RATE_HEADERS}
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {}).update(limited)
    responses["429"] = {
        "description": "Your app is over its rate limit (`rate_limited`).",
        "headers": {**limited, "Retry-After": {"$ref": HEADERS_REF + "Retry-After"}},
        "content": _json(schema_ref("ErrorBody")),
    }


def _webhooks(settings: Settings) -> dict[str, Any]:
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
            f"{signing.DEFAULT_TOLERANCE} seconds from your clock.",
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
    hours = int(delivery.BACKOFF_CAP.total_seconds() // 3600)
    retry = (
        "Anything else, a redirect, or no answer within "
        f"{settings.webhook_deadline_seconds:g} seconds is "
        f"retried after {int(delivery.BACKOFF_BASE.total_seconds())} s, each wait "
        f"{delivery.BACKOFF_FACTOR} times the last (at most {hours} h, with jitter), and "
        "abandoned after "
        f"{delivery.MAX_ATTEMPTS} attempts. The developer console shows every attempt."
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
                "data": schema_ref(event.data.__name__),
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
        if isinstance(ref, str) and ref.startswith(SCHEMAS_REF):
            yield ref.removeprefix(SCHEMAS_REF)
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
    document["webhooks"] = _webhooks(settings)

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
        prop.update(not_null(prop))  # a form field is sent or left out, never null
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


# -- Endpoints ------------------------------------------------------------------------------------


@router.get("/vendor/openapi.json")
def openapi_document(request: Request, rt: RuntimeDep) -> JSONResponse:
    """The vendor API's OpenAPI 3.1 document."""
    return JSONResponse(vendor_openapi(request.app, rt.settings))
