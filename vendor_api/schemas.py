"""Pydantic models of the vendor API."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from intents.models import OfferStatus


class VendorProfileOut(BaseModel):
    """The fields an individual currently lets this app read."""

    sub: str = Field(description="The individual's pairwise identifier for this app.")
    fields: dict[str, Any] = Field(
        description="Granted fields that are filled in, by key; granted but empty ones are absent."
    )
    granted_fields: list[str] = Field(
        description="Every field key this token may read now (the grant's fields in its scope)."
    )
    expires_at: datetime | None = Field(
        description="When the individual's permission ends; null: until they revoke it."
    )


class ReceiptOut(BaseModel):
    """A signed consent receipt."""

    receipt: str = Field(
        description="Compact JWS (alg Ed25519; receipts issued before RFC 9864's name carry EdDSA) "
        "over the receipt JSON; verify offline with the vault's ledger public key."
    )


# -- intents and offers -----------------------------------------------------------------------

Amount = StrictStr | StrictInt | StrictFloat
"""Strict: a JSON ``true`` is not the number 1."""

_ABOVE_ZERO: Final[dict[str, Any]] = {"exclusiveMinimum": 0}
"""What ``intents.money.parse_amount`` enforces of a price (a string too, once parsed)."""

OFFER_STATUSES: Final = (*(status.value for status in OfferStatus), "expired")
"""The ``status`` an offer shows a vendor (``expired``: live but past its validity)."""


class CategoryOut(BaseModel):
    id: str = Field(examples=["electronics.laptops"])
    label: str


class CategoryTreeOut(BaseModel):
    id: str = Field(examples=["electronics"])
    label: str
    children: list[CategoryOut]


class OfferOut(BaseModel):
    """One of your app's offers."""

    id: str
    intent_id: str
    owner: str = Field(description="The intent owner's pseudonym for your app.")
    status: str = Field(
        json_schema_extra={"enum": list(OFFER_STATUSES)},
        description="`live`, `expired` (live but past valid_until), `withdrawn` (by you), "
        "`accepted`, `declined` or `lapsed` (the intent closed without it).",
    )
    price: str = Field(description="Decimal string in the intent's currency.", examples=["849.00"])
    currency: str = Field(examples=["EUR"])
    message: str
    valid_until: datetime
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    lapse_reason: str | None = Field(
        description="For lapsed offers: `another_offer_accepted`, `intent_withdrawn`, "
        "`intent_expired` or `intent_changed`."
    )
    grant_id: str | None = Field(
        description="Accepted with shared fields: the grant that lets you read them."
    )
    shared_fields: list[str] = Field(
        description="Accepted: the profile scopes the individual shared with you."
    )
    tokens_claimed: bool = Field(
        description="Whether the accepted offer was already exchanged for tokens (once only)."
    )


class IntentOut(BaseModel):
    """An open purchase intent. The owner appears only as a pseudonym for your app."""

    id: str
    owner: str = Field(
        description="Pseudonym of the intent's owner: the same on every intent of that "
        "individual for your app, different for every other app. Never their identity."
    )
    category: str = Field(examples=["sports.bicycles"])
    category_label: str = Field(examples=["Sports and outdoors > Bicycles"])
    title: str
    description: str
    quantity: int
    max_budget: str = Field(description="Decimal string.", examples=["900.00"])
    currency: str = Field(examples=["EUR"])
    country: str | None = Field(description="ISO 3166-1 alpha-2, or null.")
    city: str | None
    online: bool = Field(description="Delivery or an online service is fine.")
    needed_by: date | None
    expires_at: datetime
    published_at: datetime
    your_offer: OfferOut | None = Field(description="Your app's offer on it, if any.")


class IntentPage(BaseModel):
    data: list[IntentOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class OfferPage(BaseModel):
    data: list[OfferOut]
    next_cursor: str | None


class OfferCreate(BaseModel):
    """An offer. A second offer from your app on the same intent replaces the first."""

    model_config = ConfigDict(extra="forbid")

    price: Amount = Field(
        description="Decimal string (or number), more than zero.",
        examples=["849.00"],
        json_schema_extra=_ABOVE_ZERO,
    )
    currency: str = Field(description="Must be the intent's currency.", examples=["EUR"])
    message: str | None = Field(default=None, description="Up to 2,000 characters.")
    valid_until: str | datetime = Field(
        description="ISO 8601 with a time zone, in the future, at most 180 days ahead.",
        examples=["2027-01-15T18:00:00Z"],
    )


class OfferUpdate(BaseModel):
    """Change a live offer: any of price, message and valid_until."""

    model_config = ConfigDict(extra="forbid")

    price: Amount | None = Field(
        default=None,
        description="Decimal string (or number), more than zero.",
        json_schema_extra=_ABOVE_ZERO,
    )
    message: str | None = None
    valid_until: str | datetime | None = None
