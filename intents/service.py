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

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.models import Grant
from consent.grants.service import (
    ACCEPTANCE_SCREEN,
    DEFAULT_DURATION,
    DURATIONS,
    Decision,
    GrantService,
    screen_text_hash,
)
from consent.terms.catalogue import AGREEMENTS, Agreement, agreement_for
from consent.vendors.models import VendorApp
from intents import notify, taxonomy
from intents.errors import IntentClosed, OfferChanged, OfferNotLive
from intents.models import Intent, IntentBlock, IntentStatus, Offer, OfferStatus
from intents.rules import CleanIntent
from vault.accounts.models import Account
from vault.base import utcnow
from vault.crypto import Binding
from vault.errors import InvalidInput, NotFound
from vault.keystore import KeyStore
from vault.runtime import Runtime

_TABLE = Intent.__tablename__
INTENT_AGREEMENT = "intent-sharing"
"""The standard agreement under which intents are shown to vendors."""
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


def choose_agreement(account: Account, app: VendorApp) -> Agreement:
    """The agreement a grant made on acceptance records: the individual's own if the app
    accepts it, else intent sharing (which every app that sees intents accepts)."""
    preferred = agreement_for(account)
    if preferred.id in app.accepted_agreements:
        return preferred
    if INTENT_AGREEMENT in app.accepted_agreements:
        return AGREEMENTS[INTENT_AGREEMENT]
    for agreement_id in app.accepted_agreements:
        if agreement_id in AGREEMENTS:
            return AGREEMENTS[agreement_id]
    return AGREEMENTS[INTENT_AGREEMENT]


def acceptance_text_hash(app: VendorApp, fields: list[str], agreement: Agreement) -> str:
    """SHA-256 of what the acceptance page stated (no profile value), for the ledger."""
    return screen_text_hash(ACCEPTANCE_SCREEN, app, fields, agreement.id)


