"""Typed dependencies of the vendor API: the bearer access token and what it stands for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from consent.tokens import TokenContext, TokenService
from vault.dependencies import DbDep, RuntimeDep
from vendor_api.errors import InsufficientScope, InvalidToken

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description="An access token from the token endpoint: `Authorization: Bearer <token>`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def access_token(credentials: Credentials, db: DbDep, rt: RuntimeDep) -> TokenContext:
    """The live token in ``Authorization: Bearer``; anything else is 401 ``invalid_token``."""
    if credentials is None:
        raise InvalidToken(
            "Send an access token in the Authorization header: 'Bearer <token>'.", missing=True
        )
    ctx = TokenService(db, rt).validate_access_token(credentials.credentials)
    if ctx is None:
        raise InvalidToken(
            "The access token is unknown, expired or revoked, or the individual's permission "
            "has ended. Get a new token."
        )
    return ctx


TokenDep = Annotated[TokenContext, Depends(access_token)]


def individual_token(ctx: TokenDep) -> TokenContext:
    """A token an individual granted; an app's own (client credentials) token is 403."""
    if ctx.grant is None:
        raise InsufficientScope(
            "This token belongs to your app itself (client credentials). Reading personal data "
            "needs a token from an individual's consent (the authorization code flow).",
            scope="openid",
        )
    return ctx


IndividualTokenDep = Annotated[TokenContext, Depends(individual_token)]
