"""The individual's decisions on offers: accept one (the intent closes, the other offers lapse,
shared fields become an ordinary grant) or decline one. Each decision claims the offer with a
conditional ``UPDATE ... WHERE status = 'live'`` at the revision the individual saw, so it never
crosses the vendor's change or another decision.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
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
from consent.terms.catalogue import AGREEMENTS, INTENT_SHARING, Agreement, agreement_for
from consent.vendors.models import VendorApp
from intents import broadcast, notify
from intents.errors import IntentClosed, OfferChanged, OfferNotLive
from intents.models import Intent, IntentStatus, Offer, OfferStatus
from intents.service import IntentService, effective_status, offer_status
from vault.accounts.models import Account
from vault.base import utcnow
from vault.db import atomic
from vault.errors import InvalidInput, NotFound
from vault.runtime import Runtime


def choose_agreement(account: Account, app: VendorApp) -> Agreement:
    """The agreement a grant made on acceptance records: the individual's own if the app
    accepts it, else intent sharing (which every app that sees intents accepts)."""
    preferred = agreement_for(account)
    if preferred.id in app.accepted_agreements:
        return preferred
    if INTENT_SHARING in app.accepted_agreements:
        return AGREEMENTS[INTENT_SHARING]
    for agreement_id in app.accepted_agreements:
        if agreement_id in AGREEMENTS:
            return AGREEMENTS[agreement_id]
    return AGREEMENTS[INTENT_SHARING]


def acceptance_text_hash(app: VendorApp, fields: list[str], agreement: Agreement) -> str:
    """SHA-256 of what the acceptance page stated (no profile value), for the ledger."""
    return screen_text_hash(ACCEPTANCE_SCREEN, app, fields, agreement.id)


class OfferDecisions:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt
        self.intents = IntentService(db, rt)

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

    @atomic
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
        intent = self.intents.owned(owner.id, intent_id, lock=True)
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
        self.intents.lapse(
            self.intents.live_offers(intent.id, except_id=offer.id),
            intent,
            "another_offer_accepted",
        )
        broadcast.closed(self.db, self.rt, intent, "offer_accepted", at=now)
        return offer

    @atomic
    def decline(
        self,
        owner: Account,
        intent_id: uuid.UUID,
        offer_id: uuid.UUID,
        *,
        revision: int | None = None,
    ) -> Offer:
        intent = self.intents.owned(owner.id, intent_id, lock=True)
        offer, app = self._owned_offer(intent, offer_id)
        self._decidable(intent, offer, revision)
        self._claim(offer, OfferStatus.DECLINED, revision)
        notify.offer_declined(self.db, self.rt, app, intent, offer)
        return offer