def sibling_apps(db: Session, app: VendorApp) -> set[uuid.UUID]:
    """This app and every other app of the same vendor account (blocks apply to all)."""
    if app.owner_id is None:
        return {app.id}
    return set(db.scalars(select(VendorApp.id).where(VendorApp.owner_id == app.owner_id)))


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
        views = [
            OfferView(
                offer=offer,
                app=app,
                status=offer_status(offer, now),
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
        return intent

    def update(self, owner: Account, intent_id: uuid.UUID, clean: CleanIntent) -> int:
        """Edit a draft or an open intent. Returns how many live offers lapsed.

        Offers answer the intent as it was: when an open intent's terms change (anything but
        its closing date), its live offers lapse (``intent_changed``) and their vendors are
        told, so nobody accepts an offer made for other terms. They may offer again.
        """
        intent = self.owned(owner.id, intent_id, lock=True)
        if effective_status(intent) not in (IntentStatus.DRAFT, IntentStatus.OPEN):
            raise IntentClosed("This intent is closed; it can no longer be changed.")
        before = self._terms(intent)
        self._fill(intent, clean)
        self.db.flush()
        if intent.status != IntentStatus.OPEN or self._terms(intent) == before:
            return 0
        return self._lapse(self._live_offers(intent.id), intent, "intent_changed")

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
        return intent

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
        self._lapse(self._live_offers(intent.id), intent, reason)

    def _lapse(self, offers: list[tuple[Offer, VendorApp]], intent: Intent, reason: str) -> int:
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

    def _live_offers(
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

    def _owned_offer(self, intent: Intent, offer_id: uuid.UUID) -> tuple[Offer, VendorApp]:
        row = self.db.execute(
            select(Offer, VendorApp)
            .join(VendorApp, VendorApp.id == Offer.app_id)
            .where(Offer.id == offer_id, Offer.intent_id == intent.id)
        ).first()
        if row is None or row[0].status == OfferStatus.WITHDRAWN:
            raise NotFound("There is no such offer on this intent: the vendor withdrew it.")
        return row[0], row[1]

    def _decidable(self, intent: Intent, offer: Offer, revision: int | None) -> None:
        now = utcnow()
        if effective_status(intent, now) != IntentStatus.OPEN:
            raise IntentClosed("This intent is closed; its offers can no longer be answered.")
        status = offer_status(offer, now)
        if status == "expired":
            raise OfferNotLive("This offer is no longer valid: its validity has ended.")
        if status != OfferStatus.LIVE:
            raise OfferNotLive(f"This offer was already {status}.")
        if revision is not None and revision != offer.revision:
            raise OfferChanged(
                "The vendor changed this offer since you opened it: look at it again."
            )

    def _claim(self, offer: Offer, status: str, revision: int | None) -> datetime:
        """Decide a live offer atomically: ``UPDATE ... WHERE status = 'live'`` (and still at
        the revision the individual saw), so a decision never crosses the vendor's change or
        withdrawal. Returns the moment of the decision."""
        now = utcnow()
        query = update(Offer).where(
            Offer.id == offer.id, Offer.status == OfferStatus.LIVE, Offer.valid_until > now
        )
        if revision is not None:
            query = query.where(Offer.revision == revision)
        claimed = self.db.execute(
            query.values(status=status, decided_at=now, updated_at=now).execution_options(
                synchronize_session=False
            )
        )
        self.db.refresh(offer)
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            if offer.status == OfferStatus.LIVE and revision not in (None, offer.revision):
                raise OfferChanged("The vendor changed this offer a moment ago: look at it again.")
            raise OfferNotLive("The vendor withdrew or changed this offer a moment ago.")
        return now

    def accept(
        self,
        owner: Account,
        intent_id: uuid.UUID,
        offer_id: uuid.UUID,
        *,
        fields: list[str] | None = None,
        duration: str = DEFAULT_DURATION,
        revision: int | None = None,
    ) -> Offer:
        """Accept one offer: the intent closes, the other offers lapse, the vendors are told.

        ``fields`` (profile keys) are shared with the vendor: a new grant for ``duration``
        under :func:`choose_agreement`, or, if the vendor already has a connection, added to
        it on its existing terms. ``revision`` is the offer's revision the individual saw;
        if the vendor changed it since, nothing is accepted (:class:`OfferChanged`).
        """
        intent = self.owned(owner.id, intent_id, lock=True)
        offer, app = self._owned_offer(intent, offer_id)
        self._decidable(intent, offer, revision)
        chosen = scopes.check_fields(fields or [])
        grants = GrantService(self.db, self.rt)
        existing = grants.active(owner.id, app.id) if chosen else None
        if chosen and existing is None and duration not in DURATIONS:
            raise InvalidInput(
                "Choose how long the vendor may read these fields.", field="duration"
            )
        now = self._claim(offer, OfferStatus.ACCEPTED, revision)
        closed = self.db.execute(
            update(Intent)
            .where(Intent.id == intent.id, Intent.status == IntentStatus.OPEN)
            .values(
                status=IntentStatus.CLOSED,
                closed_at=now,
                accepted_offer_id=offer.id,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if closed.rowcount != 1:  # type: ignore[attr-defined]
            raise IntentClosed("This intent was closed a moment ago; nothing was accepted.")
        self.db.refresh(intent)
        grant: Grant | None = None
        if existing is not None:
            agreement = AGREEMENTS.get(existing.agreement_id) or choose_agreement(owner, app)
            grant = grants.widen(
                owner.id,
                app,
                chosen,
                consent_text_hash=acceptance_text_hash(
                    app, scopes.check_fields([*existing.fields, *chosen]), agreement
                ),
            )
        elif chosen:
            agreement = choose_agreement(owner, app)
            grant = grants.decide(
                owner.id,
                app,
                Decision(chosen, duration),
                agreement.id,
                consent_text_hash=acceptance_text_hash(app, chosen, agreement),
            )
        offer.grant_id = grant.id if grant else None
        offer.shared_fields = chosen or None
        self.db.flush()
        notify.offer_accepted(
            self.db,
            self.rt,
            app,
            intent,
            offer,
            grant_id=str(grant.id) if grant else None,
            shared_fields=[scopes.PROFILE_PREFIX + f for f in chosen],
        )
        self._lapse(
            self._live_offers(intent.id, except_id=offer.id), intent, "another_offer_accepted"
        )
        return offer

    def decline(
        self,
        owner: Account,
        intent_id: uuid.UUID,
        offer_id: uuid.UUID,
        *,
        revision: int | None = None,
    ) -> Offer:
        intent = self.owned(owner.id, intent_id, lock=True)
        offer, app = self._owned_offer(intent, offer_id)
        self._decidable(intent, offer, revision)
        self._claim(offer, OfferStatus.DECLINED, revision)
        notify.offer_declined(self.db, self.rt, app, intent, offer)
        return offer

    # -- blocking -----------------------------------------------------------------------------

    def block(self, owner: Account, app_id: uuid.UUID) -> VendorApp:
        """The vendor no longer sees this individual's intents: this app, and every other app
        of the same vendor account. Its live offers on them lapse; to the vendor that looks
        like a withdrawn intent (``intent.withdrawn``), not like a block."""
        app = self.db.get(VendorApp, app_id)
        if app is None:
            raise NotFound("There is no such vendor.")
        # Lock the open intents first: an offer in flight (which locks its intent) either
        # lands before the block, and lapses below, or sees the block.
        open_intents = list(
            self.db.scalars(
                select(Intent)
                .where(Intent.owner_id == owner.id, Intent.status == IntentStatus.OPEN)
                .with_for_update()
            )
        )
        if self.db.get(IntentBlock, (owner.id, app.id)) is None:
            self.db.add(IntentBlock(owner_id=owner.id, app_id=app.id, created_at=utcnow()))
            self.db.flush()
        apps = sibling_apps(self.db, app)
        for intent in open_intents:
            live = [
                (offer, other) for offer, other in self._live_offers(intent.id) if other.id in apps
            ]
            self._lapse(live, intent, "intent_withdrawn")
        return app

    def unblock(self, owner: Account, app_id: uuid.UUID) -> None:
        self.db.execute(
            delete(IntentBlock).where(
                IntentBlock.owner_id == owner.id, IntentBlock.app_id == app_id
            )
        )

    def blocked(self, owner_id: uuid.UUID) -> list[tuple[IntentBlock, VendorApp]]:
        rows = self.db.execute(
            select(IntentBlock, VendorApp)
            .join(VendorApp, VendorApp.id == IntentBlock.app_id)
            .where(IntentBlock.owner_id == owner_id)
            .order_by(VendorApp.name)
        ).all()
        return [(block, app) for block, app in rows]

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
            for offer, app in self._live_offers(intent.id):
                offer.status = OfferStatus.LAPSED
                offer.lapse_reason = "intent_expired"
                offer.decided_at = now
                self.db.flush()
                notify.offer_lapsed(self.db, self.rt, app, intent, offer, "intent_expired")
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
