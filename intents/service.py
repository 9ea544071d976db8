"""The individual's side of intents: write, publish, withdraw, compare offers, accept, block.

Every change that a vendor must learn of (an accepted, declined or lapsed offer, a withdrawn
intent) queues its webhook in the same transaction. Accepting an offer closes the intent with
a conditional ``UPDATE ... WHERE status = 'open'``, so of two parallel acceptances exactly one
wins; sharing fields on acceptance creates an ordinary grant (ledger entry, receipt, webhook).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from consent.terms.catalogue import AGREEMENTS, Agreement
from consent.vendors.models import VendorApp
from intents import broadcast, notify, taxonomy
from intents.errors import IntentClosed
from intents.models import Intent, IntentBlock, IntentNotice, IntentStatus, Offer, OfferStatus
from intents.rules import CleanIntent
from vault.accounts.models import Account
from vault.base import utcnow
from vault.crypto import Binding
from vault.db import atomic
from vault.errors import InvalidInput, NotFound
from vault.keystore import KeyStore
from vault.runtime import Runtime

_TABLE = Intent.__tablename__
SORTS = ("price", "valid_until", "received")
MAX_LIVE_INTENTS = 100
"""Drafts and open intents one individual may keep at once."""


def binding(intent: Intent, column: str) -> Binding:
    return Binding(intent.owner_id, _TABLE, column, intent.id)


def effective_status(intent: Intent, now: datetime | None = None) -> str:
    """An open intent past its closing time is expired, even before the worker notices."""
    if intent.status == IntentStatus.OPEN and intent.expires_at <= (now or utcnow()):
        return IntentStatus.EXPIRED
    return intent.status


def offer_status(offer: Offer, now: datetime | None = None) -> str:
    """``expired`` for a live offer past its validity; otherwise the stored status."""
    if offer.status == OfferStatus.LIVE and offer.valid_until <= (now or utcnow()):
        return "expired"
    return offer.status


@dataclass
class IntentView:
    intent: Intent
    title: str
    description: str
    category: taxonomy.Category
    status: str
    live_offers: int = 0


@dataclass
class OfferView:
    offer: Offer
    app: VendorApp
    status: str
    agreements: list[Agreement] = field(default_factory=list)
    over_budget: bool = False
    decidable: bool = False
    """Whether the individual can accept or decline it now: live, on an open intent."""


def waiting_offers_query(owner_id: uuid.UUID, now: datetime) -> Select[int]:
    """How many offers wait for this individual's answer: live and valid, on open intents
    (the navigation's count; a query, to combine with others)."""
    return (
        select(func.count())
        .select_from(Offer)
        .join(Intent, Intent.id == Offer.intent_id)
        .where(
            Intent.owner_id == owner_id,
            Intent.status == IntentStatus.OPEN,
            Intent.expires_at > now,
            Offer.status == OfferStatus.LIVE,
            Offer.valid_until > now,
        )
    )


class IntentService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt
        self.keys = KeyStore(db, rt.keys)

    # -- reading ------------------------------------------------------------------------------

    def _decrypt(self, intent: Intent, column: str) -> str:
        return self.keys.decrypt(binding(intent, column), getattr(intent, column)).decode()

    def _view(self, intent: Intent, live_offers: int = 0) -> IntentView:
        return IntentView(
            intent=intent,
            title=self._decrypt(intent, "title_ct"),
            description=self._decrypt(intent, "description_ct"),
            category=taxonomy.CATEGORIES.get(intent.category)
            or taxonomy.Category(intent.category, intent.category, intent.category_root, ""),
            status=effective_status(intent),
            live_offers=live_offers,
        )

    def owned(self, owner_id: uuid.UUID, intent_id: uuid.UUID, *, lock: bool = False) -> Intent:
        query = select(Intent).where(Intent.id == intent_id, Intent.owner_id == owner_id)
        if lock:
            query = query.with_for_update()
        intent = self.db.scalars(query).one_or_none()
        if intent is None:
            raise NotFound("There is no such intent.")
        return intent

    def mine(self, owner_id: uuid.UUID) -> list[IntentView]:
        """Every intent of this individual, newest first, with its count of live offers."""
        intents = list(
            self.db.scalars(
                select(Intent)
                .where(Intent.owner_id == owner_id)
                .order_by(Intent.created_at.desc(), Intent.id)
            )
        )
        counts = dict(
            self.db.execute(
                select(Offer.intent_id, func.count())
                .join(Intent, Intent.id == Offer.intent_id)
                .where(Intent.owner_id == owner_id, Offer.status == OfferStatus.LIVE)
                .group_by(Offer.intent_id)
            ).all()
        )
        return [self._view(i, int(counts.get(i.id, 0))) for i in intents]

    def waiting_offers(self, owner_id: uuid.UUID) -> int:
        """How many offers wait for this individual's answer: live and valid, on open
        intents (the navigation's count)."""
        return int(self.db.scalar(waiting_offers_query(owner_id, utcnow())) or 0)

    def view(self, owner_id: uuid.UUID, intent_id: uuid.UUID) -> IntentView:
        return self._view(self.owned(owner_id, intent_id))

    def offers(
        self, owner_id: uuid.UUID, intent_id: uuid.UUID, sort: str = "price"
    ) -> list[OfferView]:
        """The offers on one of this individual's intents (never withdrawn ones), sorted."""
        intent = self.owned(owner_id, intent_id)
        rows = self.db.execute(
            select(Offer, VendorApp)
            .join(VendorApp, VendorApp.id == Offer.app_id)
            .where(Offer.intent_id == intent.id, Offer.status != OfferStatus.WITHDRAWN)
        ).all()
        now = utcnow()
        intent_open = effective_status(intent, now) == IntentStatus.OPEN
        views = [
            OfferView(
                offer=offer,
                app=app,
                status=offer_status(offer, now),
                decidable=intent_open and offer_status(offer, now) == OfferStatus.LIVE,
                agreements=[AGREEMENTS[a] for a in app.accepted_agreements if a in AGREEMENTS],
                over_budget=offer.currency == intent.currency
                and offer.price_minor > intent.budget_minor,
            )
            for offer, app in rows
        ]
        if sort == "valid_until":
            views.sort(key=lambda v: (v.offer.valid_until, v.offer.price_minor), reverse=True)
        elif sort == "received":
            views.sort(key=lambda v: v.offer.created_at, reverse=True)
        else:
            views.sort(key=lambda v: (v.offer.price_minor, v.offer.created_at))
        # Offers still open to a decision first, whatever the sort.
        views.sort(key=lambda v: v.status != OfferStatus.LIVE)
        return views

    # -- writing ------------------------------------------------------------------------------

    def _fill(self, intent: Intent, clean: CleanIntent) -> None:
        intent.category = clean.category.id
        intent.category_root = clean.category.root
        intent.title_ct = self.keys.encrypt(binding(intent, "title_ct"), clean.title.encode())
        intent.description_ct = self.keys.encrypt(
            binding(intent, "description_ct"), clean.description.encode()
        )
        intent.quantity = clean.quantity
        intent.budget_minor = clean.budget_minor
        intent.currency = clean.currency
        intent.country = clean.country
        intent.city = clean.city
        intent.online = clean.online
        intent.needed_by = clean.needed_by
        intent.expires_at = clean.expires_at

    @atomic
    def create(self, owner: Account, clean: CleanIntent, *, publish: bool = False) -> Intent:
        live = self.db.scalar(
            select(func.count())
            .select_from(Intent)
            .where(
                Intent.owner_id == owner.id,
                Intent.status.in_((IntentStatus.DRAFT, IntentStatus.OPEN)),
            )
        )
        if (live or 0) >= MAX_LIVE_INTENTS:
            raise InvalidInput(
                f"You can keep at most {MAX_LIVE_INTENTS} intents that are drafts or open; "
                "withdraw or delete some first.",
                field="form",
            )
        intent = Intent(id=uuid.uuid4(), owner_id=owner.id, status=IntentStatus.DRAFT)
        self._fill(intent, clean)
        if publish:
            intent.status = IntentStatus.OPEN
            intent.published_at = utcnow()
        self.db.add(intent)
        self.db.flush()
        if publish:
            broadcast.announce(self.db, self.rt, intent, changed=False)
        return intent

    @atomic
    def update(self, owner: Account, intent_id: uuid.UUID, clean: CleanIntent) -> int:
        """Edit a draft or an open intent. Returns how many live offers lapsed.

        Offers answer the intent as it was: when an open intent's terms change (anything but
        its closing date), its live offers lapse (``intent_changed``) and their vendors are
        told, so nobody accepts an offer made for other terms. They may offer again.
        """
        intent = self.owned(owner.id, intent_id, lock=True)
        if effective_status(intent) not in (IntentStatus.DRAFT, IntentStatus.OPEN):
            raise IntentClosed("This intent is closed; it can no longer be changed.")
        before = (self._terms(intent), intent.expires_at)
        self._fill(intent, clean)
        self.db.flush()
        if intent.status != IntentStatus.OPEN or (self._terms(intent), intent.expires_at) == before:
            return 0
        lapsed = 0
        if self._terms(intent) != before[0]:
            lapsed = self.lapse(self.live_offers(intent.id), intent, "intent_changed")
        broadcast.announce(self.db, self.rt, intent, changed=True)
        return lapsed

    def _terms(self, intent: Intent) -> tuple[object, ...]:
        """What an offer answers: everything the individual wrote except the closing date."""
        return (
            intent.category,
            self._decrypt(intent, "title_ct"),
            self._decrypt(intent, "description_ct"),
            intent.quantity,
            intent.budget_minor,
            intent.currency,
            intent.country,
            intent.city,
            intent.online,
            intent.needed_by,
        )

    @atomic
    def publish(self, owner: Account, intent_id: uuid.UUID) -> Intent:
        intent = self.owned(owner.id, intent_id, lock=True)
        if intent.status == IntentStatus.OPEN:
            return intent
        if intent.status != IntentStatus.DRAFT:
            raise IntentClosed("Only a draft can be published.")
        if intent.expires_at <= utcnow():
            raise InvalidInput(
                "The closing date of this draft has passed; edit it and choose a new one.",
                field="expires_on",
            )
        intent.status = IntentStatus.OPEN
        intent.published_at = utcnow()
        self.db.flush()
        broadcast.announce(self.db, self.rt, intent, changed=False)
        return intent

    @atomic
    def withdraw(self, owner: Account, intent_id: uuid.UUID) -> Intent:
        """Take an open intent back (its live offers lapse, their vendors are told); a draft
        is deleted."""
        intent = self.owned(owner.id, intent_id, lock=True)
        if intent.status == IntentStatus.DRAFT:
            self.db.delete(intent)
            self.db.flush()
            return intent
        if intent.status != IntentStatus.OPEN:
            raise IntentClosed("This intent is already closed.")
        self._close(intent, IntentStatus.WITHDRAWN, reason="intent_withdrawn")
        return intent

    def _close(self, intent: Intent, status: str, *, reason: str) -> None:
        """Close an open intent and lapse its live offers, telling each vendor once."""
        intent.status = status
        intent.closed_at = utcnow()
        self.db.flush()
        live = self.live_offers(intent.id)
        self.lapse(live, intent, reason)
        if status == IntentStatus.WITHDRAWN:
            broadcast.withdrawn(self.db, self.rt, intent, skip={app.id for _offer, app in live})

    def lapse(self, offers: list[tuple[Offer, VendorApp]], intent: Intent, reason: str) -> int:
        """Lapse these live offers and tell each vendor: ``intent.withdrawn`` when the intent
        went away for them, ``offer.lapsed`` with the reason otherwise."""
        now = utcnow()
        for offer, app in offers:
            offer.status = OfferStatus.LAPSED
            offer.lapse_reason = reason
            offer.decided_at = now
            self.db.flush()
            if reason == "intent_withdrawn":
                notify.intent_withdrawn(self.db, self.rt, app, intent, offer)
            else:
                notify.offer_lapsed(self.db, self.rt, app, intent, offer, reason)
        return len(offers)

    def live_offers(
        self, intent_id: uuid.UUID, *, except_id: uuid.UUID | None = None
    ) -> list[tuple[Offer, VendorApp]]:
        query = (
            select(Offer, VendorApp)
            .join(VendorApp, VendorApp.id == Offer.app_id)
            .where(Offer.intent_id == intent_id, Offer.status == OfferStatus.LIVE)
            .order_by(Offer.created_at, Offer.id)
        )
        if except_id is not None:
            query = query.where(Offer.id != except_id)
        return [(offer, app) for offer, app in self.db.execute(query).all()]

    # -- housekeeping -------------------------------------------------------------------------

    def expire_due(self, *, now: datetime | None = None, limit: int = 500) -> int:
        """Open intents past their closing time become expired; their offers lapse, once.

        Safe with several workers: each intent is claimed with a conditional update.
        """
        now = now or utcnow()
        due = self.db.scalars(
            select(Intent.id)
            .where(Intent.status == IntentStatus.OPEN, Intent.expires_at <= now)
            .limit(limit)
        ).all()
        done = 0
        for intent_id in due:
            claimed = self.db.execute(
                update(Intent)
                .where(Intent.id == intent_id, Intent.status == IntentStatus.OPEN)
                .values(status=IntentStatus.EXPIRED, closed_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            intent = self.db.get_one(Intent, intent_id, populate_existing=True)
            for offer, app in self.live_offers(intent.id):
                offer.status = OfferStatus.LAPSED
                offer.lapse_reason = "intent_expired"
                offer.decided_at = now
                self.db.flush()
                notify.offer_lapsed(self.db, self.rt, app, intent, offer, "intent_expired")
            broadcast.closed(self.db, self.rt, intent, "expired", at=now)
            done += 1
        return done

    def erase_individual(self, owner_id: uuid.UUID) -> dict[str, Any]:
        """Erasure's part for intents: withdraw open intents (vendors with live offers are
        told), then delete every intent, offer and block of the individual. Returns counts."""
        open_intents = self.db.scalars(
            select(Intent)
            .where(Intent.owner_id == owner_id, Intent.status == IntentStatus.OPEN)
            .with_for_update()
        ).all()
        for intent in open_intents:
            self._close(intent, IntentStatus.WITHDRAWN, reason="intent_withdrawn")
        ids = select(Intent.id).where(Intent.owner_id == owner_id)
        self.db.execute(
            delete(IntentNotice)
            .where(IntentNotice.intent_id.in_(ids))
            .execution_options(synchronize_session=False)
        )
        offers = self.db.execute(
            delete(Offer)
            .where(Offer.intent_id.in_(ids))
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        intents = self.db.execute(
            delete(Intent)
            .where(Intent.owner_id == owner_id)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        blocks = self.db.execute(
            delete(IntentBlock)
            .where(IntentBlock.owner_id == owner_id)
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        return {"intents": int(intents), "offers": int(offers), "blocks": int(blocks)}
