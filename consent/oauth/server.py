"""The authorization server: Authlib's grants and endpoints on the project's storage.

One ``VaultAuthorizationServer`` is built per request around that request's database session,
so Authlib's hooks (query_client, save_token, the grants' storage methods) all work inside the
request's unit of work.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.errors import RequestNotSupportedError, RequestURINotSupportedError
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.models import AuthorizationCode, Grant, OAuthToken
from consent.grants.service import is_active, pairwise_subject
from consent.oauth.flows import (
    CodeGrant,
    RefreshGrant,
    S256Only,
    VaultOpenIDCode,
    VendorCredentialsGrant,
)
from consent.oauth.objects import (
    AUTH_METHODS,
    EXTENSION_GRANTS,
    MAX_NONCE,
    MAX_STATE,
    Client,
    Token,
)
from consent.oauth.tokens import ACCESS_TOKEN_SECONDS, TokenService
from consent.vendors import ratelimit
from consent.vendors.models import VendorApp
from consent.vendors.service import app_for_client_id
from vault.crypto import hash_token, new_token
from vault.runtime import Runtime


def well_formed_basic(authorization: str | None) -> bool:
    """Whether ``authorization`` is HTTP Basic as RFC 7617 has it: base64 of the UTF-8
    ``client_id:secret``. Authlib's own parser fails with an exception (a 500) on bytes that
    are not UTF-8 and on a scheme with nothing after it."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except ValueError:  # not base64 (or not ASCII), not UTF-8
        return False
    return ":" in decoded


def authenticate_basic(query_client: Callable[[str], Client | None], request: Any) -> Any:
    """``client_secret_basic``: Authlib's, for a well-formed header; a malformed one
    authenticates nobody, which ends in 401 ``invalid_client`` with ``WWW-Authenticate``."""
    if not well_formed_basic(request.headers.get("Authorization")):
        return None
    return authenticate_client_secret_basic(query_client, request)


CLIENT_AUTHENTICATION = (
    "Authenticate with your app's client id and secret, sent the way the app registered them "
    "(token_endpoint_auth_method): HTTP Basic for client_secret_basic, the client_id and "
    "client_secret form fields for client_secret_post."
)


# Parameters of an authorization request that RFC 6749 (appendix A) and RFC 7636 allow only
# printable ASCII in. Authlib repeats some of them in an error description, and raises
# ValueError (a 500) when that description is not ASCII.
ASCII_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "code_challenge",
    "code_challenge_method",
)


# Request objects (OpenID Connect Core 6, RFC 9101), which this server does not take.
REQUEST_OBJECTS: dict[str, type[OAuth2Error]] = {
    "request": RequestNotSupportedError,
    "request_uri": RequestURINotSupportedError,
}


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: VaultAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.server.find_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        """Revoking either token of a family revokes the family (RFC 7009 section 2.1)."""
        TokenService(self.server.db, self.server.rt).revoke_family(token.row.family_id)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS
    server: VaultAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return self.server.find_token(token_string, token_type_hint)

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        row = token.row
        service = TokenService(self.server.db, self.server.rt)
        active = not token.is_revoked() and not token.is_expired()
        if active and token.kind == "access_token":
            active = service.context(row) is not None
        elif active and row.grant_id is not None:
            grant = self.server.db.get(Grant, row.grant_id)
            active = grant is not None and is_active(grant)
        if not active:
            return {"active": False}
        body: dict[str, Any] = {
            "active": True,
            "scope": row.scope,
            "client_id": token.app.client_id,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
            "iat": int(row.issued_at.timestamp()),
            "exp": int(
                (
                    row.access_expires_at
                    if token.kind == "access_token"
                    else row.refresh_expires_at or row.access_expires_at
                ).timestamp()
            ),
            "iss": self.server.rt.settings.base_url,
        }
        if row.grant_id is not None:
            grant = self.server.db.get(Grant, row.grant_id)
            if grant is not None:
                body["sub"] = pairwise_subject(self.server.rt, grant.app_id, grant.individual_id)
        return body


class SlowDown(OAuth2Error):
    """429 for a client over its token-endpoint rate limit, in the RFC 6749 error shape OAuth
    clients parse (``error``, ``error_description``), with ``slow_down`` (the token endpoint's
    registered "you are asking too often" code, RFC 8628 section 3.5), ``Retry-After`` (which
    HTTP clients and retry middleware honour) and the RateLimit header fields."""

    error = "slow_down"
    status_code = 429

    def __init__(self, usage: ratelimit.Usage) -> None:
        super().__init__(
            description=f"Your app made more than {usage.limit} token requests this minute. "
            f"Try again in {usage.reset_seconds()} seconds."
        )
        self.usage = usage

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return [
            *headers,
            *self.usage.headers().items(),
            ("Retry-After", str(self.usage.reset_seconds())),
        ]


