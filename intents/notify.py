"""Webhooks to vendors about their offers, queued in the outbox in the change's transaction.

Payloads name the individual only by the intent pseudonym the app already knows (``owner``,
as in the API), never with
personal data; ``offer.accepted`` adds the grant id when the individual shared fields.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.outbox import enqueue
from intents import money
from intents.models import Intent, Offer
from intents.pseudonyms import owner_pseudonym
from vault.runtime import Runtime


def offer_event(
    db: Session,
    rt: Runtime,
    app: VendorApp,
    intent: Intent,
    offer: Offer,
    event_type: str,
    **extra: Any,
) -> None:
    enqueue(
        db,
        app,
        event_type,
        {
            "offer_id": str(offer.id),
            "intent_id": str(intent.id),
            "owner": owner_pseudonym(rt, app.id, intent.owner_id),
            "offer_status": offer.status,
            "price": money.format_amount(offer.price_minor, offer.currency),
            "currency": offer.currency,
            **extra,
        },
    )
