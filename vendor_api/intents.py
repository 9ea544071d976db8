"""The vendor API for intents and offers (``/vendor/v1/intents``, ``/vendor/v1/offers``).

Authenticated with the app's own token (client credentials): ``intents:read`` to list and read
open intents, ``offers:write`` to make, list, change and withdraw offers. Only apps that accept
the intent-sharing agreement see intents.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request, Response
from pydantic import BaseModel, Field
from pydantic_core import to_json
from sqlalchemy.orm import Session

from consent import scopes
from intents import money, taxonomy
from intents.errors import (
    CurrencyMismatch,
    IntentClosed,
    InvalidIntent,
    OfferDeclined,
    OfferNotLive,
)
from intents.market import (
    IntentFilters,
    Market,
    Seller,
    VendorIntent,
    listed_async,
    listing_sql,
    listing_values,
    make_offer_async,
)
from intents.models import Offer
from intents.rules import parse_city, parse_date, parse_datetime
from intents.service import offer_status
from intents.shown import intent_fields
from vault.errors import InvalidInput, NotFound
from vault.errors import error_responses as _responses
from vault.pgasync import SQL, Conn
from vault.profile.catalogue import countries
from vault.routing import APIRouter, query_parameters, read_query
from vault.runtime import Runtime
from vendor_api.dependencies import IntentsReader, OffersWriter
from vendor_api.errors import AgreementRequired, InsufficientScope, InvalidToken, RateLimited
from vendor_api.schemas import (
    CategoryTreeOut,
    IntentOut,
    IntentPage,
    OfferCreate,
    OfferOut,
    OfferPage,
    OfferUpdate,
)

router = APIRouter(prefix="/vendor/v1", tags=["intents and offers"])

_AUTH = (InvalidToken, InsufficientScope, AgreementRequired, RateLimited)
Text = Annotated[str | None, Field(max_length=100)]


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"There is no {what} with this id.") from None


def offer_fields(offer: Offer | Any, owner: str) -> dict[str, Any]:
    """An offer (its ORM object, or a row of its columns) as the API shows it: the fields of
    :class:`OfferOut`, in its order."""
    return {
        "id": str(offer.id),
        "intent_id": str(offer.intent_id),
        "owner": owner,
        "status": offer_status(offer),
        "price": money.format_amount(offer.price_minor, offer.currency),
        "currency": offer.currency,
        "message": offer.message,
        "valid_until": offer.valid_until,
        "created_at": offer.created_at,
        "updated_at": offer.updated_at,
        "decided_at": offer.decided_at,
        "lapse_reason": offer.lapse_reason,
        "grant_id": str(offer.grant_id) if offer.grant_id else None,
        "shared_fields": [scopes.PROFILE_PREFIX + f for f in offer.shared_fields or []],
        "tokens_claimed": offer.tokens_claimed_at is not None,
    }


def offer_out(offer: Offer | Any, owner: str) -> OfferOut:
    return OfferOut(**offer_fields(offer, owner))


def view_fields(view: VendorIntent) -> dict[str, Any]:
    """An intent as a vendor sees it: the fields of :class:`IntentOut`, in its order."""
    own = view.own_offer
    return {
        **intent_fields(view.intent, view.pseudonym, view.title, view.description),
        "your_offer": offer_fields(own, view.pseudonym) if own else None,
    }


def intent_out(view: VendorIntent) -> IntentOut:
    return IntentOut(**view_fields(view))


def _online(raw: str | None) -> bool | None:
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise InvalidInput("online is true or false.", field="online")


def _filters(
    category: str | None,
    country: str | None,
    city: str | None,
    online: str | None,
    currency: str | None,
    budget_min: str | None,
    budget_max: str | None,
    needed_before: str | None,
    published_since: str | None,
) -> IntentFilters:
    """Query parameters as filters; each bad one is named in one 400."""
    errors: dict[str, str] = {}

    def attempt(name: str, parse):  # type: ignore[no-untyped-def]
        try:
            return parse()
        except InvalidInput as exc:
            errors[exc.field or name] = exc.message
            return None

    cat = attempt("category", lambda: taxonomy.get(category)) if category else None
    code = attempt("currency", lambda: money.parse_currency(currency)) if currency else None
    bounds: dict[str, int | None] = {"budget_min": None, "budget_max": None}
    for name, raw in (("budget_min", budget_min), ("budget_max", budget_max)):
        if raw is None or raw == "":
            continue
        if code is None and "currency" not in errors:
            errors[name] = "Budget filters need a currency: add currency=EUR (or another)."
            continue
        if code is not None:
            bounds[name] = attempt(
                name,
                lambda raw=raw, name=name: money.parse_amount(
                    raw, code, field=name, label=name.replace("_", " ")
                ),
            )
    if (
        bounds["budget_min"] is not None
        and bounds["budget_max"] is not None
        and bounds["budget_min"] > bounds["budget_max"]
    ):
        errors["budget_min"] = "budget_min is larger than budget_max."
    country_code = None
    if country:
        if country.upper() not in countries():
            errors["country"] = "country is an ISO 3166-1 alpha-2 code such as NL."
        else:
            country_code = country.upper()
    place = attempt("city", lambda: parse_city(city))
    flag = attempt("online", lambda: _online(online))
    before = (
        attempt(
            "needed_before",
            lambda: parse_date(needed_before, field="needed_before", label="needed_before"),
        )
        if needed_before
        else None
    )
    since: datetime | None = (
        attempt(
            "published_since",
            lambda: parse_datetime(
                published_since, field="published_since", label="published_since"
            ),
        )
        if published_since
        else None
    )
    if errors:
        raise InvalidIntent(errors)
    return IntentFilters(
        category=cat,
        country=country_code,
        city=place,
        online=flag,
        currency=code,
        budget_min=bounds["budget_min"],
        budget_max=bounds["budget_max"],
        needed_before=before,
        published_since=since,
    )


@router.get("/categories", response_model=list[CategoryTreeOut])
def categories() -> list[dict[str, object]]:
    """The category taxonomy. Filtering by a top-level category includes its subcategories."""
    return taxonomy.as_tree()


class IntentQuery(BaseModel):
    """The listing's query parameters (read by :func:`vault.routing.read_query`)."""

    category: Text = Field(None, description="A category id; a top-level one includes its subtree.")
    country: Text = Field(None, description="ISO 3166-1 alpha-2.")
    city: Text = None
    online: Text = Field(None, description="true: only intents open to delivery.")
    currency: Text = Field(None, description="ISO 4217.")
    budget_min: Text = Field(None, description="Lowest max budget (needs currency).")
    budget_max: Text = Field(None, description="Highest max budget (needs currency).")
    needed_before: Text = Field(None, description="Needed by this date or earlier.")
    published_since: Text = Field(None, description="ISO 8601 date-time with zone.")
    cursor: Annotated[str | None, Field(max_length=200)] = None
    limit: int | None = Field(None, description="Page size, 1 to 100 (default 20).")


