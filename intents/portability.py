"""Intents' part of export, import and erasure.

Export: the person's intents (what they wrote, and what became of it), the offers vendors
sent them, and the vendors they blocked. Import: intents come across as drafts (vendors of
the new vault have not seen them; the person publishes again). Erasure: open intents are
withdrawn (vendors with live offers are told), every vendor that made an offer learns the
person erased their vault, and every intent, offer and block is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from intents import money
from intents.blocks import BlockService
from intents.errors import InvalidIntent
from intents.models import Intent, IntentBlock, Offer
from intents.pseudonyms import owner_pseudonym
from intents.rules import DEFAULT_EXPIRY_DAYS, parse_intent
from intents.service import MAX_LIVE_INTENTS, IntentService, effective_status, offer_status
from vault.accounts.models import Account
from vault.base import utcnow
from vault.errors import InvalidInput
from vault.portability.parts import (
    ErasureContext,
    ExportItem,
    ImportContext,
    Section,
    count_rows,
)
from vault.runtime import Runtime

PROVIDED_FIELDS = (
    "category",
    "title",
    "description",
    "quantity",
    "max_budget",
    "currency",
    "country",
    "city",
    "online",
    "needed_by",
    "closes_on",
)


class IntentItem(ExportItem):
    """A purchase intent: what the person wrote (the first fields) and what became of it."""

    intent_id: str
    category: str
    title: str
    description: str
    quantity: int
    max_budget: str = Field(description="Decimal string in the currency.")
    currency: str
    country: str | None
    city: str | None
    online: bool
    needed_by: date | None
    closes_on: date = Field(description="The last day the intent is open.")
    status: str = Field(description="`draft`, `open`, `closed`, `withdrawn` or `expired`.")
    created_at: datetime
    published_at: datetime | None
    closed_at: datetime | None


class OfferItem(ExportItem):
    """An offer a vendor made on one of the person's intents."""

    offer_id: str
    intent_id: str
    vendor_id: str
    vendor_name: str
    price: str
    currency: str
    message: str
    valid_until: datetime
    status: str
    received_at: datetime
    decided_at: datetime | None
    shared_fields: list[str]


class BlockItem(ExportItem):
    """A vendor the person does not let see their intents."""

    vendor_id: str
    vendor_name: str
    blocked_at: datetime


