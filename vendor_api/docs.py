"""The vendor API's own OpenAPI document (``/vendor/openapi.json``); ``web.vendor_reference``
renders it as the reference page (``/vendor/docs``).

The document is built from the running app's vendor-facing routes (every ``/vendor/v1/...``
route and ``GET /oauth/userinfo``), so it cannot drift from the code. Two things no route
declares are added from the code that does them: the token endpoint (Authlib reads its raw
form; :mod:`vendor_api.token_docs`) and the webhooks (the vault sends them; each event is the
model its sender queues, :mod:`vendor_api.webhook_docs`). The error codes the page lists are
those the routes declare (:func:`error_codes`). The page renders that same document as HTML,
without JavaScript, under the strict CSP, after a worked example of the whole loop; its reader
takes the helpers of :mod:`vendor_api.openapi` from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, get_args

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from vault.dependencies import RuntimeDep
from vault.errors import VaultError, error_responses
from vault.routing import APIRouter
from vault.settings import Settings
from vendor_api.dependencies import (
    IndividualTokenDep,
    IntentsReader,
    OffersWriter,
    access_token,
    individual_bearer,
)
from vendor_api.errors import RateLimited
from vendor_api.openapi import HEADERS_REF, SCHEMAS_REF, json_content, schema_ref
from vendor_api.token_docs import (
    APP_SCHEME,
    BEARER_SCHEME,
    INDIVIDUAL_SCHEME,
    TOKEN_PATH,
    security_schemes,
    token_path_item,
    token_schemas,
)
from vendor_api.webhook_docs import webhook_schemas, webhooks

router = APIRouter(include_in_schema=False)

VENDOR_PREFIX: Final = "/vendor/v1"
USERINFO_PATH: Final = "/oauth/userinfo"
_STATE_KEY: Final = "vendor_openapi"
RATE_HEADERS: Final = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


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
    (individual_bearer, {INDIVIDUAL_SCHEME: []}),
    (access_token, {BEARER_SCHEME: []}),
)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def route_contexts(app: FastAPI) -> Iterator[Any]:
    """Every route of ``app``, included routers' too."""
    # FastAPI 0.137.2+ keeps included routers as a tree that iter_route_contexts flattens;
    # before that, app.routes held every route itself.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    yield from flatten(app.routes) if flatten else app.routes


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """The methods some route of ``app`` answers at ``path``: a 405's ``Allow``. Starlette names
    only the first route that matched the path, where a path has a route per method."""
    return {
        method
        for route in route_contexts(app)
        if getattr(route, "methods", None) and route.path_regex.match(path)
        for method in route.methods
    }


def vendor_routes(app: FastAPI) -> list[Any]:
    """The app's vendor-facing API routes: ``/vendor/v1/...`` and ``GET /oauth/userinfo``."""
    chosen = []
    for route in route_contexts(app):
        if not isinstance(getattr(route, "original_route", route), fastapi.routing.APIRoute):
            continue
        path = route.path_format
        if path.startswith(VENDOR_PREFIX) or (path == USERINFO_PATH and "GET" in route.methods):
            chosen.append(route)
    return chosen


# -- The document ---------------------------------------------------------------------------------


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


VALIDATION_ERROR: Final = "validation_error"
"""The ``error`` of a 422, which the app's handler of FastAPI's request validation answers."""
_MALFORMED: Final = (
    "The JSON body or a parameter has the wrong type, or a field is missing or unknown"
)
_VALIDATION = {
    "description": f"{_MALFORMED} (`{VALIDATION_ERROR}`; `detail` names them).",
    "content": json_content(schema_ref("ErrorBody")),
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
        "description": f"Your app is over its rate limit (`{RateLimited.code}`).",
        "headers": {**limited, "Retry-After": {"$ref": HEADERS_REF + "Retry-After"}},
        "content": json_content(schema_ref("ErrorBody")),
    }


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


def schema_routes(app: FastAPI) -> list[Any]:
    """Every API route of ``app`` that is in its schema (``include_in_schema``)."""
    return [
        route
        for route in route_contexts(app)
        if isinstance(getattr(route, "original_route", route), fastapi.routing.APIRoute)
        and getattr(route, "include_in_schema", True)
    ]


_OAUTH_ERROR_PATHS: Final = {
    "/oauth/revoke": (
        "RFC 7009 revocation",
        "; `invalid_grant`: the token was issued to another app",
    ),
    "/oauth/introspect": ("RFC 7662 introspection", ""),
}


