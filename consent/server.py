"""The authorization server: Authlib's grants and endpoints on the project's storage.

One ``VaultAuthorizationServer`` is built per request around that request's database session,
so Authlib's hooks (query_client, save_token, the grants' storage methods) all work inside the
request's unit of work.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants import is_active, pairwise_subject
from consent.models import AuthorizationCode, Grant, OAuthToken, VendorApp
from consent.oidc import key_id, signing_key
from consent.tokens import ACCESS_TOKEN_SECONDS, TokenService
from vault.base import utcnow
from vault.crypto import hash_token, new_token
from vault.runtime import Runtime

CODE_SECONDS = 60
MAX_STATE = 1000
MAX_NONCE = 255
ID_TOKEN_SECONDS = 600
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
EXTENSION_GRANTS: dict[str, type[grants.BaseGrant]] = {}
"""Extension grants (RFC 6749 section 4.5) other packages add, by their absolute-URI type."""


def register_extension_grant(grant: type[grants.BaseGrant]) -> None:
    """Add an extension grant to every authorization server built from now on.

    The grant's ``validate_token_request`` sets ``request.vault_grant`` (the consent grant the
    tokens point to); ``save_token`` stores the tokens against it.
    """
    assert grant.GRANT_TYPE and ":" in grant.GRANT_TYPE, "extension grant types are URIs"
    EXTENSION_GRANTS[grant.GRANT_TYPE] = grant


def grant_types_supported() -> list[str]:
    return [*GRANT_TYPES, *EXTENSION_GRANTS]


# -- requests ---------------------------------------------------------------------------------
class FormPayload(OAuth2Payload):
    def __init__(self, query: list[tuple[str, str]], form: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in [*query, *form]:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class VaultRequest(OAuth2Request):
    """An OAuth2Request built from what FastAPI already parsed."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = FormPayload(query, form)
        self._query = dict(query)
        self._form = dict(form)

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._form


