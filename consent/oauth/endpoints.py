"""OAuth 2 / OpenID Connect protocol endpoints (the consent screen itself is in ``web``)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from consent import scopes
from consent.oauth import hot
from consent.oauth.objects import AUTH_METHODS, VaultRequest, grant_types_supported
from consent.oauth.oidc import jwks
from consent.oauth.server import VaultAuthorizationServer
from consent.vendors import ratelimit
from vault.db import unit_of_work
from vault.dependencies import DbDep, RuntimeDep
from vault.routing import APIRouter, form_body
from vault.runtime import Runtime

router = APIRouter(tags=["oauth"])
token_router = APIRouter(tags=["oauth"])
"""The token endpoint alone: the app matches it near the front of its routes (requests come
by the thousand, and each route matched before it cost the token request about 0.5% of its
CPU: `py-spy`, `bench/http.py --only token`)."""

MAX_FORM_FIELDS = 50
_TOKEN_FORM = form_body(
    {
        "token": {"type": "string", "description": "The access or refresh token."},
        "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
        "client_id": {"type": "string", "description": "With `client_secret_post` only."},
        "client_secret": {"type": "string", "description": "With `client_secret_post` only."},
    },
    ["token"],
)


async def oauth_form(request: Request) -> list[tuple[str, str]]:
    """The urlencoded body as pairs (repeated parameters kept, so Authlib can refuse them)."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


FormPairs = Annotated[list[tuple[str, str]], Depends(oauth_form)]


def vault_request(request: Request, rt: Runtime, form: list[tuple[str, str]]) -> VaultRequest:
    uri = rt.settings.base_url + request.url.path
    if request.url.query:
        uri += "?" + request.url.query
    return VaultRequest(
        request.method, uri, request.headers, list(request.query_params.multi_items()), form
    )


def to_response(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    content = json.dumps(body) if isinstance(body, dict) else (body or "")
    response = Response(content, status_code=status, media_type="application/json")
    for key, value in headers:
        response.headers[key] = value
    response.headers["cache-control"] = "no-store"
    return response


def metadata(rt: Runtime) -> dict[str, Any]:
    base = rt.settings.base_url
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "registration_endpoint": f"{base}/oauth/register",
        "userinfo_endpoint": f"{base}/oauth/userinfo",
        "jwks_uri": f"{base}/oauth/jwks",
        "scopes_supported": scopes.all_scopes(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types_supported(),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "given_name",
            "family_name",
            "email",
            "email_verified",
            "phone_number",
            "address",
            "birthdate",
            "locale",
        ],
        "service_documentation": f"{base}/vendor/docs",
    }


@router.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata(rt: RuntimeDep) -> dict[str, Any]:
    """RFC 8414 metadata."""
    return metadata(rt)


@router.get("/.well-known/openid-configuration")
def openid_configuration(rt: RuntimeDep) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0."""
    return metadata(rt)


@router.get("/oauth/jwks")
def json_web_key_set(rt: RuntimeDep) -> JSONResponse:
    """The public keys that sign id_tokens."""
    return JSONResponse(jwks(rt), headers={"cache-control": "public, max-age=300"})


@token_router.post(
    "/oauth/token",
    # The path item is written by hand (vendor_api.token_docs); this says which body it reads.
    openapi_extra=form_body({"grant_type": {"type": "string"}}, ["grant_type"]),
)
async def token(request: Request) -> Response:
    """Authorization code (PKCE S256), refresh token (rotating) and client credentials.

    Each app has a rate limit here (``VRM_TOKEN_REQUESTS_PER_MINUTE``), counted once the
    client has authenticated, in the limiter the vendor API uses (``app.state.rate_limiter``):
    over it, 429 ``slow_down`` with ``Retry-After``. Counted answers carry the RateLimit
    header fields.

    On PostgreSQL a client-credentials request that passes every check is answered in the
    event loop (:mod:`consent.oauth.hot`); every other request, and every refusal, is
    Authlib's, in a worker thread, in a unit of work of its own.
    """
    state = request.app.state
    rt: Runtime = state.runtime
    if state.hot_pg is not None and not request.url.query:
        pairs = hot.plain_form(request.headers.get("content-type"), await request.body())
        if pairs is not None:
            answer = await hot.issue(
                rt, state.hot_pg, state.rate_limiter, request.headers.get("authorization"), pairs
            )
            if answer is not None:
                return answer
    form = await oauth_form(request)
    return await run_in_threadpool(_token_response, request, form, rt)


def _token_response(request: Request, form: list[tuple[str, str]], rt: Runtime) -> Response:
    limiter: ratelimit.Limiter = request.app.state.rate_limiter
    with contextmanager(unit_of_work)(rt.sessions) as db:
        server = VaultAuthorizationServer(db, rt, limiter)
        response = to_response(server.create_token_response(vault_request(request, rt, form)))
    if server.token_usage is not None:
        for name, value in server.token_usage.headers().items():
            response.headers.setdefault(name, value)
    return response


@router.post("/oauth/revoke", openapi_extra=_TOKEN_FORM)
def revoke(request: Request, form: FormPairs, db: DbDep, rt: RuntimeDep) -> Response:
    """RFC 7009 token revocation."""
    server = VaultAuthorizationServer(db, rt)
    return to_response(
        server.create_endpoint_response("revocation", vault_request(request, rt, form))
    )


@router.post("/oauth/introspect", openapi_extra=_TOKEN_FORM)
def introspect(request: Request, form: FormPairs, db: DbDep, rt: RuntimeDep) -> Response:
    """RFC 7662 token introspection (a client may introspect only its own tokens)."""
    server = VaultAuthorizationServer(db, rt)
    return to_response(
        server.create_endpoint_response("introspection", vault_request(request, rt, form))
    )
