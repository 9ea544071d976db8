"""Tokens for an accepted offer: the vendor exchanges it, once, for tokens of the new grant.

When an individual accepts an offer and shares fields, the vault creates an ordinary grant and
tells the vendor (``offer.accepted`` with the grant id). No browser redirect carries a code to
the vendor, so the vendor asks the token endpoint with an extension grant (RFC 6749 section
4.5), authenticating as itself::

    POST /oauth/token
    grant_type=urn:vrm:params:oauth:grant-type:accepted-offer&offer_id=<id>

and gets an access token and a rotating refresh token for the grant's fields: the ones shared on
acceptance, plus any the individual already let this app read. The
exchange is claimed atomically (``UPDATE offers ... WHERE tokens_claimed_at IS NULL``): it
works once; afterwards the refresh token is how the vendor keeps reading.
"""

from __future__ import annotations

import uuid
from typing import Any

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnauthorizedClientError,
)
from sqlalchemy import select, update

from consent import scopes
from consent.grants.models import Grant
from consent.grants.service import is_active, pairwise_subject
from consent.oauth.objects import AUTH_METHODS, ConsentedUser
from intents.models import Offer, OfferStatus
from vault.base import utcnow

GRANT_TYPE = "urn:vrm:params:oauth:grant-type:accepted-offer"


class AcceptedOfferGrant(grants.BaseGrant, grants.TokenEndpointMixin):  # type: ignore[misc]
    GRANT_TYPE = GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if "offers:write" not in client.app.vendor_scopes:
            raise UnauthorizedClientError(
                "Only apps with the offers:write scope make offers, so only they exchange "
                "accepted offers for tokens."
            )
        self.request.client = client
        raw = self.request.payload.data.get("offer_id") or ""
        try:
            offer_id = uuid.UUID(raw) if len(raw) <= 64 else None
        except ValueError:
            offer_id = None
        if offer_id is None:
            raise InvalidRequestError("Send offer_id: the id of your accepted offer.")
        db: Any = self.server.db
        offer = db.scalars(
            select(Offer).where(Offer.id == offer_id, Offer.app_id == client.app.id)
        ).one_or_none()
        if offer is None or offer.status != OfferStatus.ACCEPTED:
            raise InvalidGrantError("Your app has no accepted offer with this id.")
        if offer.grant_id is None:
            raise InvalidGrantError(
                "The individual accepted this offer without sharing any profile fields."
            )
        grant = db.get(Grant, offer.grant_id)
        if grant is None or not is_active(grant):
            raise InvalidGrantError("The individual's permission for this offer has ended.")
        claimed = db.execute(
            update(Offer)
            .where(Offer.id == offer.id, Offer.tokens_claimed_at.is_(None))
            .values(tokens_claimed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            raise InvalidGrantError(
                "This accepted offer was already exchanged for tokens; use the refresh token."
            )
        self.request.vault_grant = grant
        self.request.user = ConsentedUser(
            grant.individual_id,
            pairwise_subject(self.server.rt, grant.app_id, grant.individual_id),
            grant,
        )

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        grant: Grant = self.request.vault_grant
        token: dict[str, Any] = self.generate_token(
            user=self.request.user,
            scope=scopes.scope_for(grant.fields, openid=False),
            include_refresh_token=True,
        )
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
