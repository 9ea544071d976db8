"""Client-credentials tokens from the event loop, on PostgreSQL.

A vendor's back end asks for a token every few minutes per process it runs, so
``POST /oauth/token`` with ``grant_type=client_credentials`` is the authorization server's
busiest request. Through Authlib it is a worker-thread hop, the server and its grants built
for the request, the app loaded and the token row flushed through the ORM: about 6 ms of CPU,
two thirds of it Authlib's client authentication and the ORM (``bench/cpu.py`` under ``py-spy
--gil``). :func:`issue` does the same work for a request that will succeed: one statement for
the app, the rate-limit count, one insert, on ``vault.pgasync``'s connections.

It answers only a request every check of the full path would let through, and says so by
returning None for anything else (a secret that does not match, an unknown client, a method
the app did not register, a scope it may not use, a repeated or unexpected parameter), which
the endpoint then hands to Authlib: every refusal keeps the full path's exact answer, and is
counted by it once, as before (nothing is counted here before every check has passed).
"""

from __future__ import annotations

import base64
import hmac
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote

from sqlalchemy import bindparam, insert, select
from starlette.responses import Response

from consent import scopes
from consent.grants.models import OAuthToken
from consent.oauth.server import SlowDown, well_formed_basic
from consent.oauth.tokens import ACCESS_TOKEN_SECONDS
from consent.vendors import ratelimit
from consent.vendors.models import VendorApp
from consent.vendors.service import MAX_SECRET
from vault.base import utcnow
from vault.crypto import hash_token, new_token
from vault.pgasync import AsyncPostgres, compiled
from vault.runtime import Runtime

_APP_SQL = compiled(
    select(
        VendorApp.id,
        VendorApp.client_secret_hash,
        VendorApp.token_endpoint_auth_method,
        VendorApp.vendor_scopes,
    ).where(VendorApp.client_id == bindparam("client_id"))
)
_INSERT_SQL = compiled(insert(OAuthToken))

_SUPPORTED = frozenset(scopes.all_scopes())
_PARAMETERS = frozenset({"grant_type", "scope", "client_id", "client_secret"})

HEADERS = {"cache-control": "no-store", "pragma": "no-cache"}
"""What RFC 6749 section 5.1 asks of a token response (Authlib's ``TOKEN_RESPONSE_HEADER``)."""


FORM = "application/x-www-form-urlencoded"
MAX_BODY = 2048


def plain_form(content_type: str | None, body: bytes) -> list[tuple[str, str]] | None:
    """The pairs of a short urlencoded body of printable ASCII, or None (the full path's
    form parser then reads it). On such a body ``parse_qsl`` and the parser the full path
    uses read the same pairs: ``&`` between them, ``=`` in each, ``+`` and ``%XX`` decoded."""
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != FORM:
        return None
    if len(body) > MAX_BODY or not (body.isascii() and body.decode().isprintable()):
        return None
    if b";" in body:
        return None
    try:
        return parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=len(_PARAMETERS))
    except ValueError:  # more fields than the grant takes
        return None


def credentials(authorization: str | None, form: dict[str, str]) -> tuple[str, str, str] | None:
    """(method, client id, secret) of a request authenticated one way only, else None."""
    in_form = "client_id" in form or "client_secret" in form
    if authorization is not None:
        if in_form or not well_formed_basic(authorization):
            return None
        decoded = base64.b64decode(authorization.split(None, 1)[1].strip()).decode("utf-8")
        client_id, secret = decoded.split(":", 1)
        # RFC 6749 section 2.3.1: both are form-urlencoded before Basic (as Authlib reads them).
        return "client_secret_basic", unquote(client_id), unquote(secret)
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    return ("client_secret_post", client_id, secret) if client_id and secret else None


async def issue(
    rt: Runtime,
    pg: AsyncPostgres,
    limiter: ratelimit.Limiter,
    authorization: str | None,
    pairs: Sequence[tuple[str, str]],
) -> Response | None:
    """The token response to a client-credentials request that passes every check, or None:
    the request is the full path's to answer (see the module's docstring)."""
    form = dict(pairs)
    if len(form) != len(pairs) or not form.keys() <= _PARAMETERS:
        return None  # a repeated or unexpected parameter: Authlib says what is wrong
    if form.get("grant_type") != "client_credentials":
        return None
    found = credentials(authorization, form)
    if found is None:
        return None
    method, client_id, secret = found
    if not secret or len(secret) > MAX_SECRET or not client_id or len(client_id) > 64:
        return None
    if not (client_id.isascii() and client_id.isprintable()):
        return None
    requested = scopes.split(form.get("scope"))
    async with pg.connection() as conn:
        app = await conn.row(_APP_SQL, {"client_id": client_id})
        if app is None or app.client_secret_hash is None:
            return None
        presented = hash_token(rt.secrets.token_hash_key, secret)
        if not hmac.compare_digest(presented, bytes(app.client_secret_hash)):
            return None
        allowed = set(app.vendor_scopes or ())
        if method != app.token_endpoint_auth_method or not allowed:
            return None
        if not requested or any(s not in allowed or s not in _SUPPORTED for s in requested):
            return None
        limit = ratelimit.limit_for(rt.settings, ratelimit.OAUTH)
        usage = await limiter.ahit(app.id, ratelimit.OAUTH, limit, conn=conn)
        if usage.exceeded:
            return _json(*SlowDown(usage)())
        access_token = new_token()
        now = utcnow()
        scope = " ".join(requested)
        await conn.run(
            _INSERT_SQL,
            {
                "id": uuid.uuid4(),
                "app_id": app.id,
                "grant_id": None,
                "family_id": uuid.uuid4(),
                "access_token_hash": hash_token(rt.secrets.token_hash_key, access_token),
                "refresh_token_hash": None,
                "scope": scope,
                "issued_at": now,
                "access_expires_at": now + timedelta(seconds=ACCESS_TOKEN_SECONDS),
                "refresh_expires_at": None,
                "refreshed_at": None,
                "revoked_at": None,
            },
        )
    body = {
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": ACCESS_TOKEN_SECONDS,
        "scope": scope,
    }
    return _json(200, body, [*HEADERS.items(), *usage.headers().items()])


def _json(status: int, body: Any, headers: Sequence[tuple[str, str]]) -> Response:
    response = Response(json.dumps(body), status_code=status, media_type="application/json")
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers["cache-control"] = "no-store"
    return response
