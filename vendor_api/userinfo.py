"""OpenID Connect UserInfo: the granted fields as standard claims, under the pairwise ``sub``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from consent.grants.access import read_profile_for
from consent.grants.service import pairwise_subject
from vault.accounts.models import Account
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import error_responses
from vault.profile.catalogue import countries
from vault.routing import APIRouter, form_body
from vendor_api.dependencies import IndividualFormTokenDep, IndividualTokenDep
from vendor_api.errors import InsufficientScope, InvalidToken, RateLimited, TokenSentTwice

router = APIRouter(tags=["oauth"])

_CLAIM = {
    "given_name": "given_name",
    "family_name": "family_name",
    "email": "email",
    "phone": "phone_number",
    "birthdate": "birthdate",
    "language": "locale",
}


def to_claims(values: dict[str, Any], *, email_verified: bool = False) -> dict[str, Any]:
    """Profile values as OIDC claims (non-standard fields under ``vrm:`` names).
    ``email_verified``: the address was confirmed from a mail the vault sent to it."""
    claims: dict[str, Any] = {}
    for key, value in values.items():
        if key in _CLAIM:
            claims[_CLAIM[key]] = value
        elif key == "address":
            street = "\n".join(p for p in (value.get("street"), value.get("extra")) if p)
            claims["address"] = {
                "street_address": street,
                "locality": value.get("locality"),
                "region": value.get("region"),
                "postal_code": value.get("postal_code"),
                "country": countries().get(value.get("country", ""), value.get("country")),
            }
        else:
            claims[f"vrm:{key}"] = value
    if "email" in claims:
        claims["email_verified"] = email_verified
    return claims


_RESTRICTED = (InsufficientScope, RateLimited)
_ERRORS = error_responses(InvalidToken, *_RESTRICTED)


@router.post(
    "/oauth/userinfo",
    responses=error_responses(InvalidToken, TokenSentTwice, *_RESTRICTED),
    openapi_extra=form_body(
        {"access_token": {"type": "string", "description": "Instead of the header."}},
        [],
        optional=True,
    ),
)
def userinfo_post(ctx: IndividualFormTokenDep, db: DbDep, rt: RuntimeDep) -> dict[str, Any]:
    """The same as GET (OpenID Connect Core 5.3.1 allows both), and the access token may
    instead be the ``access_token`` field of an ``application/x-www-form-urlencoded`` body
    (RFC 6750 section 2.2), one way or the other, not both."""
    return userinfo(ctx, db, rt)


@router.get("/oauth/userinfo", responses=_ERRORS)
def userinfo(ctx: IndividualTokenDep, db: DbDep, rt: RuntimeDep) -> dict[str, Any]:
    """Claims for the granted fields; each call is a read in the individual's access log."""
    if "openid" not in ctx.scopes:
        raise InsufficientScope("UserInfo needs a token with the openid scope.", scope="openid")
    assert ctx.grant is not None
    values = read_profile_for(db, rt, ctx)
    verified = False
    if "email" in values:
        confirmed = db.scalar(
            select(Account.email_confirmed_at).where(Account.id == ctx.grant.individual_id)
        )
        verified = confirmed is not None
    claims = to_claims(values, email_verified=verified)
    return {"sub": pairwise_subject(rt, ctx.app.id, ctx.grant.individual_id), **claims}