@router.get(
    "/intents",
    response_model=IntentPage,
    responses=_responses(InvalidInput, *_AUTH),
    openapi_extra=query_parameters(IntentQuery),
)
async def list_intents(request: Request, call: IntentsReader) -> Response:
    """Open intents your app may see, newest published first, in pages.

    Never drafts, withdrawn, closed or expired intents, intents of individuals who blocked
    your app, or of erased individuals. The order is stable: follow `next_cursor` until it
    is null.
    """
    query = read_query(request, IntentQuery)
    cursor, limit = query.cursor, query.limit
    filters = _filters(
        query.category,
        query.country,
        query.city,
        query.online,
        query.currency,
        query.budget_min,
        query.budget_max,
        query.needed_before,
        query.published_since,
    )

    def page(db: Session, rt: Runtime, seller: Seller) -> bytes:
        market = Market(db, rt, seller)
        return _intent_page(*market.list_intents(filters, cursor=cursor, limit=limit))

    names, values, size = listing_values(filters, cursor, limit)

    def statement(token: Any) -> SQL:
        return listing_sql(token, names, bool(cursor), size + 1)

    async def fast_page(conn: Conn, rt: Runtime, seller: Seller, rows: Sequence[Any]) -> bytes:
        return _intent_page(*await listed_async(conn, rt, seller, rows, size))

    return call.json(await call.read(page, statement, values, fast_page))


def _intent_page(views: list[VendorIntent], next_cursor: str | None) -> bytes:
    """A page as the JSON of :class:`IntentPage`, serialised from plain values: 28 µs for 20
    intents, against 75 µs to build, validate and serialise the models (values that came from
    the database, checked when they went in). The tests check it against the model."""
    return to_json({"data": [view_fields(v) for v in views], "next_cursor": next_cursor})


