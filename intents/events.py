"""The webhooks about offers (``offer.*``, sent by :mod:`intents.notify`) and about intents
matching an app's subscriptions (``intent.*``, sent by :mod:`intents.broadcast`).

They name the individual only by the intent pseudonym the app already knows (``owner``, as in
the API), never with personal data.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from consent.webhooks.events import IsoDateTime, WebhookEvent


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


class IntentWithdrawnData(WebhookEvent):
    """The intent that was withdrawn, and your live offer on it if you had one."""

    event_type = "intent.withdrawn"
    summary = "An intent you made a live offer on, or were told of, was withdrawn"
    description = (
        "The individual withdrew the intent (or erased their account). Sent once to each app "
        "with a live offer on it (the offer lapsed: `offer_status` `lapsed`) and once to each "
        "app that was sent `intent.published` for it (then the offer fields are null when "
        "you had no live offer)."
    )

    offer_id: str | None = Field(description="Your live offer that lapsed, or null.")
    intent_id: str
    owner: str = Field(
        description="The intent owner's pseudonym for your app (`anon-...`): the `owner` of "
        "the intent and the offer. It is not the OpenID Connect `sub`."
    )
    offer_status: str | None = Field(description="`lapsed` when you had a live offer, else null.")
    price: str | None = Field(description="Decimal string, or null.", examples=["849.00"])
    currency: str | None = Field(examples=["EUR"])


class ListedIntent(BaseModel):
    """The intent as the listing (`GET /vendor/v1/intents`) shows it to your app, without
    `your_offer` (your offers have events of their own)."""

    id: str
    owner: str = Field(
        description="Pseudonym of the intent's owner for your app: the `owner` of the listing."
    )
    category: str = Field(examples=["food.restaurants"])
    category_label: str = Field(examples=["Food and drink > Restaurants"])
    title: str
    description: str
    quantity: int
    max_budget: str = Field(description="Decimal string.", examples=["60.00"])
    currency: str = Field(examples=["EUR"])
    country: str | None = Field(description="ISO 3166-1 alpha-2, or null.")
    city: str | None
    online: bool
    needed_by: date | None
    expires_at: datetime = Field(description="When the intent closes to offers.")
    published_at: datetime


class IntentFacts(BaseModel):
    """What ``intent.published`` and ``intent.changed`` say (not an event itself)."""

    intent: ListedIntent
    subscription_ids: list[str] = Field(
        description="Your subscriptions that this intent matches (empty for `intent.changed` "
        "sent only because you were told of it before and it no longer matches)."
    )


class IntentPublishedData(IntentFacts, WebhookEvent):
    """A newly published intent that matches one of your subscriptions."""

    event_type = "intent.published"
    summary = "An intent matching your subscriptions was published"
    description = (
        "Sent once per app (however many of its subscriptions match) when an individual "
        "publishes an intent, or changes an open one so that it now matches. Never to apps "
        "the individual blocked or that do not accept the intent-sharing agreement. Answer "
        "with `POST /vendor/v1/intents/{id}/offers`."
    )


class IntentChangedData(IntentFacts, WebhookEvent):
    """An open intent you were told of, as it is now."""

    event_type = "intent.changed"
    summary = "An open intent you were told of changed"
    description = (
        "The individual edited the intent. When its terms changed (anything but its closing "
        "time) your live offer on it lapsed (`offer.lapsed`, `intent_changed`): offer again."
    )


class IntentClosedData(WebhookEvent):
    """An intent you were told of closed."""

    event_type = "intent.closed"
    summary = "An intent you were told of closed"
    description = (
        "Sent once to each app that was sent `intent.published` for it, when it reached its "
        "closing time (`expired`) or the individual accepted an offer (`offer_accepted`). "
        "It takes no more offers."
    )

    intent_id: str
    owner: str = Field(description="The intent owner's pseudonym for your app.")
    reason: Literal["expired", "offer_accepted"]
    closed_at: IsoDateTime
