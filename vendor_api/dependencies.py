"""Typed dependencies of the vendor API: the bearer access token, its rate limit, its scopes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from consent.grants.access import TokenContext
from consent.grants.models import Grant
from consent.grants.service import is_active
from consent.oauth.tokens import TokenService
from consent.terms.catalogue import INTENT_SHARING
from consent.vendors import ratelimit
from vault.dependencies import DbDep, RuntimeDep
from vendor_api.errors import AgreementRequired, InsufficientScope, InvalidToken, RateLimited

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="AccessToken",
    description="An access token from the token endpoint: `Authorization: Bearer <token>`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    """The token in ``Authorization: Bearer``, or 401 ``invalid_token`` when there is none."""
    if credentials is None:
        raise InvalidToken(
            "Send an access token in the Authorization header: 'Bearer <token>'.", missing=True
        )
    return credentials.credentials


async def individual_bearer(credentials: Credentials) -> str:
    """The bearer token of a request that reads an individual's data; the read itself checks
    it, in the same statement that reads (``vendor_api.profile``)."""
    return bearer_token(credentials)


IndividualBearer = Annotated[str, Depends(individual_bearer)]


def rate_limited(usage: ratelimit.Usage, limit: int, bucket: str) -> RateLimited:
    """The 429 for an app over its limit, with ``Retry-After`` and the rate-limit headers."""
    kind = "reads (GET)" if bucket == ratelimit.READ else "writes (POST, PATCH, DELETE)"
    return RateLimited(
        f"Your app made more than {limit} {kind} this minute. Try again in "
        f"{usage.reset_seconds()} seconds.",
        headers={**usage.headers(), "Retry-After": str(usage.reset_seconds())},
    )


def access_token(
    request: Request, response: Response, credentials: Credentials, rt: RuntimeDep
) -> TokenContext:
    """The live token in ``Authorization: Bearer``, counted against its app's rate limit.

    Anything but a live token is 401 ``invalid_token``; an app over its limit is 429 with
    ``Retry-After``. The lookup and the count commit in their own short transaction before
    the request's own work begins, so a request that fails afterwards still counts.
    """
    token = bearer_token(credentials)
    bucket = ratelimit.bucket_for(request.method)
    limit = ratelimit.limit_for(rt.settings, bucket)
    with rt.sessions() as db, db.begin():
        ctx = TokenService(db, rt).validate_access_token(token)
        if ctx is None:
            raise InvalidToken(
                "The access token is unknown, expired or revoked, or the individual's "
                "permission has ended. Get a new token."
            )
        limiter: ratelimit.Limiter = request.app.state.rate_limiter
        usage = limiter.hit(ctx.app.id, bucket, limit, conn=db.connection())
    headers = usage.headers()
    # Error responses are built by the app's handlers; they add these too.
    request.state.rate_limit_headers = headers
    if usage.exceeded:
        raise rate_limited(usage, limit, bucket)
    response.headers.update(headers)
    return ctx


TokenDep = Annotated[TokenContext, Depends(access_token)]


def individual_token(ctx: TokenDep, db: DbDep) -> TokenContext:
    """A token an individual granted; an app's own (client credentials) token is 403.

    The grant is read again in the request's own transaction, so a revocation or narrowing
    that committed after the token check is already in force for this read.
    """
    if ctx.grant is None:
        raise InsufficientScope(
            "This token belongs to your app itself (client credentials). Reading personal data "
            "needs a token from an individual's consent (the authorization code flow).",
            scope="openid",
        )
    grant = db.get(Grant, ctx.grant.id)
    if grant is None or not is_active(grant):
        raise InvalidToken(
            "The individual's permission has ended. Get a new token after they consent again."
        )
    return TokenContext(ctx.token, ctx.app, grant)


IndividualTokenDep = Annotated[TokenContext, Depends(individual_token)]


def app_token(scope: str) -> Callable[[TokenContext], TokenContext]:
    """A dependency: the app's own token (client credentials) carrying ``scope``, for an app
    that accepts the intent-sharing agreement (the terms intents are published under)."""

    def check(ctx: TokenDep) -> TokenContext:
        if ctx.grant is not None or scope not in ctx.scopes:
            raise InsufficientScope(
                f"This needs your app's own token with the {scope} scope: use the client "
                f"credentials grant with scope={scope}.",
                scope=scope,
            )
        if INTENT_SHARING not in ctx.app.accepted_agreements:
            raise AgreementRequired(
                "Intents are shared only with apps that accept the intent-sharing agreement "
                "(/terms/intent-sharing). Add it to your app in the developer console."
            )
        return ctx

    return check


IntentsReader = Annotated[TokenContext, Depends(app_token("intents:read"))]
OffersWriter = Annotated[TokenContext, Depends(app_token("offers:write"))]