@router.get(
    "/intents/{intent_id}", response_model=IntentOut, responses=_responses(NotFound, *_AUTH)
)
async def read_intent(intent_id: str, call: IntentsReader) -> Response:
    """One open intent; 404 for anything your app may not see (never saying why)."""

    def read(db: Session, rt: Runtime, seller: Seller) -> IntentOut:
        return intent_out(Market(db, rt, seller).intent(_uuid(intent_id, "open intent")))

    return call.json(await call.run(read))


@router.post(
    "/intents/{intent_id}/offers",
    response_model=OfferOut,
    status_code=201,
    responses={
        200: {"description": "Your earlier offer on this intent was replaced.", "model": OfferOut},
        **_responses(
            InvalidInput,
            CurrencyMismatch,
            NotFound,
            IntentClosed,
            OfferDeclined,
            OfferNotLive,
            *_AUTH,
        ),
    },
)
async def make_offer(intent_id: str, body: OfferCreate, call: OffersWriter) -> Response:
    """Answer an open intent. One live offer per app per intent: a new one replaces it (200).

    409 `intent_closed` when the intent no longer takes offers; 409 `offer_declined` when the
    individual declined your offer on it.
    """

    def make(db: Session, rt: Runtime, seller: Seller) -> tuple[OfferOut, bool]:
        offer, created, owner = Market(db, rt, seller).make_offer(
            _uuid(intent_id, "open intent"), body.model_dump(exclude_unset=True)
        )
        return offer_out(offer, owner), created

    async def fast(conn: Conn, rt: Runtime, seller: Seller) -> tuple[OfferOut, bool] | None:
        made = await make_offer_async(
            conn, rt, seller, _uuid(intent_id, "open intent"), body.model_dump(exclude_unset=True)
        )
        if made is None:
            return None
        offer, created, owner = made
        return offer_out(offer, owner), created

    out, created = await call.write(make, fast)
    if not created:
        return call.json(out)
    return call.json(out, 201, {"Location": f"/vendor/v1/offers/{out.id}"})


@router.get("/offers", response_model=OfferPage, responses=_responses(InvalidInput, *_AUTH))
async def list_offers(
    call: OffersWriter,
    status: Annotated[
        str | None,
        Query(
            max_length=16,
            description="live, expired, withdrawn, accepted, declined or lapsed.",
        ),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int | None, Query(description="Page size, 1 to 100 (default 20).")] = None,
) -> Response:
    """Your app's offers with their status, newest first."""

    def page(db: Session, rt: Runtime, seller: Seller) -> OfferPage:
        market = Market(db, rt, seller)
        rows, next_cursor = market.offers(status=status, cursor=cursor, limit=limit)
        return OfferPage(data=[offer_out(o, owner) for o, owner in rows], next_cursor=next_cursor)

    return call.json(await call.run(page))


@router.get("/offers/{offer_id}", response_model=OfferOut, responses=_responses(NotFound, *_AUTH))
async def read_offer(offer_id: str, call: OffersWriter) -> Response:
    """One of your app's offers; another app's is 404."""

    def read(db: Session, rt: Runtime, seller: Seller) -> OfferOut:
        return offer_out(*Market(db, rt, seller).offer(_uuid(offer_id, "offer")))

    return call.json(await call.run(read))


@router.patch(
    "/offers/{offer_id}",
    response_model=OfferOut,
    responses=_responses(InvalidInput, NotFound, OfferNotLive, IntentClosed, *_AUTH),
)
async def update_offer(offer_id: str, body: OfferUpdate, call: OffersWriter) -> Response:
    """Change a live offer's price, message or validity while its intent is open."""

    def update(db: Session, rt: Runtime, seller: Seller) -> OfferOut:
        market = Market(db, rt, seller)
        offer = market.update_offer(_uuid(offer_id, "offer"), body.model_dump(exclude_unset=True))
        return offer_out(*market.offer(offer.id))

    return call.json(await call.run(update))


@router.delete(
    "/offers/{offer_id}",
    status_code=204,
    responses=_responses(NotFound, OfferNotLive, *_AUTH),
)
async def withdraw_offer(offer_id: str, call: OffersWriter) -> Response:
    """Withdraw a live offer. You may make a new one while the intent is open."""

    def withdraw(db: Session, rt: Runtime, seller: Seller) -> None:
        Market(db, rt, seller).withdraw_offer(_uuid(offer_id, "offer"))

    await call.run(withdraw)
    counted = call.request.state.rate_limit_headers
    return Response(status_code=204, headers=counted)
