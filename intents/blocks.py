"""Blocks: an individual stops showing their intents to a vendor (every app of its account);
its live offers lapse, which to the vendor looks like a withdrawn intent."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from intents.models import Intent, IntentBlock, IntentStatus
from intents.service import IntentService
from vault.accounts.models import Account
from vault.base import utcnow
from vault.errors import NotFound
from vault.runtime import Runtime


def sibling_apps(db: Session, app: VendorApp) -> set[uuid.UUID]:
    """This app and every other app of the same vendor account (blocks apply to all)."""
    if app.owner_id is None:
        return {app.id}
    return set(db.scalars(select(VendorApp.id).where(VendorApp.owner_id == app.owner_id)))


class BlockService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt
        self.intents = IntentService(db, rt)

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
                (offer, other)
                for offer, other in self.intents.live_offers(intent.id)
                if other.id in apps
            ]
            self.intents.lapse(live, intent, "intent_withdrawn")
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
