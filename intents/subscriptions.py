"""Vendor apps' subscriptions: saved listing filters whose matching intents are pushed to the
app's webhook (:mod:`intents.broadcast`). An app keeps at most :data:`MAX_PER_APP`."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from intents.errors import SubscriptionLimit
from intents.market import IntentFilters, Seller
from intents.models import ANY, IntentSubscription
from vault.base import utcnow
from vault.errors import InvalidInput, NotFound

MAX_PER_APP = 50


def _fill(sub: IntentSubscription, filters: IntentFilters) -> None:
    if filters.published_since is not None:
        raise InvalidInput(
            "published_since is a listing filter only; a subscription is told of intents as "
            "they are published.",
            field="published_since",
        )
    sub.category_key = filters.category.id if filters.category else ANY
    sub.country_key = filters.country or ANY
    sub.currency_key = filters.currency or ANY
    sub.city = filters.city
    sub.online = filters.online
    sub.budget_min = filters.budget_min
    sub.budget_max = filters.budget_max
    sub.needed_before = filters.needed_before
    sub.updated_at = utcnow()


class Subscriptions:
    """One app's subscriptions."""

    def __init__(self, db: Session, app: VendorApp | Seller) -> None:
        self.db = db
        self.app = app

    def all(self) -> list[IntentSubscription]:
        return list(
            self.db.scalars(
                select(IntentSubscription)
                .where(IntentSubscription.app_id == self.app.id)
                .order_by(IntentSubscription.created_at, IntentSubscription.id)
            )
        )

    def get(self, subscription_id: uuid.UUID) -> IntentSubscription:
        sub = self.db.get(IntentSubscription, subscription_id)
        if sub is None or sub.app_id != self.app.id:
            raise NotFound("Your app has no subscription with this id.")
        return sub

    def create(self, filters: IntentFilters) -> IntentSubscription:
        # Lock the app row, so two parallel creations cannot both pass the limit.
        self.db.execute(select(VendorApp.id).where(VendorApp.id == self.app.id).with_for_update())
        count = self.db.scalar(
            select(func.count())
            .select_from(IntentSubscription)
            .where(IntentSubscription.app_id == self.app.id)
        )
        if (count or 0) >= MAX_PER_APP:
            raise SubscriptionLimit(
                f"An app keeps at most {MAX_PER_APP} subscriptions; delete one or widen one "
                "instead."
            )
        sub = IntentSubscription(id=uuid.uuid4(), app_id=self.app.id, created_at=utcnow())
        _fill(sub, filters)
        self.db.add(sub)
        self.db.flush()
        return sub

    def replace(self, subscription_id: uuid.UUID, filters: IntentFilters) -> IntentSubscription:
        sub = self.get(subscription_id)
        _fill(sub, filters)
        self.db.flush()
        return sub

    def delete(self, subscription_id: uuid.UUID) -> None:
        self.db.delete(self.get(subscription_id))
        self.db.flush()
