"""Telling subscribed vendor apps of intents: ``intent.published``, ``intent.changed``,
``intent.withdrawn`` and ``intent.closed``, queued in the outbox in the change's transaction.

Who is told: apps with a subscription the intent matches, found with one query over
``ix_intent_subscriptions_match`` (:func:`matching_apps`), that may see the intent in the
listing: they hold ``intents:read``, accept the intent-sharing agreement, have a webhook URL
and are not blocked by the owner (nor is any other app of their vendor). Each is told once per
change, with the intent as the listing shows it to that app (its own owner pseudonym). The apps
told are recorded (:class:`~intents.models.IntentNotice`): they, and only they, hear when the
intent is withdrawn or closes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from consent.terms.catalogue import INTENT_SHARING
from consent.vendors.models import VendorApp
from consent.webhooks.outbox import enqueue
from intents import money, taxonomy
from intents.events import (
    IntentChangedData,
    IntentClosedData,
    IntentPublishedData,
    IntentWithdrawnData,
)
from intents.models import ANY, Intent, IntentBlock, IntentNotice, IntentSubscription
from intents.pseudonyms import owner_pseudonym
from vault.base import utcnow
from vault.crypto import Binding
from vault.keystore import KeyStore
from vault.runtime import Runtime

READ_SCOPE = "intents:read"


def _not_blocked(owner_id: uuid.UUID) -> Any:
    """No block by ``owner_id`` on this app or on any other app of its vendor."""
    other = aliased(VendorApp)
    return ~exists().where(
        IntentBlock.owner_id == owner_id,
        IntentBlock.app_id == other.id,
        or_(
            other.id == VendorApp.id,
            and_(other.owner_id.is_not(None), other.owner_id == VendorApp.owner_id),
        ),
    )


def _may_see(app: VendorApp) -> bool:
    return (
        bool(app.webhook_url)
        and INTENT_SHARING in (app.accepted_agreements or [])
        and READ_SCOPE in (app.vendor_scopes or [])
    )


def matching_apps(db: Session, intent: Intent) -> list[tuple[VendorApp, list[uuid.UUID]]]:
    """Every app with a subscription this intent matches and that may see it, with the ids of
    its matching subscriptions: one statement, driven by the match index."""
    category_keys = [ANY, intent.category_root]
    if intent.category != intent.category_root:
        category_keys.append(intent.category)
    country_keys = [ANY, intent.country] if intent.country else [ANY]
    sub = IntentSubscription
    rows: Sequence[Row[tuple[uuid.UUID, VendorApp]]] = db.execute(
        select(sub.id, VendorApp)
        .join(VendorApp, VendorApp.id == sub.app_id)
        .where(
            sub.category_key.in_(category_keys),
            sub.country_key.in_(country_keys),
            sub.currency_key.in_([ANY, intent.currency]),
            or_(sub.city.is_(None), sub.city == intent.city),
            or_(sub.online.is_(None), sub.online == intent.online),
            or_(sub.budget_min.is_(None), sub.budget_min <= intent.budget_minor),
            or_(sub.budget_max.is_(None), sub.budget_max >= intent.budget_minor),
            or_(
                sub.needed_before.is_(None),
                sub.needed_before >= intent.needed_by if intent.needed_by else False,
            ),
            VendorApp.webhook_url.is_not(None),
            _not_blocked(intent.owner_id),
        )
        .order_by(VendorApp.id, sub.created_at, sub.id)
    ).all()
    found: dict[uuid.UUID, tuple[VendorApp, list[uuid.UUID]]] = {}
    for sub_id, app in rows:
        if _may_see(app):
            found.setdefault(app.id, (app, []))[1].append(sub_id)
    return list(found.values())


def _told(db: Session, intent: Intent) -> list[VendorApp]:
    """The apps told of this intent that may still see it (blocked ones hear nothing more)."""
    return [
        app
        for app in db.scalars(
            select(VendorApp)
            .join(IntentNotice, IntentNotice.app_id == VendorApp.id)
            .where(IntentNotice.intent_id == intent.id, _not_blocked(intent.owner_id))
            .order_by(VendorApp.id)
        )
        if _may_see(app)
    ]


class _Facts:
    """The listing's view of one intent, decrypted once, for every app told."""

    def __init__(self, db: Session, rt: Runtime, intent: Intent) -> None:
        keys = KeyStore(db, rt.keys)
        self.rt = rt
        self.intent = intent
        self.title = _decrypt(keys, intent, "title_ct")
        self.description = _decrypt(keys, intent, "description_ct")

    def fields(self, app: VendorApp, subscription_ids: Iterable[uuid.UUID]) -> dict[str, Any]:
        intent = self.intent
        category = taxonomy.CATEGORIES.get(intent.category)
        assert intent.published_at is not None
        listed = {
            "id": str(intent.id),
            "owner": owner_pseudonym(self.rt, app.id, intent.owner_id),
            "category": intent.category,
            "category_label": category.path_label if category else intent.category,
            "title": self.title,
            "description": self.description,
            "quantity": intent.quantity,
            "max_budget": money.format_amount(intent.budget_minor, intent.currency),
            "currency": intent.currency,
            "country": intent.country,
            "city": intent.city,
            "online": intent.online,
            "needed_by": intent.needed_by,
            "expires_at": intent.expires_at,
            "published_at": intent.published_at,
        }
        return {"intent": listed, "subscription_ids": [str(s) for s in subscription_ids]}


