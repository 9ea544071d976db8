"""The versioned REST API for vendors."""

from __future__ import annotations

import uuid

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from consent.grants.models import Grant
from consent.grants.receipts import ReceiptPending, receipt_for
from consent.vendors import ratelimit
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import NotFound, error_responses
from vault.routing import APIRouter
from vault.runtime import Runtime
from vendor_api import profile
from vendor_api.dependencies import IndividualBearer, TokenDep, rate_limited
from vendor_api.errors import InsufficientScope, InvalidToken, RateLimited
from vendor_api.schemas import ReceiptOut, VendorProfileOut

router = APIRouter(prefix="/vendor/v1", tags=["vendor"])


@router.get(
    "/profile",
    response_model=VendorProfileOut,
    responses=error_responses(InvalidToken, InsufficientScope, RateLimited),
)
async def read_profile(request: Request, token: IndividualBearer) -> Response:
    """The individual's fields this token may read now, and nothing else.

    Only fields the individual still grants *and* the token's scope names (`profile:<key>`) are
    returned; fields granted but not filled in are absent. Every read is logged where the
    individual can see it. A revoked or expired permission makes the token invalid (401).
    """
    rt: Runtime = request.app.state.runtime
    limit = ratelimit.limit_for(rt.settings, ratelimit.READ)

    def counted(usage: ratelimit.Usage) -> None:
        request.state.rate_limit_headers = usage.headers()

    state = request.app.state
    try:
        if state.hot_pg is not None:  # PostgreSQL: in the event loop, no thread hand-off
            read = await profile.read_profile_async(
                rt, state.hot_pg, state.rate_limiter, state.access_recorder, token, limit, counted
            )
        else:
            read = await run_in_threadpool(
                profile.read_profile,
                rt,
                state.rate_limiter,
                state.access_recorder,
                token,
                limit,
                counted,
            )
    except profile.RateLimitedRead as exc:
        raise rate_limited(exc.usage, limit, ratelimit.READ) from None
    body = VendorProfileOut(
        sub=read.sub,
        fields=read.fields,
        granted_fields=read.granted_fields,
        expires_at=read.expires_at,
    ).model_dump_json()
    # Serialised here, once: returning a Response skips FastAPI's second pass over the model.
    return Response(body, media_type="application/json", headers=read.usage.headers())


@router.get(
    "/receipts/{grant_id}",
    response_model=ReceiptOut,
    responses=error_responses(InvalidToken, NotFound, ReceiptPending, RateLimited),
)
def read_receipt(grant_id: str, ctx: TokenDep, db: DbDep, rt: RuntimeDep) -> ReceiptOut:
    """The signed consent receipt of a grant to your app, for its latest event.

    A compact JWS (`alg` `Ed25519`, `kid` the ledger key's id; receipts issued before RFC 9864's
    name carry `EdDSA` and still verify) with the ISO/IEC TS 27560 consent record fields, the
    ledger index, a signed checkpoint covering it and the inclusion proof; verify it offline
    with the vault's ledger public key. Any live token of your app works
    (also a client-credentials token, so receipts of revoked grants stay fetchable). A grant
    to another app is 404. While the grant's latest event waits to be integrated into the
    ledger (a second or so after the change), the answer is 409 `receipt_pending` with
    `Retry-After`.
    """

    try:
        gid = uuid.UUID(grant_id)
    except ValueError:
        raise NotFound("There is no such grant.") from None
    grant = db.get(Grant, gid)
    if grant is None or grant.app_id != ctx.app.id:
        raise NotFound("There is no such grant.")
    return ReceiptOut(receipt=receipt_for(db, rt, grant.id)["receipt"])