class IntentsPart:
    name = "intents"

    def prepare_export(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> None:
        """Nothing to prepare."""

    def sections(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[Section]:
        service = IntentService(db, rt)

        def intent_rows() -> Iterator[IntentItem]:
            for view in reversed(service.mine(owner_id)):
                i = view.intent
                yield IntentItem(
                    intent_id=str(i.id),
                    category=i.category,
                    title=view.title,
                    description=view.description,
                    quantity=i.quantity,
                    max_budget=money.format_amount(i.budget_minor, i.currency),
                    currency=i.currency,
                    country=i.country,
                    city=i.city,
                    online=i.online,
                    needed_by=i.needed_by,
                    closes_on=(i.expires_at - timedelta(days=1)).date(),
                    status=effective_status(i),
                    created_at=i.created_at,
                    published_at=i.published_at,
                    closed_at=i.closed_at,
                )

        def offer_rows() -> Iterator[OfferItem]:
            rows = db.execute(
                select(Offer, VendorApp.name)
                .join(Intent, Intent.id == Offer.intent_id)
                .join(VendorApp, VendorApp.id == Offer.app_id)
                .where(Intent.owner_id == owner_id)
                .order_by(Offer.created_at, Offer.id)
            )
            for offer, vendor_name in rows:
                yield OfferItem(
                    offer_id=str(offer.id),
                    intent_id=str(offer.intent_id),
                    vendor_id=str(offer.app_id),
                    vendor_name=vendor_name,
                    price=money.format_amount(offer.price_minor, offer.currency),
                    currency=offer.currency,
                    message=offer.message,
                    valid_until=offer.valid_until,
                    status=offer_status(offer),
                    received_at=offer.created_at,
                    decided_at=offer.decided_at,
                    shared_fields=list(offer.shared_fields or []),
                )

        def block_rows() -> Iterator[BlockItem]:
            for block, app in BlockService(db, rt).blocked(owner_id):
                yield BlockItem(
                    vendor_id=str(app.id), vendor_name=app.name, blocked_at=block.created_at
                )

        mine = Intent.owner_id == owner_id
        return [
            Section(
                "intents",
                "Intents",
                "What you said you want to buy, and what became of it.",
                "provided",
                IntentItem,
                intent_rows,
                count_rows(db, Intent, mine),
                csv_columns=tuple(IntentItem.model_fields),
            ),
            Section(
                "offers",
                "Offers",
                "What vendors offered on your intents.",
                "observed",
                OfferItem,
                offer_rows,
                count_rows(db, Offer, Offer.intent_id.in_(select(Intent.id).where(mine))),
                csv_columns=tuple(OfferItem.model_fields),
            ),
            Section(
                "blocked_vendors",
                "Blocked vendors",
                "Vendors you do not let see your intents.",
                "provided",
                BlockItem,
                block_rows,
                count_rows(db, IntentBlock, IntentBlock.owner_id == owner_id),
                csv_columns=("vendor_name", "vendor_id", "blocked_at"),
            ),
        ]

    def import_data(
        self,
        db: Session,
        rt: Runtime,
        owner: Account,
        sections: dict[str, list[dict[str, Any]]],
        context: ImportContext,
    ) -> None:
        """Intents, as drafts: each is validated again as if written now. A closing date or
        needed-by date that has passed is dropped (the draft closes 30 days ahead instead)."""
        service = IntentService(db, rt)
        today = utcnow().date()
        imported = 0
        items = sorted(
            (IntentItem.model_validate(raw) for raw in sections.get("intents", [])),
            key=lambda i: i.created_at,
            reverse=True,
        )
        if len(items) > MAX_LIVE_INTENTS:
            context.notes.append(
                f"{len(items) - MAX_LIVE_INTENTS} older intents were not imported: a vault "
                f"keeps at most {MAX_LIVE_INTENTS} drafts and open intents"
            )
            items = items[:MAX_LIVE_INTENTS]
        for item in reversed(items):
            values: dict[str, Any] = {
                "category": item.category,
                "title": item.title,
                "description": item.description,
                "quantity": item.quantity,
                "budget": item.max_budget,
                "currency": item.currency,
                "country": item.country or "",
                "city": item.city or "",
                "online": item.online,
                "needed_by": item.needed_by.isoformat() if item.needed_by else "",
                "expires_on": item.closes_on.isoformat(),
            }
            if item.needed_by is not None and item.needed_by < today:
                values["needed_by"] = ""
                context.notes.append(f"intent {item.title[:40]!r}: its needed-by date passed")
            if item.closes_on < today:
                values["expires_on"] = (today + timedelta(days=DEFAULT_EXPIRY_DAYS)).isoformat()
            try:
                clean = parse_intent(values, today=today)
            except InvalidIntent as exc:
                raise InvalidInput(
                    f"The export's intent {item.title[:40]!r} is not valid here: {exc.message}",
                    field="archive",
                ) from exc
            service.create(owner, clean, publish=False)
            imported += 1
        context.imported["intents"] = imported

    def erase(self, db: Session, rt: Runtime, owner_id: uuid.UUID, context: ErasureContext) -> None:
        app_ids = set(
            db.scalars(
                select(Offer.app_id)
                .join(Intent, Intent.id == Offer.intent_id)
                .where(Intent.owner_id == owner_id)
            )
        )
        for app_id in app_ids:
            context.notify.setdefault(app_id, {})["owner"] = owner_pseudonym(rt, app_id, owner_id)
        counts = IntentService(db, rt).erase_individual(owner_id)
        context.deleted.update(
            {f"intent_{k}" if k != "intents" else k: v for k, v in counts.items()}
        )

    def finish_erasure(self, db: Session, rt: Runtime, context: ErasureContext) -> None:
        """Nothing left to do (the consent part sends the webhooks)."""
