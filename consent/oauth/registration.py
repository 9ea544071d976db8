"""RFC 7591 dynamic client registration at ``POST /oauth/register``.

Registration needs an initial access token (``Authorization: Bearer <token>``) that an operator
issues with ``vrm vendors registration-token``. Initial access tokens are **single use**: the
registration that succeeds claims its token with a conditional ``UPDATE ... WHERE used_at IS
NULL`` in the same transaction that stores the app, so two concurrent registrations cannot both
use one token. A request refused for bad metadata (400) does not use the token up, so the
developer can correct it and send it again. Only a keyed hash of the token is stored.

Accepted client metadata (RFC 7591 section 2; anything else is ignored, as the RFC asks):

- ``client_name`` (required), ``client_uri`` (homepage, https, required), ``policy_uri``
  (privacy policy, https, required), ``redirect_uris`` (1 to 10, exact strings; https, or http
  on 127.0.0.1 / localhost / [::1]; no fragment; required even for a client that means to
  use only client credentials, since every app asks individuals for consent);
- ``token_endpoint_auth_method``: ``client_secret_basic`` (default) or ``client_secret_post``,
  the only way the app may then authenticate at the token, revocation and introspection
  endpoints;
- ``grant_types``: any of ``authorization_code`` (default), ``refresh_token``,
  ``client_credentials``; ``response_types``: ``code`` (default);
- ``scope``: space-separated; ``openid``, ``profile:<field>`` and the vendor capabilities
  ``intents:read`` and ``offers:write``. Only the capabilities are registered: profile fields
  are asked for at authorization time and each individual decides.

VRM extensions (not in RFC 7591):

- ``purpose`` (required, 1 to 500 characters): why the vendor wants personal data; shown to
  the individual on the consent screen;
- ``accepted_agreements`` (required, non-empty): ids of the standard agreements from the terms
  roster the vendor accepts (e.g. ``"service-only"``);
- ``webhook_url`` (optional): where signed events are delivered; same rule as redirect URIs.

The response (201) carries ``client_id``, ``client_secret`` (shown only here),
``client_id_issued_at``, ``client_secret_expires_at`` (0: it does not expire) and the
registered metadata. ``grant_types`` in the response says what the authorization server will
actually allow: every client may use the authorization code (with PKCE) and refresh token
grants; client credentials only with a vendor capability (``intents:read``, ``offers:write``).
Errors are RFC 7591 bodies, ``{"error": ..., "error_description": ...}``: 400 with
``invalid_redirect_uri``, ``invalid_client_metadata`` or ``invalid_software_statement``;
a missing, unknown, expired or used initial access token gets 401 with
``WWW-Authenticate: Bearer error="invalid_token"``.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent import scopes
from consent.oauth.models import RegistrationToken
from consent.vendors.models import VendorApp
from consent.vendors.service import (
    DEFAULT_AUTH_METHOD,
    AppInput,
    InvalidApp,
    register_app,
    validate_app,
)
from vault.base import utcnow
from vault.crypto import hash_token, new_token
from vault.dependencies import DbDep, RuntimeDep
from vault.routing import APIRouter
from vault.runtime import Runtime
from vault.strictjson import NotText, loads

router = APIRouter(tags=["oauth"])

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
RESPONSE_TYPES = ("code",)
MAX_TOKEN = 128
MAX_EXPIRY = timedelta(days=30)
_BEARER = re.compile(r"Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)[ ]*", re.IGNORECASE)
# RFC field names for the service's field names, so messages name what the client sent.
_RFC_FIELD = {
    "name": "client_name",
    "homepage_url": "client_uri",
    "privacy_policy_url": "policy_uri",
    "redirect_uris": "redirect_uris",
    "purpose": "purpose",
    "webhook_url": "webhook_url",
    "accepted_agreements": "accepted_agreements",
    "vendor_scopes": "scope",
    "token_endpoint_auth_method": "token_endpoint_auth_method",
}


# -- initial access tokens ----------------------------------------------------------------


def issue_registration_token(
    db: Session, rt: Runtime, *, expires_in: timedelta = timedelta(hours=24)
) -> tuple[RegistrationToken, str]:
    """A new single-use initial access token; the clear token exists only in the return value."""
    if not timedelta(0) < expires_in <= MAX_EXPIRY:
        raise ValueError("an initial access token lives between a moment and 30 days")
    token = new_token(32)
    now = utcnow()
    row = RegistrationToken(
        id=uuid.uuid4(),
        token_hash=hash_token(rt.secrets.token_hash_key, token),
        created_at=now,
        expires_at=now + expires_in,
    )
    db.add(row)
    db.flush()
    return row, token


def live_registration_token(db: Session, rt: Runtime, token: str) -> RegistrationToken | None:
    """The unused, unexpired token row for ``token``, or None."""
    if not token or len(token) > MAX_TOKEN:
        return None
    row = db.scalars(
        select(RegistrationToken).where(
            RegistrationToken.token_hash == hash_token(rt.secrets.token_hash_key, token)
        )
    ).one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        return None
    return row


def claim_registration_token(db: Session, row: RegistrationToken) -> bool:
    """Mark the token used, atomically; False when another request claimed it first."""
    now = utcnow()
    result = db.execute(
        update(RegistrationToken)
        .where(
            RegistrationToken.id == row.id,
            RegistrationToken.used_at.is_(None),
            RegistrationToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# -- request and response documents -------------------------------------------------------


class ClientMetadata(BaseModel):
    """RFC 7591 client metadata plus VRM's purpose, accepted_agreements and webhook_url."""

    model_config = ConfigDict(extra="ignore", strict=True)

    client_name: str | None = Field(None, examples=["Acme Outdoor"])
    redirect_uris: list[str] | None = Field(None, examples=[["https://acme.example/callback"]])
    client_uri: str | None = Field(None, examples=["https://acme.example"])
    policy_uri: str | None = Field(None, examples=["https://acme.example/privacy"])
    token_endpoint_auth_method: str | None = Field(None, examples=["client_secret_basic"])
    grant_types: list[str] | None = Field(None, examples=[["authorization_code", "refresh_token"]])
    response_types: list[str] | None = Field(None, examples=[["code"]])
    scope: str | None = Field(None, examples=["openid profile:email intents:read"])
    software_statement: str | None = None
    purpose: str | None = Field(
        None, description="VRM: why the vendor wants personal data (shown to individuals)."
    )
    accepted_agreements: list[str] | None = Field(
        None, description="VRM: ids of the standard agreements the vendor accepts."
    )
    webhook_url: str | None = Field(None, description="VRM: where signed events are sent.")