def _decrypt(keys: KeyStore, intent: Intent, column: str) -> str:
    binding = Binding(intent.owner_id, Intent.__tablename__, column, intent.id)
    return keys.decrypt(binding, getattr(intent, column)).decode()


def announce(db: Session, rt: Runtime, intent: Intent, *, changed: bool) -> int:
    """Tell the matching apps of a published (``changed`` False) or edited open intent.

    Published: ``intent.published`` to each matching app. Edited: ``intent.changed`` to each
    app told before that may still see it, ``intent.published`` to each matching app not
    told before. Returns how many messages were queued.
    """
    matches = matching_apps(db, intent)
    told_before: dict[uuid.UUID, VendorApp] = (
        {app.id: app for app in _told(db, intent)} if changed else {}
    )
    if not matches and not told_before:
        return 0
    facts = _Facts(db, rt, intent)
    now = utcnow()
    queued = 0
    subs = {app.id: ids for app, ids in matches}
    for app, ids in matches:
        if app.id in told_before:
            continue
        enqueue(db, app, IntentPublishedData(**facts.fields(app, ids)), now=now)
        db.add(IntentNotice(intent_id=intent.id, app_id=app.id, told_at=now))
        queued += 1
    for app in told_before.values():
        enqueue(db, app, IntentChangedData(**facts.fields(app, subs.get(app.id, []))), now=now)
        queued += 1
    db.flush()
    return queued


def withdrawn(db: Session, rt: Runtime, intent: Intent, *, skip: set[uuid.UUID]) -> int:
    """``intent.withdrawn`` to each app told of the intent, except those in ``skip`` (they
    were sent one about their live offer)."""
    queued = 0
    for app in _told(db, intent):
        if app.id in skip:
            continue
        event = IntentWithdrawnData(
            offer_id=None,
            intent_id=str(intent.id),
            owner=owner_pseudonym(rt, app.id, intent.owner_id),
            offer_status=None,
            price=None,
            currency=None,
        )
        enqueue(db, app, event)
        queued += 1
    return queued


def closed(
    db: Session, rt: Runtime, intent: Intent, reason: str, *, at: datetime | None = None
) -> int:
    """``intent.closed`` to each app told of the intent."""
    at = at or intent.closed_at or utcnow()
    queued = 0
    for app in _told(db, intent):
        event = IntentClosedData(
            intent_id=str(intent.id),
            owner=owner_pseudonym(rt, app.id, intent.owner_id),
            reason=reason,  # type: ignore[arg-type]
            closed_at=at,
        )
        enqueue(db, app, event)
        queued += 1
    return queued
