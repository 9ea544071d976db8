"""The webhooks about offers (``offer.*`` and ``intent.withdrawn``, sent by
:mod:`intents.notify`).

They name the individual only by the intent pseudonym the app already knows (``owner``, as in
the API), never with personal data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from consent.webhooks.events import WebhookEvent


class OfferFields(BaseModel):
    """What every offer event says about the offer (not an event itself)."""

    offer_id: str
    intent_id: str
    owner: str = Field(
        description="The intent owner's pseudonym for your app (`anon-...`): the `owner` of "
        "the intent and the offer. It is not the OpenID Connect `sub`."
    )
    offer_status: str = Field(
        description="The offer's status after the event: `accepted`, `declined` or `lapsed`."
    )
    price: str = Field(description="Decimal string.", examples=["849.00"])
    currency: str = Field(examples=["EUR"])


class OfferAcceptedData(OfferFields, WebhookEvent):
    """The offer the individual accepted, and what they shared with it."""

    event_type = "offer.accepted"
    summary = "The individual accepted your offer"
    description = (
        "The intent is closed and the other offers on it lapsed. When the individual shared "
        "fields, `grant_id` names the grant (announced by `consent.granted`, or "
        "`consent.changed` when it added fields to a grant you had) and you exchange the offer "
        "for its tokens once, with the accepted-offer grant."
    )

    grant_id: str | None = Field(
        description="The grant for the fields the individual shared with you, or null when "
        "they shared none. Exchange the offer for its tokens with the accepted-offer grant."
    )
    shared_fields: list[str] = Field(
        description="The profile scopes shared with this acceptance, e.g. `profile:email`."
    )


class OfferDeclinedData(OfferFields, WebhookEvent):
    """The offer the individual declined."""

    event_type = "offer.declined"
    summary = "The individual declined your offer"
    description = "The intent takes no new offer from your app (409 `offer_declined`)."


class OfferLapsedData(OfferFields, WebhookEvent):
    """The live offer that lapsed, and why."""

    event_type = "offer.lapsed"
    summary = "Your live offer ended undecided"
    description = (
        "Another offer was accepted, the intent expired, or the individual changed what the "
        "intent asks for (you may offer again on the changed intent)."
    )

    reason: Literal["another_offer_accepted", "intent_expired", "intent_changed"] = Field(
        description="`intent_changed`: the individual changed the intent's terms (anything but "
        "its closing date)."
    )


class IntentWithdrawnData(OfferFields, WebhookEvent):
    """The live offer that lapsed with the intent."""

    event_type = "intent.withdrawn"
    summary = "An intent you made a live offer on was withdrawn"
    description = (
        "The individual withdrew the intent (or erased their account); your offer lapsed "
        "(`offer_status` `lapsed`). Sent once per live offer."
    )