# -- storage adapters -------------------------------------------------------------------------
class Client(ClientMixin):
    def __init__(self, app: VendorApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        self.id_token_signed_response_alg = "RS256"  # noqa: S105 (an algorithm name)

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # the redirect_uri parameter is always required

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = {scopes.OPENID, *scopes.profile_scopes()}
        return " ".join(s for s in scopes.split(scope) if s in allowed)

    def allowed_vendor_scope(self, scope: str | None) -> str:
        return " ".join(s for s in scopes.split(scope) if s in set(self.app.vendor_scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.app.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.app.client_secret_hash
        if not stored or not client_secret or len(client_secret) > 200:
            return False
        return hmac.compare_digest(
            stored, hash_token(self.rt.secrets.token_hash_key, client_secret)
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS and self.app.client_secret_hash is not None

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials":
            return bool(self.app.vendor_scopes)
        return grant_type in GRANT_TYPES or grant_type in EXTENSION_GRANTS


@dataclass
class ConsentedUser:
    """The individual behind a code or token, as Authlib's ``user``."""

    account_id: uuid.UUID
    subject: str
    grant: Grant | None = None
    auth_time: datetime | None = None
    """When the individual signed in to the session that consented (the id_token's
    ``auth_time``)."""


class Code:
    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None

    @property
    def code_challenge(self) -> str:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.row.code_challenge_method


class Token(TokenMixin):
    def __init__(self, row: OAuthToken, app: VendorApp, kind: str) -> None:
        self.row = row
        self.app = app
        self.kind = kind

    def check_client(self, client: Client) -> bool:
        return bool(self.row.app_id == client.app.id)

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return int((self.row.access_expires_at - self.row.issued_at).total_seconds())

    def is_expired(self) -> bool:
        if self.kind == "refresh_token":
            return bool(self.row.refresh_expires_at and self.row.refresh_expires_at <= utcnow())
        return bool(self.row.access_expires_at <= utcnow())

    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None

    def get_client(self) -> Client:
        raise NotImplementedError

    def get_user(self) -> None:
        return None


# -- grants -----------------------------------------------------------------------------------
class S256Only(CodeChallenge):
    """PKCE is mandatory and only S256 is accepted (no ``plain``, no missing method)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        for name, limit in (("state", MAX_STATE), ("nonce", MAX_NONCE)):
            if len(data.get(name) or "") > limit:
                raise InvalidRequestError(f"'{name}' is longer than {limit} characters.")
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with method S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: VaultAuthorizationServer

    def save_authorization_code(self, code: str, request: OAuth2Request) -> AuthorizationCode:
        user: ConsentedUser = request.user
        assert user.grant is not None
        data = request.payload.data
        now = utcnow()
        row = AuthorizationCode(
            id=uuid.uuid4(),
            code_hash=self.server.hash(code),
            app_id=request.client.app.id,
            grant_id=user.grant.id,
            redirect_uri=data["redirect_uri"],
            scope=scopes.scope_for(
                user.grant.fields, openid=scopes.OPENID in scopes.split(request.scope)
            ),
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            auth_time=user.auth_time or now,
            created_at=now,
            expires_at=now + timedelta(seconds=CODE_SECONDS),
            used_at=None,
            token_family_id=None,
        )
        self.server.db.add(row)
        self.server.db.flush()
        return row

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        """Claim the code atomically: of parallel redemptions exactly one gets it.

        A code presented again revokes every token the first redemption issued.
        """
        db = self.server.db
        if not code or len(code) > 200:
            return None
        row = db.scalars(
            select(AuthorizationCode).where(
                AuthorizationCode.code_hash == self.server.hash(code),
                AuthorizationCode.app_id == client.app.id,
            )
        ).one_or_none()
        if row is None:
            return None
        now = utcnow()
        claimed = db.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == row.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        db.refresh(row)
        if not claimed.rowcount:  # type: ignore[attr-defined]
            if row.token_family_id is not None:
                TokenService(db, self.server.rt).revoke_family(row.token_family_id, now)
            from consent.events import record_event

            record_event(
                db, "code.replayed", app_id=row.app_id, grant_id=row.grant_id, rt=self.server.rt
            )
            return None
        if row.expires_at <= now:
            return None
        grant = db.get(Grant, row.grant_id)
        if grant is None or not is_active(grant, now):
            return None
        return Code(row)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Nothing to do: the code was claimed when it was looked up."""

    def authenticate_user(self, authorization_code: Code) -> ConsentedUser | None:
        grant = self.server.db.get(Grant, authorization_code.row.grant_id)
        if grant is None:
            return None
        return ConsentedUser(
            grant.individual_id,
            pairwise_subject(self.server.rt, grant.app_id, grant.individual_id),
            grant,
        )


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: VaultAuthorizationServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        service = TokenService(self.server.db, self.server.rt)
        row = service.by_refresh_token(refresh_token)
        if row is None:
            return None
        client: Client = self.request.client
        if row.app_id != client.app.id:
            return None
        asked = set(scopes.split(self.request.payload.scope))
        if asked - set(scopes.split(row.scope)):
            return None  # a wider scope is refused before the token is spent
        if row.refreshed_at is not None:
            service.reuse_detected(row)
            return None
        if row.revoked_at is not None or (
            row.refresh_expires_at is not None and row.refresh_expires_at <= utcnow()
        ):
            return None
        grant = self.server.db.get(Grant, row.grant_id) if row.grant_id else None
        if grant is None or not is_active(grant):
            return None
        if not service.claim_refresh(row):  # a parallel refresh won the race
            service.reuse_detected(row)
            return None
        return Token(row, client.app, "refresh_token")

    def authenticate_user(self, refresh_token: Token) -> ConsentedUser | None:
        grant = self.server.db.get(Grant, refresh_token.row.grant_id)
        if grant is None:
            return None
        return ConsentedUser(
            grant.individual_id,
            pairwise_subject(self.server.rt, grant.app_id, grant.individual_id),
            grant,
        )

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Already done: claiming the refresh token revoked its access token too."""


class VendorCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: Client = self.request.client
        requested = scopes.split(self.request.payload.scope)
        if not requested or any(s not in set(client.app.vendor_scopes) for s in requested):
            from authlib.oauth2.rfc6749.errors import InvalidScopeError

            raise InvalidScopeError(
                f"Ask for scopes this app may use: {' '.join(client.app.vendor_scopes)}."
            )

    def generate_token(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The token carries the vendor scopes asked for.

        ``Client.get_allowed_scope`` (which the token generator applies) admits only what an
        individual can consent to, so it would strip ``intents:read`` and the like.
        """
        token: dict[str, Any] = super().generate_token(*args, **kwargs)
        client: Client = self.request.client
        scope = client.allowed_vendor_scope(self.request.payload.scope)
        if scope:
            token["scope"] = scope
        return token


class VaultOpenIDCode(OpenIDCode):
    def __init__(self, server: VaultAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def resolve_client_private_key(self, client: Client) -> Any:
        return signing_key(self.server.rt)

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {
            "iss": self.server.rt.settings.base_url,
            "aud": [client.get_client_id()],
            "exp": int(time.time()) + ID_TOKEN_SECONDS,
        }

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": key_id(self.server.rt), "typ": "JWT"}

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return (
            self.server.db.scalar(
                select(AuthorizationCode.id)
                .where(
                    AuthorizationCode.nonce == nonce,
                    AuthorizationCode.app_id == request.client.app.id,
                )
                .limit(1)
            )
            is not None
        )

    def generate_user_info(self, user: ConsentedUser, scope: str) -> UserInfo:
        return UserInfo(sub=user.subject)


# -- endpoints --------------------------------------------------------------------------------
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


# -- the server -------------------------------------------------------------------------------
class VaultAuthorizationServer(AuthorizationServer):
    def __init__(self, db: Session, rt: Runtime) -> None:
        super().__init__(scopes_supported=scopes.all_scopes())
        self.db = db
        self.rt = rt
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

    def hash(self, secret: str) -> bytes:
        return hash_token(self.rt.secrets.token_hash_key, secret)

    def query_client(self, client_id: str) -> Client | None:
        if not client_id or len(client_id) > 64:
            return None
        app = self.db.scalars(
            select(VendorApp).where(VendorApp.client_id == client_id)
        ).one_or_none()
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
        return status, body, headers
