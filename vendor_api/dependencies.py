"""Typed dependencies of the vendor API: the bearer access token, its rate limit, its scopes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import Connection, Select, bindparam, cast, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, aliased
from starlette.concurrency import run_in_threadpool

from consent.grants.access import TokenContext
from consent.grants.models import Grant, OAuthToken
from consent.grants.service import is_active
from consent.oauth.endpoints import MAX_FORM_FIELDS
from consent.oauth.tokens import TokenService
from consent.terms.catalogue import INTENT_SHARING
from consent.vendors import ratelimit
from consent.vendors.models import VendorApp
from consent.vendors.ratelimit import Usage
from intents.market import Seller
from vault.base import utcnow
from vault.crypto import hash_token
from vault.db import autocommit, transaction
from vault.dependencies import DbDep, RuntimeDep
from vault.pgasync import SQL, AsyncPostgres, Conn, compiled
from vault.runtime import Runtime
from vendor_api.errors import (
    AgreementRequired,
    InsufficientScope,
    InvalidToken,
    RateLimited,
    TokenSentTwice,
)

T = TypeVar("T")
Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])

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


async def request_bearer(request: Request) -> str:
    """The token in ``Authorization: Bearer`` (401 ``invalid_token`` when there is none), read
    here and not through a dependency of its own: FastAPI solves each level of dependencies
    anew on every request. The documents name the scheme all the same (``vendor_api.docs``)."""
    return bearer_token(await bearer_scheme(request))


async def individual_bearer(request: Request) -> str:
    """The bearer token of a request that reads an individual's data; the read itself checks
    it, in the same statement that reads (``vendor_api.profile``)."""
    return await request_bearer(request)


IndividualBearer = Annotated[str, Depends(individual_bearer)]


_UNUSABLE = (
    "The access token is unknown, expired or revoked, or the individual's permission has "
    "ended. Get a new token."
)


def rate_limited(usage: ratelimit.Usage, limit: int, bucket: str) -> RateLimited:
    """The 429 for an app over its limit, with ``Retry-After`` and the rate-limit headers."""
    kind = "reads (GET)" if bucket == ratelimit.READ else "writes (POST, PATCH, DELETE)"
    return RateLimited(
        f"Your app made more than {limit} {kind} this minute. Try again in "
        f"{usage.reset_seconds()} seconds.",
        headers={**usage.headers(), "Retry-After": str(usage.reset_seconds())},
    )


FORM_BODY = "application/x-www-form-urlencoded"


async def header_or_form_bearer(request: Request, credentials: Credentials) -> str:
    """The access token in ``Authorization: Bearer`` or, for a POST with a form-encoded body,
    in its ``access_token`` parameter (RFC 6750 section 2.2; pyoidc sends it there for
    userinfo). Never from the query (section 2.3) or another kind of body. One way only:
    a token sent twice is 400 ``invalid_request`` (section 3.1)."""
    in_body: list[str] = []
    media_type = (request.headers.get("content-type") or "").partition(";")[0].strip().lower()
    if request.method == "POST" and media_type == FORM_BODY:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
        in_body = [v for v in form.getlist("access_token") if isinstance(v, str)]
    if len(in_body) + (credentials is not None) > 1:
        raise TokenSentTwice(
            "Send the access token one way: in the Authorization header or as the "
            "access_token form field, once."
        )
    return in_body[0] if in_body else bearer_token(credentials)


def access_token(
    request: Request, response: Response, credentials: Credentials, rt: RuntimeDep
) -> TokenContext:
    """The live token in ``Authorization: Bearer`` (see :func:`live_token`)."""
    return live_token(request, response, bearer_token(credentials), rt)


def form_access_token(
    request: Request,
    response: Response,
    token: Annotated[str, Depends(header_or_form_bearer)],
    rt: RuntimeDep,
) -> TokenContext:
    """:func:`access_token`, for a token in the header or in a form-encoded POST body (the
    userinfo read: counted as a read, whichever method carries it)."""
    return live_token(request, response, token, rt, ratelimit.READ)


def live_token(
    request: Request, response: Response, token: str, rt: Runtime, bucket: str | None = None
) -> TokenContext:
    """The token if it is live, counted against its app's rate limit (in ``bucket``, else by
    the request's method).

    Anything but a live token is 401 ``invalid_token``; an app over its limit is 429 with
    ``Retry-After``. The lookup and the count commit in their own short transaction before
    the request's own work begins, so a request that fails afterwards still counts.
    """
    bucket = bucket or ratelimit.bucket_for(request.method)
    limit = ratelimit.limit_for(rt.settings, bucket)
    with rt.sessions() as db, db.begin():
        ctx = TokenService(db, rt).validate_access_token(token)
        if ctx is None:
            raise InvalidToken(_UNUSABLE)
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
FormTokenDep = Annotated[TokenContext, Depends(form_access_token)]


def individual_token(ctx: TokenDep, db: DbDep) -> TokenContext:
    """A token an individual granted; an app's own (client credentials) token is 403.

    The grant is read again in the request's own transaction, so a revocation or narrowing
    that committed after the token check is already in force for this read.
    """
    return granted(ctx, db)


def form_individual_token(ctx: FormTokenDep, db: DbDep) -> TokenContext:
    """:func:`individual_token`, for a token in the header or in a form-encoded POST body."""
    return granted(ctx, db)


def granted(ctx: TokenContext, db: Session) -> TokenContext:
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
IndividualFormTokenDep = Annotated[TokenContext, Depends(form_individual_token)]


_Sibling = aliased(VendorApp)

_TOKEN_COLUMNS = (
    OAuthToken.app_id,
    OAuthToken.scope,
    OAuthToken.access_expires_at,
    OAuthToken.revoked_at,
    OAuthToken.grant_id,
    Grant.revoked_at.label("grant_revoked_at"),
    Grant.expires_at.label("grant_expires_at"),
)
"""What :func:`_check_live` and :func:`_check_app_scope` read of a token (its app's
agreement aside)."""


def of_token(query: Q) -> Q:
    """``query`` over the token whose hash is bound, its app and its grant if any (the app
    calls' statements here, the profile read's in ``vendor_api.profile``)."""
    return (
        query.select_from(OAuthToken)
        .join(VendorApp, VendorApp.id == OAuthToken.app_id)
        .outerjoin(Grant, Grant.id == OAuthToken.grant_id)
        .where(OAuthToken.access_token_hash == bindparam("token_hash"))
    )


_APP_TOKEN = of_token(
    select(*_TOKEN_COLUMNS, VendorApp.accepted_agreements, _Sibling.id.label("sibling_id"))
).outerjoin(_Sibling, _Sibling.owner_id == VendorApp.owner_id)
"""The token, its app's agreements and its vendor's apps (a row each; one row with no sibling
when the app has no vendor account): what an app call checks, in one statement."""
_APP_TOKEN_SQL = compiled(_APP_TOKEN)
"""The same for the event loop's connections (:meth:`AppCall.write`)."""


