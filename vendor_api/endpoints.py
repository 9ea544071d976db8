"""The versioned REST API for vendors."""

from __future__ import annotations

from fastapi import APIRouter

from consent import scopes
from consent.access import read_profile_for, readable_fields
from consent.grants import pairwise_subject
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import error_responses
from vendor_api.dependencies import IndividualTokenDep
from vendor_api.errors import InsufficientScope, InvalidToken
from vendor_api.schemas import VendorProfileOut

router = APIRouter(prefix="/vendor/v1", tags=["vendor"])


@router.get(
    "/profile",
    response_model=VendorProfileOut,
    responses=error_responses(InvalidToken, InsufficientScope),
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
