"""What Authlib works with, on the project's rows: requests, clients, the consenting user, codes
and tokens.
"""

from __future__ import annotations

import hmac
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.requests import OAuth2Payload
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.models import AuthorizationCode, Grant, OAuthToken
from consent.vendors.models import VendorApp
from vault.base import utcnow
from vault.crypto import hash_token
from vault.runtime import Runtime

CODE_SECONDS = 60


MAX_STATE = 1024
"""The longest ``state`` an authorization request may carry (RFC 6749 sets no limit; it comes
back in the redirect, and room for a signed blob of the client's own is plenty)."""


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


class ServerStorage(Protocol):
    """What the grant types need of the authorization server that runs them: the request's
    database session, the runtime, and the keyed hash that codes and tokens are stored as."""

    db: Session
    rt: Runtime

    def hash(self, secret: str) -> bytes: ...


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
        """Only the method the app registered (RFC 7591 ``token_endpoint_auth_method``), at
        the token, revocation and introspection endpoints alike: a secret that turns up
        somewhere the app never sends it (a ``client_secret_basic`` app's in a form body,
        which logs and proxies keep more readily than a header) is refused, not accepted."""
        return (
            method in AUTH_METHODS
            and method == self.app.token_endpoint_auth_method
            and self.app.client_secret_hash is not None
        )

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