class VaultAuthorizationServer(AuthorizationServer):
    def __init__(self, db: Session, rt: Runtime, limiter: ratelimit.Limiter | None = None) -> None:
        """``limiter``: counts token requests per app (the token endpoint passes the app's);
        None counts nothing (revocation and introspection are not limited here)."""
        super().__init__(scopes_supported=scopes.all_scopes())
        self.db = db
        self.rt = rt
        self.limiter = limiter
        self.token_usage: ratelimit.Usage | None = None
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=lambda **_: new_token(),
                refresh_token_generator=lambda **_: new_token(),
                expires_generator=lambda client, grant_type: ACCESS_TOKEN_SECONDS,
            ),
        )
        self.register_grant(CodeGrant, [S256Only(required=True), VaultOpenIDCode(self)])
        self.register_grant(RefreshGrant)
        self.register_grant(VendorCredentialsGrant)
        for extension in EXTENSION_GRANTS.values():
            self.register_grant(extension)
        self.register_endpoint(Revocation(self))
        self.register_endpoint(Introspection(self))
        self.register_client_auth_method("client_secret_basic", authenticate_basic)

    def hash(self, secret: str) -> bytes:
        return hash_token(self.rt.secrets.token_hash_key, secret)

    def authenticate_client(
        self, request: OAuth2Request, methods: list[str], endpoint: str = "token"
    ) -> Client:
        """Authlib's client authentication, then (at the token endpoint) the app's rate limit.

        Every grant authenticates the client before it looks at a code or a token, so a client
        over its limit gets :class:`SlowDown` before anything is claimed, revoked or recorded.
        Only authenticated requests count: client ids are public, and a stranger sending one
        with a wrong secret must not use up the app's budget.

        A failure says what would succeed: Authlib's own sentence lists every method the
        server knows, not that only the one the app registered is accepted.
        """
        try:
            client: Client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            error.description = CLIENT_AUTHENTICATION
            raise
        if endpoint == "token" and self.limiter is not None:
            limit = ratelimit.limit_for(self.rt.settings, ratelimit.OAUTH)
            usage = self.limiter.hit(
                client.app.id, ratelimit.OAUTH, limit, conn=self.db.connection()
            )
            self.token_usage = usage
            if usage.exceeded:
                raise SlowDown(usage)
        return client

    def get_consent_grant(self, request: Any = None, end_user: Any = None) -> Any:
        """Authlib's, after the refusals it does not make: a ``state`` or ``nonce`` over its
        length limit and a parameter that is not printable ASCII (``invalid_request``), a
        request object by value or by reference (``request_not_supported``,
        ``request_uri_not_supported``: the metadata says neither is supported, and ignoring
        one would ignore what the client put in it). Each is sent to the client when its
        redirect URI checks out (as Authlib does for its own errors), else shown to the
        person. A ``state`` over the limit is not sent back: the answer would be as long."""
        payload = request.payload

        def refuse(error: type[OAuth2Error], description: str, state: str | None) -> OAuth2Error:
            redirect_uri = self._verified_redirect_uri(payload.client_id, payload.redirect_uri)
            return error(description, state=state, redirect_uri=redirect_uri)

        for name, limit in (("state", MAX_STATE), ("nonce", MAX_NONCE)):
            if any(len(value) > limit for value in payload.datalist.get(name, [])):
                raise refuse(
                    InvalidRequestError,
                    f"{name} is longer than {limit} characters.",
                    None if name == "state" else payload.state,
                )
        for name in ASCII_PARAMETERS:
            if not all(map(_printable_ascii, payload.datalist.get(name, []))):
                raise refuse(
                    InvalidRequestError, f"{name} must be printable ASCII text.", payload.state
                )
        for name, unsupported in REQUEST_OBJECTS.items():
            if name in payload.datalist:
                raise refuse(
                    unsupported,
                    f"This server takes no request objects ({name}): send the parameters "
                    "of the authorization request in its query.",
                    payload.state,
                )
        return super().get_consent_grant(request, end_user)

    def _verified_redirect_uri(self, client_id: str | None, requested: str | None) -> str | None:
        client = self.query_client(client_id or "")
        if client is None:
            return None
        if requested:
            return requested if client.check_redirect_uri(requested) else None
        return client.get_default_redirect_uri()

    def query_client(self, client_id: str) -> Client | None:
        app = app_for_client_id(self.db, client_id)
        return Client(app, self.rt) if app is not None else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        client: Client = request.client
        service = TokenService(self.db, self.rt)
        grant_type = request.payload.grant_type
        grant: Grant | None = None
        family_id: uuid.UUID | None = None
        code_row: AuthorizationCode | None = None
        if grant_type == "authorization_code":
            code_row = request.authorization_code.row
            grant = self.db.get(Grant, code_row.grant_id)
        elif grant_type == "refresh_token":
            old: OAuthToken = request.refresh_token.row
            grant = self.db.get(Grant, old.grant_id) if old.grant_id else None
            family_id = old.family_id
        elif grant_type in EXTENSION_GRANTS:
            grant = request.vault_grant
        row = service.issue(
            client.app,
            token.get("scope", ""),
            grant=grant,
            family_id=family_id,
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            expires_in=int(token.get("expires_in", ACCESS_TOKEN_SECONDS)),
        )
        if code_row is not None:
            code_row.token_family_id = row.family_id
            self.db.flush()

    def find_token(self, token_string: str, hint: str | None) -> Token | None:
        service = TokenService(self.db, self.rt)
        order = (
            ["refresh_token", "access_token"]
            if hint == "refresh_token"
            else ["access_token", "refresh_token"]
        )
        for kind in order:
            row = (
                service.by_access_token(token_string)
                if kind == "access_token"
                else service.by_refresh_token(token_string)
            )
            if row is not None:
                app = self.db.get(VendorApp, row.app_id)
                if app is not None:
                    return Token(row, app, kind)
        return None

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal subscribers: state changes happen in the storage methods above."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        """Every answer of this server, with the issuer added to the authorization responses.

        RFC 9207: an authorization response (a code, or an error sent to the client's redirect
        URI) carries ``iss``, so a client talking to several servers can tell which one
        answered (mix-up attacks). The redirects to the client are the only answers with a
        ``Location``; the token, revocation and introspection endpoints never send one.
        (Authlib's ``IssuerParameter`` hooks an event its server does not fire.)
        """
        headers = [
            (name, add_params_to_uri(value, [("iss", self.rt.settings.base_url)]))
            if name.lower() == "location"
            else (name, value)
            for name, value in headers
        ]
        return status, body, headers