class ClientInformation(BaseModel):
    """RFC 7591 section 3.2.1 client information response."""

    client_id: str
    client_secret: str
    client_id_issued_at: int
    client_secret_expires_at: int = 0
    client_name: str
    redirect_uris: list[str]
    client_uri: str
    policy_uri: str
    token_endpoint_auth_method: str
    grant_types: list[str]
    response_types: list[str]
    scope: str
    purpose: str
    accepted_agreements: list[str]
    webhook_url: str | None


class RegistrationError(BaseModel):
    error: str
    error_description: str


def _error(code: str, description: str, status: int = 400) -> JSONResponse:
    headers = {"Pragma": "no-cache", "Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return JSONResponse(
        {"error": code, "error_description": description}, status_code=status, headers=headers
    )


class _Invalid(Exception):
    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description


def _check_grants(meta: ClientMetadata) -> None:
    grant_types = meta.grant_types if meta.grant_types is not None else ["authorization_code"]
    response_types = meta.response_types if meta.response_types is not None else ["code"]
    bad = [g for g in grant_types if g not in GRANT_TYPES]
    if bad or not grant_types:
        raise _Invalid(
            "invalid_client_metadata",
            f"grant_types: unsupported {', '.join(bad)[:100] or '(empty list)'}; "
            f"use any of {', '.join(GRANT_TYPES)}.",
        )
    bad = [r for r in response_types if r not in RESPONSE_TYPES]
    if bad:
        raise _Invalid(
            "invalid_client_metadata",
            f"response_types: unsupported {', '.join(bad)[:100]}; only code is supported.",
        )
    if ("authorization_code" in grant_types) != ("code" in response_types):
        raise _Invalid(
            "invalid_client_metadata",
            "grant_types and response_types disagree: the authorization_code grant goes "
            'with the "code" response type.',
        )


def _vendor_scopes(scope: str | None) -> list[str]:
    requested = scopes.split(scope)
    known = set(scopes.all_scopes())
    unknown = [s for s in requested if s not in known]
    if unknown:
        raise _Invalid(
            "invalid_client_metadata",
            f"scope: unknown scope {', '.join(unknown)[:200]}; use openid, profile:<field> "
            f"or {', '.join(scopes.VENDOR_SCOPES)}.",
        )
    return [s for s in requested if s in scopes.VENDOR_SCOPES]


