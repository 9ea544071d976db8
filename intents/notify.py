"""Webhooks to vendors about their offers, queued in the outbox in the change's transaction.

Payloads name the individual only by the intent pseudonym the app already knows (``owner``,
as in the API), never with personal data; ``offer.accepted`` adds the grant id when the
individual shared fields. The payloads are the models of :mod:`intents.events`.
"""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.outbox import enqueue
from intents import money
from intents.events import (
    IntentWithdrawnData,
    OfferAcceptedData,
    OfferDeclinedData,
    OfferLapsedData,
)
from intents.models import Intent, Offer
from intents.pseudonyms import owner_pseudonym
from vault.runtime import Runtime


class _OfferFacts(TypedDict):
    """The keyword arguments of :class:`~intents.events.OfferFields`."""

    offer_id: str
    intent_id: str
    owner: str
    offer_status: str
    price: str
    currency: str


def _about(rt: Runtime, app: VendorApp, intent: Intent, offer: Offer) -> _OfferFacts:
    return _OfferFacts(
        offer_id=str(offer.id),
        intent_id=str(intent.id),
        owner=owner_pseudonym(rt, app.id, intent.owner_id),
        offer_status=offer.status,
        price=money.format_amount(offer.price_minor, offer.currency),
        currency=offer.currency,
    )


def offer_accepted(
    db: Session,
    rt: Runtime,
    app: VendorApp,
    intent: Intent,
    offer: Offer,
    *,
    grant_id: str | None,
    shared_fields: list[str],
) -> None:
    about = _about(rt, app, intent, offer)
    enqueue(db, app, OfferAcceptedData(**about, grant_id=grant_id, shared_fields=shared_fields))


def offer_declined(db: Session, rt: Runtime, app: VendorApp, intent: Intent, offer: Offer) -> None:
    enqueue(db, app, OfferDeclinedData(**_about(rt, app, intent, offer)))


def offer_lapsed(
    db: Session, rt: Runtime, app: VendorApp, intent: Intent, offer: Offer, reason: str
) -> None:
    enqueue(db, app, OfferLapsedData(**_about(rt, app, intent, offer), reason=reason))


def intent_withdrawn(
    db: Session, rt: Runtime, app: VendorApp, intent: Intent, offer: Offer
) -> None:
    enqueue(db, app, IntentWithdrawnData(**_about(rt, app, intent, offer)))
