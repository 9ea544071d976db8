"""The versioned REST API for vendors."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from consent import scopes
from consent.grants.access import read_profile_for, readable_fields
from consent.grants.models import Grant
from consent.grants.receipts import receipt_for
from consent.grants.service import pairwise_subject
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import NotFound, error_responses
from vendor_api.dependencies import IndividualTokenDep, TokenDep
from vendor_api.errors import InsufficientScope, InvalidToken, RateLimited
from vendor_api.schemas import ReceiptOut, VendorProfileOut

router = APIRouter(prefix="/vendor/v1", tags=["vendor"])


@router.get(
    "/profile",
    response_model=VendorProfileOut,
    responses=error_responses(InvalidToken, InsufficientScope, RateLimited),
)
def read_profile(ctx: IndividualTokenDep, db: DbDep, rt: RuntimeDep) -> VendorProfileOut:
    """The individual's fields this token may read now, and nothing else.

    Only fields the individual still grants *and* the token's scope names (`profile:<key>`) are
    returned; fields granted but not filled in are absent. Every read is logged where the
    individual can see it. A revoked or expired permission makes the token invalid (401).
    """
    assert ctx.grant is not None  # individual_token guarantees it
    if not scopes.fields_in(ctx.token.scope):
        raise InsufficientScope(
            "This token names no profile fields. Ask for profile:<key> scopes.",
            scope=" ".join(scopes.profile_scopes()),
        )
    granted = readable_fields(ctx)
    values = read_profile_for(db, rt, ctx)
    return VendorProfileOut(
        sub=pairwise_subject(rt, ctx.app.id, ctx.grant.individual_id),
        fields=values,
        granted_fields=granted,
        expires_at=ctx.grant.expires_at,
    )


@router.get(
    "/receipts/{grant_id}",
    response_model=ReceiptOut,
    responses=error_responses(InvalidToken, NotFound, RateLimited),
)
def read_receipt(grant_id: str, ctx: TokenDep, db: DbDep, rt: RuntimeDep) -> ReceiptOut:
    """The signed consent receipt of a grant to your app, for its latest event.

    A compact JWS (`alg` `EdDSA`, `kid` the ledger key's id) with the ISO/IEC TS 27560 consent
    record fields, the ledger index, a signed checkpoint covering it and the inclusion proof;
    verify it offline with the vault's ledger public key. Any live token of your app works
    (also a client-credentials token, so receipts of revoked grants stay fetchable). A grant
    to another app is 404.
    """

    try:
        gid = uuid.UUID(grant_id)
    except ValueError:
        raise NotFound("There is no such grant.") from None
    grant = db.get(Grant, gid)
    if grant is None or grant.app_id != ctx.app.id:
        raise NotFound("There is no such grant.")
    return ReceiptOut(receipt=receipt_for(db, rt, grant.id)["receipt"])