def _oauth_errors(operation: dict[str, Any], what: str, also: str) -> None:
    """The RFC 6749 error bodies an OAuth endpoint answers (Authlib's), not ``{error, detail}``.
    Authlib answers an unknown ``token_type_hint`` with 401 ``unsupported_token_type``
    (RFC 7009), which the token endpoint's ``OAuthError`` does not list."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)  # the form is read raw: a bad one is an OAuth error, never a 422
    responses["400"] = {
        "description": f"`invalid_request`: the form has no `token` ({what}){also}.",
        "content": json_content(schema_ref("OAuthError")),
    }
    responses["401"] = {
        "description": "`invalid_client`: the client id or secret is wrong; "
        "`unsupported_token_type`: `token_type_hint` is neither `access_token` nor "
        "`refresh_token`.",
        "content": json_content(
            {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "string",
                        "enum": ["invalid_client", "unsupported_token_type"],
                    },
                    "error_description": {"type": "string"},
                },
            }
        ),
    }


def _body_refusals(operation: dict[str, Any], settings: Settings) -> None:
    """Every operation that reads a body: 413 when it is over the size limit (refused before
    anything else runs) and 415 when its ``Content-Type`` is not one the operation reads."""
    content = (operation.get("requestBody") or {}).get("content")
    if not content:
        return
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses["413"] = {
        "description": f"`payload_too_large`: the body is larger than "
        f"{settings.max_body_bytes // 1024} KiB.",
        "content": json_content(schema_ref("ErrorBody")),
    }
    responses["415"] = {
        "description": "`unsupported_media_type`: the body is not "
        + " or ".join(f"`{media}`" for media in sorted(content))
        + " (its `Content-Type`).",
        "content": json_content(schema_ref("ErrorBody")),
    }


def build_document(
    app: FastAPI, settings: Settings, routes: list[Any] | None = None, **info: Any
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` of ``app`` (its vendor API unless given), refined
    with what no route declares: each vendor operation's scopes and rate-limit headers, this
    app's 422 body, the token endpoint, the OAuth endpoints' RFC 6749 errors, the webhooks."""
    routes = vendor_routes(app) if routes is None else routes
    document = get_openapi(
        title=info.get("title", "VRM Vault vendor API"),
        version=app.version,
        summary=info.get(
            "summary", "Consented profile reads, purchase intents, offers and signed webhooks."
        ),
        description=info.get(
            "description",
            "Vendors integrate through OAuth 2 / OpenID Connect, this API and webhooks. "
            'Errors are `{"error": code, "detail": sentence}` (and `field` for bad input); '
            "the token endpoint answers with RFC 6749 error bodies. Rate limits are per app "
            f"and per minute: {settings.vendor_reads_per_minute} reads (GET) and "
            f"{settings.vendor_writes_per_minute} writes. A rendered reference with a worked "
            "example is at `/vendor/docs`.",
        ),
        routes=routes,
        servers=[{"url": settings.base_url}],
    )
    requirements: dict[tuple[str, str], dict[str, list[str]] | None] = {}
    vendor_facing = {id(route) for route in vendor_routes(app)}
    for route in routes:
        calls = set(_calls(route.dependant))
        needs = next((req for dep, req in _REQUIREMENTS if dep in calls), None)
        for method in route.methods:
            if id(route) in vendor_facing or needs is not None:
                requirements[(route.path_format, method.lower())] = needs
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if (path, method) in requirements:
                _refine_operation(operation, requirements[(path, method)])
            else:  # not a vendor operation: keep its own security, fix only its 422
                responses = operation.get("responses", {})
                if "422" in responses:
                    responses["422"] = dict(_VALIDATION)
            if path in _OAUTH_ERROR_PATHS:
                _oauth_errors(operation, *_OAUTH_ERROR_PATHS[path])
    paths = document.get("paths", {})
    paths.pop(TOKEN_PATH, None)  # Authlib reads its raw form: described by hand
    document["paths"] = {TOKEN_PATH: token_path_item(), **paths}
    for item in document["paths"].values():
        for operation in item.values():
            _body_refusals(operation, settings)
    document["webhooks"] = webhooks(settings)

    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for described in (token_schemas(), webhook_schemas()):
        clash = set(described) & set(schemas)
        if clash:
            raise RuntimeError(f"vendor API schema names used twice: {sorted(clash)}")
        schemas.update(described)
    components.setdefault("securitySchemes", {}).update(security_schemes())
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


def api_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    """The whole API's document (``/api/openapi.json``): every route in the schema, refined
    as the vendor document is. Built once, on first use (FastAPI's ``app.openapi_schema``)."""
    if app.openapi_schema is None:
        app.openapi_schema = build_document(
            app,
            settings,
            schema_routes(app),
            title=app.title,
            summary=app.summary,
            description=(
                "Every API of the vault: the individual's, the vendors', OAuth 2 / OpenID "
                'Connect and operations. Errors are `{"error": code, "detail": sentence}`; '
                "the OAuth endpoints answer with RFC 6749 error bodies. A rendered reference "
                "is at `/api/docs`; the vendor API alone, with a worked example, at "
                "`/vendor/docs`."
            ),
        )
    return app.openapi_schema


# -- The error codes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """An ``error`` the vendor API answers with, its status, and when (a sentence with `code`
    spans)."""

    status: int
    code: str
    description: str


def _error_classes() -> list[type[VaultError]]:
    """``VaultError`` and every subclass of it defined so far, parents first."""
    found = [VaultError]
    for error in found:  # grows while it is walked
        found.extend(sub for sub in error.__subclasses__() if sub not in found)
    return found


def error_codes(app: FastAPI) -> list[ErrorCode]:
    """Every ``{error, detail}`` the vendor routes of ``app`` declare (``error_responses``
    of their error classes), each code once with what its classes say, by status; and the 422
    of a malformed request, which the app's handler answers."""
    declared = [
        (str(status), response.get("description", ""))
        for route in vendor_routes(app)
        for status, response in route.responses.items()
    ]
    found = {(422, VALIDATION_ERROR): [f"{_MALFORMED}; `detail` names them."]}
    for error in _error_classes():
        # The line error_responses writes for this class, as the routes declared it.
        line = error_responses(error)[error.status_code]["description"]
        if any(s == str(error.status_code) and line in d for s, d in declared):
            when = " ".join((error.__doc__ or "").split())
            said = found.setdefault((error.status_code, error.code), [])
            if when and when not in said:
                said.append(when)
    return [
        ErrorCode(status, code, " ".join(said)) for (status, code), said in sorted(found.items())
    ]


# -- Endpoints ------------------------------------------------------------------------------------


@router.get("/vendor/openapi.json")
def openapi_document(request: Request, rt: RuntimeDep) -> JSONResponse:
    """The vendor API's OpenAPI 3.1 document."""
    return JSONResponse(vendor_openapi(request.app, rt.settings))
