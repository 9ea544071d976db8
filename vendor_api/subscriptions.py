"""The vendor API for subscriptions (``/vendor/v1/subscriptions``): saved listing filters; the
intents they match are pushed to the app's webhook as ``intent.published`` (and
``intent.changed``, ``intent.withdrawn``, ``intent.closed`` for those it was told of).

The same filters as ``GET /vendor/v1/intents`` (``published_since`` aside), checked by the same
code; the same auth: the app's own token with ``intents:read`` and the intent-sharing
agreement.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from intents import money
from intents.errors import SubscriptionLimit
from intents.market import IntentFilters, Seller
from intents.models import IntentSubscription
from intents.subscriptions import MAX_PER_APP, Subscriptions
from vault.errors import InvalidInput, NotFound
from vault.errors import error_responses as _responses
from vault.routing import APIRouter
from vault.runtime import Runtime
from vendor_api.dependencies import IntentsReader
from vendor_api.errors import AgreementRequired, InsufficientScope, InvalidToken, RateLimited
from vendor_api.intents import _filters

router = APIRouter(prefix="/vendor/v1", tags=["subscriptions"])

_AUTH = (InvalidToken, InsufficientScope, AgreementRequired, RateLimited)
Short = Annotated[StrictStr | None, Field(default=None, max_length=100)]
Amount = Annotated[StrictStr | StrictInt | None, Field(default=None)]


class SubscriptionIn(BaseModel):
    """The filters of a subscription, as the listing's query parameters: every one optional,
    all given ones must match. An empty body subscribes to every intent your app may see."""

    model_config = ConfigDict(extra="forbid")

    category: Short = Field(
        default=None,
        description="A category id; a top-level one includes its subtree.",
        examples=["food"],
    )
    country: Short = Field(default=None, description="ISO 3166-1 alpha-2.", examples=["NL"])
    city: Short = None
    online: StrictBool | None = Field(
        default=None, description="true: only intents open to delivery; false: only not."
    )
    currency: Short = Field(default=None, description="ISO 4217.", examples=["EUR"])
    budget_min: Amount = Field(
        default=None, description="Lowest max budget (needs currency).", examples=["20"]
    )
    budget_max: Amount = Field(
        default=None, description="Highest max budget (needs currency).", examples=["200"]
    )
    needed_before: Short = Field(
        default=None, description="Needed by this date (YYYY-MM-DD) or earlier."
    )


class SubscriptionOut(BaseModel):
    id: str
    category: str | None
    country: str | None
    city: str | None
    online: bool | None
    currency: str | None
    budget_min: str | None = Field(description="Decimal string, or null.")
    budget_max: str | None = Field(description="Decimal string, or null.")
    needed_before: date | None
    webhook_url: str | None = Field(
        description="Where the events go: your app's webhook URL, set in the developer console. "
        "null: your app has none, and nothing is sent until it does."
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionList(BaseModel):
    data: list[SubscriptionOut]
    limit: int = Field(description="How many subscriptions an app may keep.")


def webhook_url_of(db: Session, seller: Seller) -> str | None:
    """The app's webhook URL, where its subscriptions' events go (None: nothing is sent)."""
    app = db.get(VendorApp, seller.id)
    return app.webhook_url if app is not None else None


def subscription_out(sub: IntentSubscription, webhook_url: str | None) -> SubscriptionOut:
    currency = sub.currency_key or None
    return SubscriptionOut(
        id=str(sub.id),
        category=sub.category_key or None,
        country=sub.country_key or None,
        city=sub.city,
        online=sub.online,
        currency=currency,
        budget_min=money.format_amount(sub.budget_min, currency)
        if sub.budget_min is not None and currency
        else None,
        budget_max=money.format_amount(sub.budget_max, currency)
        if sub.budget_max is not None and currency
        else None,
        needed_before=sub.needed_before,
        webhook_url=webhook_url,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


def parse_subscription(body: SubscriptionIn) -> IntentFilters:
    """The filters of a subscription, checked as the listing checks its query."""

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    filters = _filters(
        body.category,
        body.country,
        body.city,
        None if body.online is None else ("true" if body.online else "false"),
        body.currency,
        text(body.budget_min),
        text(body.budget_max),
        body.needed_before,
        None,
    )
    return filters


def _id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("Your app has no subscription with this id.") from None


@router.get("/subscriptions", response_model=SubscriptionList, responses=_responses(*_AUTH))
async def list_subscriptions(call: IntentsReader) -> Response:
    """Your app's subscriptions, oldest first."""

    def read(db: Session, rt: Runtime, seller: Seller) -> SubscriptionList:
        subs, url = Subscriptions(db, seller).all(), webhook_url_of(db, seller)
        return SubscriptionList(data=[subscription_out(s, url) for s in subs], limit=MAX_PER_APP)

    return call.json(await call.run(read))


@router.post(
    "/subscriptions",
    response_model=SubscriptionOut,
    status_code=201,
    responses=_responses(InvalidInput, SubscriptionLimit, *_AUTH),
)
async def create_subscription(body: SubscriptionIn, call: IntentsReader) -> Response:
    """Save filters: every intent published from now on that matches them (and that your app
    may see) is sent to your webhook URL as `intent.published`, once per app however many of
    your subscriptions match. 409 `subscription_limit` past the limit per app. The answer's
    `webhook_url` is where they go: null means your app has none yet (set it in the developer
    console), and nothing is sent until it does."""
    filters = parse_subscription(body)

    def create(db: Session, rt: Runtime, seller: Seller) -> SubscriptionOut:
        sub = Subscriptions(db, seller).create(filters)
        return subscription_out(sub, webhook_url_of(db, seller))

    out = await call.run(create)
    return call.json(out, 201, {"Location": f"/vendor/v1/subscriptions/{out.id}"})


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionOut,
    responses=_responses(NotFound, *_AUTH),
)
async def read_subscription(subscription_id: str, call: IntentsReader) -> Response:
    """One of your app's subscriptions; another app's is 404."""

    def read(db: Session, rt: Runtime, seller: Seller) -> SubscriptionOut:
        sub = Subscriptions(db, seller).get(_id(subscription_id))
        return subscription_out(sub, webhook_url_of(db, seller))

    return call.json(await call.run(read))


@router.put(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionOut,
    responses=_responses(InvalidInput, NotFound, *_AUTH),
)
async def replace_subscription(
    subscription_id: str, body: SubscriptionIn, call: IntentsReader
) -> Response:
    """Replace a subscription's filters (a filter left out no longer applies)."""
    filters = parse_subscription(body)

    def replace(db: Session, rt: Runtime, seller: Seller) -> SubscriptionOut:
        sub = Subscriptions(db, seller).replace(_id(subscription_id), filters)
        return subscription_out(sub, webhook_url_of(db, seller))

    return call.json(await call.run(replace))


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=_responses(NotFound, *_AUTH),
)
async def delete_subscription(subscription_id: str, call: IntentsReader) -> Response:
    """Delete a subscription. Intents you were told of still send their withdrawal or
    closing."""

    def delete(db: Session, rt: Runtime, seller: Seller) -> None:
        Subscriptions(db, seller).delete(_id(subscription_id))

    await call.run(delete)
    return Response(status_code=204, headers=call.request.state.rate_limit_headers)