def _app_input(meta: ClientMetadata) -> AppInput:
    if meta.software_statement is not None:
        raise _Invalid("invalid_software_statement", "Software statements are not accepted here.")
    _check_grants(meta)
    return AppInput(
        name=meta.client_name or "",
        homepage_url=meta.client_uri or "",
        privacy_policy_url=meta.policy_uri or "",
        redirect_uris=meta.redirect_uris or [],
        purpose=meta.purpose or "",
        accepted_agreements=meta.accepted_agreements or [],
        webhook_url=meta.webhook_url,
        vendor_scopes=_vendor_scopes(meta.scope),
        token_endpoint_auth_method=meta.token_endpoint_auth_method or DEFAULT_AUTH_METHOD,
    )


def _invalid_app(exc: InvalidApp) -> _Invalid:
    code = "invalid_redirect_uri" if "redirect_uris" in exc.errors else "invalid_client_metadata"
    ordered = sorted(exc.errors.items(), key=lambda item: item[0] != "redirect_uris")
    description = " ".join(f"{_RFC_FIELD.get(k, k)}: {v}" for k, v in ordered)
    return _Invalid(code, description)


def _parse(body: bytes, content_type: str) -> ClientMetadata:
    if "json" not in content_type.lower():
        raise _Invalid(
            "invalid_client_metadata",
            "Send the client metadata as a JSON object (Content-Type: application/json).",
        )
    try:
        data = loads(body)
    except NotText as exc:
        raise _Invalid("invalid_client_metadata", f"{exc.msg}.") from None
    except ValueError:
        raise _Invalid("invalid_client_metadata", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _Invalid("invalid_client_metadata", "The body must be a JSON object.")
    try:
        return ClientMetadata.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        code = "invalid_redirect_uri" if where.startswith("redirect_uris") else None
        raise _Invalid(
            code or "invalid_client_metadata", f"{where}: {first.get('msg', 'invalid')}."
        ) from None


def information(app: VendorApp, secret: str) -> dict[str, Any]:
    return ClientInformation(
        client_id=app.client_id,
        client_secret=secret,
        client_id_issued_at=int(app.created_at.timestamp()),
        client_secret_expires_at=0,
        client_name=app.name,
        redirect_uris=list(app.redirect_uris),
        client_uri=app.homepage_url,
        policy_uri=app.privacy_policy_url,
        token_endpoint_auth_method=app.token_endpoint_auth_method,
        grant_types=[g for g in GRANT_TYPES if g != "client_credentials" or app.vendor_scopes],
        response_types=list(RESPONSE_TYPES),
        scope=" ".join([scopes.OPENID, *scopes.profile_scopes(), *app.vendor_scopes]),
        purpose=app.purpose,
        accepted_agreements=list(app.accepted_agreements),
        webhook_url=app.webhook_url,
    ).model_dump()


async def _body(request: Request) -> bytes:
    return await request.body()


def _bearer(authorization: str | None) -> str | None:
    match = _BEARER.fullmatch(authorization or "")
    return match.group(1) if match else None


@router.post(
    "/oauth/register",
    status_code=201,
    summary="Register a client (RFC 7591 dynamic client registration)",
    response_model=ClientInformation,
    responses={
        400: {"model": RegistrationError, "description": "Invalid client metadata"},
        401: {"model": RegistrationError, "description": "Missing or invalid access token"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ClientMetadata.model_json_schema()}},
        },
    },
)
def register_client(
    request: Request, db: DbDep, rt: RuntimeDep, body: Annotated[bytes, Depends(_body)]
) -> JSONResponse:
    """Register an OAuth client with an operator-issued initial access token (single use)."""
    token = _bearer(request.headers.get("authorization"))
    row = live_registration_token(db, rt, token) if token else None
    if row is None:
        return _error(
            "invalid_token",
            "A valid initial access token is required (Authorization: Bearer <token>); "
            "tokens are single use and expire. Ask the operator for a new one.",
            401,
        )
    try:
        data = _app_input(_parse(body, request.headers.get("content-type", "")))
        validate_app(data)
    except _Invalid as exc:
        return _error(exc.code, exc.description)
    except InvalidApp as exc:
        invalid = _invalid_app(exc)
        return _error(invalid.code, invalid.description)
    if not claim_registration_token(db, row):
        return _error("invalid_token", "This initial access token was used already.", 401)
    app, secret = register_app(
        db, rt, data, owner_id=None, registered_via="dynamic", with_secret=True
    )
    assert secret is not None
    return JSONResponse(
        information(app, secret),
        status_code=201,
        headers={"Pragma": "no-cache", "Cache-Control": "no-store"},
    )
