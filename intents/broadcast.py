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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, false, insert, or_, select
from sqlalchemy.orm import Session, aliased

from consent.terms.catalogue import INTENT_SHARING
from consent.vendors.models import VendorApp
from consent.webhooks.events import WebhookEvent
from consent.webhooks.outbox import enqueue_many
from intents.events import (
    IntentChangedData,
    IntentClosedData,
    IntentPublishedData,
    IntentWithdrawnData,
)
from intents.models import ANY, Intent, IntentBlock, IntentNotice, IntentSubscription
from intents.pseudonyms import owner_pseudonym
from intents.shown import intent_fields
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


@dataclass(frozen=True, slots=True)
class Recipient:
    """An app to tell: what queueing and the pseudonym need, and what decides it may see."""

    id: uuid.UUID
    webhook_url: str | None
    accepted_agreements: list[str] | None
    vendor_scopes: list[str] | None

    @property
    def may_see(self) -> bool:
        return (
            bool(self.webhook_url)
            and INTENT_SHARING in (self.accepted_agreements or [])
            and READ_SCOPE in (self.vendor_scopes or [])
        )


_RECIPIENT = (
    VendorApp.id,
    VendorApp.webhook_url,
    VendorApp.accepted_agreements,
    VendorApp.vendor_scopes,
)


def matching_apps(db: Session, intent: Intent) -> list[tuple[Recipient, list[uuid.UUID]]]:
    """Every app with a subscription this intent matches and that may see it, with the ids of
    its matching subscriptions: one statement, driven by the match index."""
    category_keys = [ANY, intent.category_root]
    if intent.category != intent.category_root:
        category_keys.append(intent.category)
    country_keys = [ANY, intent.country] if intent.country else [ANY]
    sub = IntentSubscription
    rows = db.execute(
        select(sub.id, *_RECIPIENT)
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
                sub.needed_before >= intent.needed_by if intent.needed_by else false(),
            ),
            VendorApp.webhook_url.is_not(None),
            _not_blocked(intent.owner_id),
        )
        .order_by(VendorApp.id, sub.created_at, sub.id)
    ).all()
    found: dict[uuid.UUID, tuple[Recipient, list[uuid.UUID]]] = {}
    for sub_id, app_id, webhook_url, agreements, app_scopes in rows:
        if app_id not in found:
            found[app_id] = (Recipient(app_id, webhook_url, agreements, app_scopes), [])
        found[app_id][1].append(sub_id)
    return [(app, ids) for app, ids in found.values() if app.may_see]


def _told(db: Session, intent: Intent) -> list[Recipient]:
    """The apps told of this intent that may still see it (blocked ones hear nothing more)."""
    rows = db.execute(
        select(*_RECIPIENT)
        .join(IntentNotice, IntentNotice.app_id == VendorApp.id)
        .where(IntentNotice.intent_id == intent.id, _not_blocked(intent.owner_id))
        .order_by(VendorApp.id)
    ).all()
    return [app for app in (Recipient(*row) for row in rows) if app.may_see]


class _Facts:
    """The listing's view of one intent, decrypted once, for every app told."""

    def __init__(self, db: Session, rt: Runtime, intent: Intent) -> None:
        keys = KeyStore(db, rt.keys)
        self.rt = rt
        self.intent = intent
        self.title = _decrypt(keys, intent, "title_ct")
        self.description = _decrypt(keys, intent, "description_ct")

    def fields(self, app: Recipient, subscription_ids: Iterable[uuid.UUID]) -> dict[str, Any]:
        intent = self.intent
        owner = owner_pseudonym(self.rt, app.id, intent.owner_id)
        listed = intent_fields(intent, owner, self.title, self.description)
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
    told_before: dict[uuid.UUID, Recipient] = (
        {app.id: app for app in _told(db, intent)} if changed else {}
    )
    if not matches and not told_before:
        return 0
    facts = _Facts(db, rt, intent)
    now = utcnow()
    subs = {app.id: ids for app, ids in matches}
    events: list[tuple[Recipient, WebhookEvent]] = [
        (app, IntentPublishedData(**facts.fields(app, ids)))
        for app, ids in matches
        if app.id not in told_before
    ]
    notices = [{"intent_id": intent.id, "app_id": app.id, "told_at": now} for app, _event in events]
    events += [
        (app, IntentChangedData(**facts.fields(app, subs.get(app.id, []))))
        for app in told_before.values()
    ]
    queued = enqueue_many(db, events, now=now)
    if notices:
        db.connection().execute(insert(IntentNotice), notices)
    return queued


def withdrawn(db: Session, rt: Runtime, intent: Intent, *, skip: set[uuid.UUID]) -> int:
    """``intent.withdrawn`` to each app told of the intent, except those in ``skip`` (they
    were sent one about their live offer)."""
    events: list[tuple[Recipient, WebhookEvent]] = [
        (
            app,
            IntentWithdrawnData(
                offer_id=None,
                intent_id=str(intent.id),
                owner=owner_pseudonym(rt, app.id, intent.owner_id),
                offer_status=None,
                price=None,
                currency=None,
            ),
        )
        for app in _told(db, intent)
        if app.id not in skip
    ]
    return enqueue_many(db, events)


def closed(
    db: Session, rt: Runtime, intent: Intent, reason: str, *, at: datetime | None = None
) -> int:
    """``intent.closed`` to each app told of the intent."""
    at = at or intent.closed_at or utcnow()
    events: list[tuple[Recipient, WebhookEvent]] = [
        (
            app,
            IntentClosedData(
                intent_id=str(intent.id),
                owner=owner_pseudonym(rt, app.id, intent.owner_id),
                reason=reason,
                closed_at=at,
            ),
        )
        for app in _told(db, intent)
    ]
    return enqueue_many(db, events)