TOKEN = of_token(
    select(
        *_TOKEN_COLUMNS,
        # Whether the app accepts intent sharing, not its list of agreements: the token's
        # columns come on each row of the page, and a JSON value is parsed for each.
        cast(VendorApp.accepted_agreements, JSONB).has_key(INTENT_SHARING).label("intent_sharing"),
        func.coalesce(
            select(func.array_agg(_Sibling.id))
            .where(_Sibling.owner_id == VendorApp.owner_id)
            .scalar_subquery(),
            postgresql.array([OAuthToken.app_id]),
        ).label("apps"),
    )
).cte("token")
""":data:`_APP_TOKEN` as one row (the vendor's apps as the array ``apps``; the app alone when
it has no vendor account), for a statement that reads the token with its work
(:meth:`AppCall.read`; PostgreSQL)."""


@dataclass(frozen=True, slots=True)
class AppCall:
    """A request made with the app's own token (client credentials) for ``scope``: checked,
    counted and served, in the event loop (:meth:`read`, :meth:`write`, on PostgreSQL) or in
    one hop to a worker thread (:meth:`run`).

    The token, its app and its vendor's other apps come in one statement; then the rate-limit
    count, the scope and the intent-sharing agreement, then the work. On a worker thread a
    read (GET) runs each statement as its own transaction on PostgreSQL (no BEGIN/COMMIT
    round trips: every check and the page are single statements) and a write runs all of it
    in one transaction; in the event loop a read's token comes in the statement that reads
    (:meth:`read`), a write's checks and count are statements of their own and its work has
    its own transaction. Either way the token is checked in the same connection, before or
    with the work, so a revocation that committed before is in force, whichever process
    committed it. A request that fails after it was counted still counts (a database count
    rolled back with a failed write is made again, in a transaction of its own).
    """

    request: Request
    token: str
    scope: str

    async def read(
        self,
        work: Callable[[Session, Runtime, Seller], T],
        statement: Callable[[Any], SQL],
        values: Mapping[str, Any],
        fast: Callable[[Conn, Runtime, Seller, Sequence[Any]], Awaitable[T]],
    ) -> T:
        """A read (GET) whose statement reads the token too: on PostgreSQL,
        ``statement(TOKEN)`` (a statement built around :data:`TOKEN`, a CTE of the token's
        row) run with ``values`` and the token's hash, in the event loop; the token checked
        from its first row, the request counted, the scope and agreement checked, then
        ``fast(conn, rt, seller, rows)`` makes the answer. The token is checked in the very
        snapshot that reads, in the same round trip. Elsewhere ``work`` as :meth:`run`
        does."""
        pg: AsyncPostgres | None = self.request.app.state.hot_pg
        if pg is None:
            return await self.run(work)
        rt: Runtime = self.request.app.state.runtime
        sql = statement(TOKEN)
        async with pg.connection() as conn:
            rows = await conn.rows(sql, {**values, **self._token_hash(rt)})
            if not rows:
                raise InvalidToken(_UNUSABLE)
            row = rows[0]
            _check_live(row)
            seller = Seller(row.app_id, frozenset(row.apps) | {row.app_id})
            await self._acounted(conn, rt, seller, row.grant_id, row.scope, row.intent_sharing)
            return await fast(conn, rt, seller, rows)

    async def write(
        self,
        work: Callable[[Session, Runtime, Seller], T],
        fast: Callable[[Conn, Runtime, Seller], Awaitable[T | None]],
    ) -> T:
        """A write: on PostgreSQL the token checked and the request counted in the event
        loop, each its own statement (so a write that fails later still counts), then
        ``fast(conn, rt, seller)``, which makes the change in a transaction of its own, or
        returns None, having changed nothing, for a case it leaves to ``work``: that then runs
        on a worker thread as :meth:`run` runs it, without counting the request again.
        Elsewhere ``work`` as :meth:`run` does."""
        pg: AsyncPostgres | None = self.request.app.state.hot_pg
        if pg is None:
            return await self.run(work)
        async with pg.connection() as conn:
            rt, seller, usage = await self._acount(conn)
            done = await fast(conn, rt, seller)
        if done is not None:
            return done
        return await run_in_threadpool(self._serve, work, usage)

    async def _acount(self, conn: Conn) -> tuple[Runtime, Seller, Usage]:
        """The checks of :meth:`_serve` on an async connection, each statement its own
        transaction: the token, the count (429 past the limit), the scope and agreement."""
        rt: Runtime = self.request.app.state.runtime
        token_hash = self._token_hash(rt)
        seller, row = _seller(await conn.rows(_APP_TOKEN_SQL, token_hash))
        agreed = INTENT_SHARING in row.accepted_agreements
        return rt, seller, await self._acounted(conn, rt, seller, row.grant_id, row.scope, agreed)

    async def _acounted(
        self,
        conn: Conn,
        rt: Runtime,
        seller: Seller,
        grant_id: uuid.UUID | None,
        token_scope: str,
        agreed: bool,
    ) -> Usage:
        """The request counted against ``seller``'s limit (429 past it), then the token's
        scope and its app's agreement checked (:func:`_check_app_scope`)."""
        limiter: ratelimit.Limiter = self.request.app.state.rate_limiter
        bucket = ratelimit.bucket_for(self.request.method)
        limit = ratelimit.limit_for(rt.settings, bucket)
        usage = await limiter.ahit(seller.id, bucket, limit, conn=conn)
        self.request.state.rate_limit_headers = usage.headers()
        if usage.exceeded:
            raise rate_limited(usage, limit, bucket)
        _check_app_scope(grant_id, token_scope, agreed, self.scope)
        return usage

    async def run(self, work: Callable[[Session, Runtime, Seller], T]) -> T:
        """``work(db, rt, seller)`` after the checks; a write's transaction commits when it
        returns."""
        return await run_in_threadpool(self._serve, work)

    def _serve(
        self, work: Callable[[Session, Runtime, Seller], T], usage: Usage | None = None
    ) -> T:
        """:meth:`run`'s work; ``usage`` when the request was counted already."""
        state = self.request.app.state
        rt: Runtime = state.runtime
        limiter: ratelimit.Limiter = state.rate_limiter
        bucket = ratelimit.bucket_for(self.request.method)
        limit = ratelimit.limit_for(rt.settings, bucket)
        writes = bucket != ratelimit.READ
        counted: uuid.UUID | None = None  # the app, once this counted it in its transaction
        try:
            with (transaction if writes else autocommit)(rt.sessions) as conn:
                seller, row = self._check(rt, conn)
                if usage is None:
                    usage = limiter.hit(seller.id, bucket, limit, conn=conn)
                    self.request.state.rate_limit_headers = usage.headers()
                    if usage.exceeded:
                        raise rate_limited(usage, limit, bucket)
                    counted = seller.id
                agreed = INTENT_SHARING in row.accepted_agreements
                _check_app_scope(row.grant_id, row.scope, agreed, self.scope)
                with rt.sessions(bind=conn) as db:
                    done = work(db, rt, seller)
                    # Ends the session's part only: the connection's transaction (a write's)
                    # commits when the block above ends.
                    db.commit()
                    return done
        except Exception:
            if writes and counted is not None and isinstance(limiter, ratelimit.DatabaseLimiter):
                with transaction(rt.sessions) as conn:  # the rolled-back count, again
                    limiter.hit(counted, bucket, limit, conn=conn)
            raise

    def _check(self, rt: Runtime, conn: Connection) -> tuple[Seller, Any]:
        """The app behind a live token, or 401 ``invalid_token``."""
        return _seller(conn.execute(_APP_TOKEN, self._token_hash(rt)).all())

    def _token_hash(self, rt: Runtime) -> dict[str, bytes]:
        if not self.token or len(self.token) > 200:
            raise InvalidToken(_UNUSABLE)
        return {"token_hash": hash_token(rt.secrets.token_hash_key, self.token)}

    def json(
        self,
        body: BaseModel | bytes,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """The answer: ``body`` serialised once (or already), with the rate-limit headers."""
        counted: dict[str, str] = getattr(self.request.state, "rate_limit_headers", None) or {}
        return Response(
            body if isinstance(body, bytes) else body.model_dump_json(),
            status_code=status_code,
            media_type="application/json",
            headers={**counted, **(headers or {})},
        )


def _seller(rows: Sequence[Any]) -> tuple[Seller, Any]:
    """The app of a live token (rows of :data:`_APP_TOKEN`) and its first row, or 401
    ``invalid_token``."""
    if not rows:
        raise InvalidToken(_UNUSABLE)
    row = rows[0]
    _check_live(row)
    apps = frozenset(r.sibling_id for r in rows if r.sibling_id is not None)
    return Seller(row.app_id, apps | {row.app_id}), row


def _check_live(row: Any) -> None:
    """401 ``invalid_token`` unless the token of ``row`` is live: not revoked, not expired,
    nor is its grant, if it has one."""
    now = utcnow()
    if row.revoked_at is not None or row.access_expires_at <= now:
        raise InvalidToken(_UNUSABLE)
    if row.grant_id is not None and (
        row.grant_revoked_at is not None
        or (row.grant_expires_at is not None and row.grant_expires_at <= now)
    ):
        raise InvalidToken(_UNUSABLE)


def _check_app_scope(
    grant_id: uuid.UUID | None, token_scope: str, agreed: bool, scope: str
) -> None:
    """The app's own token (no grant) with ``scope`` among its ``token_scope``, of an app
    that accepts the intent-sharing agreement (``agreed``)."""
    if grant_id is not None or scope not in token_scope.split():
        raise InsufficientScope(
            f"This needs your app's own token with the {scope} scope: use the client "
            f"credentials grant with scope={scope}.",
            scope=scope,
        )
    if not agreed:
        raise AgreementRequired(
            "Intents are shared only with apps that accept the intent-sharing agreement "
            "(/terms/intent-sharing). Add it to your app in the developer console."
        )


def app_token(scope: str) -> Callable[[Request], Awaitable[AppCall]]:
    """A dependency: an :class:`AppCall` for the app's own token carrying ``scope``, for an
    app that accepts the intent-sharing agreement (the terms intents are published under).
    Nothing is looked up until the endpoint runs the call."""

    async def check(request: Request) -> AppCall:
        return AppCall(request, await request_bearer(request), scope)

    return check


IntentsReader = Annotated[AppCall, Depends(app_token("intents:read"))]
OffersWriter = Annotated[AppCall, Depends(app_token("offers:write"))]
