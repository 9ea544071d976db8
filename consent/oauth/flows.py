"""The grant types: authorization code with PKCE (S256 only) and OpenID Connect, refresh token
rotation, and client credentials for vendor-level scopes.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from sqlalchemy import select, update

from consent import scopes
from consent.grants.models import AuthorizationCode, Grant
from consent.grants.service import is_active, pairwise_subject
from consent.oauth.events import record_event
from consent.oauth.objects import (
    AUTH_METHODS,
    CODE_SECONDS,
    ID_TOKEN_SECONDS,
    Client,
    Code,
    ConsentedUser,
    ServerStorage,
    Token,
)
from consent.oauth.oidc import key_id, signing_key
from consent.oauth.tokens import TokenService
from vault.base import utcnow


class S256Only(CodeChallenge):
    """PKCE is mandatory and only S256 is accepted (no ``plain``, no missing method)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with method S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: ServerStorage

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
            # Recorded once per family: the code and the tokens its first use issued (a
            # code whose first use issued nothing is a family of its own).
            record_event(
                db,
                "code.replayed",
                family_id=row.token_family_id or row.id,
                app_id=row.app_id,
                grant_id=row.grant_id,
                rt=self.server.rt,
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
    server: ServerStorage

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
    def __init__(self, server: ServerStorage) -> None:
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
