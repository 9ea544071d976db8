"""The consent package's part in export, import and erasure.

Export: preferences, grants with their ledger history, the access log, receipts, the person's
ledger entries with proofs, and the vendors they had before an import. Import keeps the
preferences and the list of vendors the person had (grants do not transfer). Erasure revokes
every grant (vendors are told), records the erasure in the ledger and deletes the rows, with
``subject.erased`` queued to every vendor that ever held a grant or had an offer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from consent.grants.events import SubjectErasedData
from consent.grants.models import AccessLogEntry, Grant, PreviousVendors
from consent.grants.receipts import ReceiptPending, grant_entries, receipt_for
from consent.grants.schemas import (
    AccessItem,
    CheckpointItem,
    GrantItem,
    HistoryItem,
    LedgerItem,
    PreferenceItem,
    ReceiptItem,
    VendorHadItem,
)
from consent.grants.service import GrantService, is_active, pairwise_subject
from consent.ledger.models import LedgerEntry, LedgerSubject, LedgerVendorSubject
from consent.ledger.service import (
    checkpoint_at_least,
    create_checkpoint,
    latest_checkpoint,
    public_key_text,
)
from consent.ledger.store import StoredTree, all_subjects, integrate, pseudonym_for, record
from consent.terms.catalogue import AGREEMENTS
from consent.vendors.models import VendorApp
from consent.webhooks.outbox import enqueue
from vault.accounts.models import Account
from vault.base import utcnow
from vault.crypto import Binding
from vault.keystore import KeyStore
from vault.portability.parts import (
    ErasureContext,
    ImportContext,
    Section,
    count_rows,
    deleted,
)
from vault.runtime import Runtime

_BATCH = 1000
_ERASED_REQUEST = (
    "The individual erased their vault. Delete every copy of their data you hold, except "
    "records the law requires you to keep."
)
"""What ``subject.erased`` asks of every vendor that knew the individual."""


def _status(grant: Grant) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    return "active" if is_active(grant) else "expired"


class ConsentPart:
    name = "consent"

    def prepare_export(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> None:
        """Sign a checkpoint covering every entry so far, so each proof in the export (and
        each receipt) leads to a signed tree head."""
        create_checkpoint(db, rt)

    def sections(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[Section]:
        account = db.get_one(Account, owner_id)
        apps = {
            app.id: app
            for app in db.scalars(
                select(VendorApp).where(
                    VendorApp.id.in_(
                        select(Grant.app_id)
                        .where(Grant.individual_id == owner_id)
                        .union(
                            select(AccessLogEntry.app_id).where(
                                AccessLogEntry.individual_id == owner_id
                            )
                        )
                    )
                )
            )
        }
        grants = list(
            db.scalars(
                select(Grant).where(Grant.individual_id == owner_id).order_by(Grant.granted_at)
            )
        )
        subjects = all_subjects(db, rt, owner_id)
        checkpoint = latest_checkpoint(db)

        def preference_rows() -> Iterator[PreferenceItem]:
            if account.preferred_agreement_id:
                yield PreferenceItem(
                    name="preferred_agreement", value=account.preferred_agreement_id
                )

        entries_of: dict[uuid.UUID, list[tuple[LedgerEntry, dict[str, Any]]]] = {}

        def entries(grant: Grant) -> list[tuple[LedgerEntry, dict[str, Any]]]:
            """Read once per export (the JSON, CSV and HTML files all show them)."""

            if grant.id not in entries_of:
                entries_of[grant.id] = grant_entries(db, grant, subjects)
            return entries_of[grant.id]

        def history(grant: Grant) -> list[HistoryItem]:
            return [
                HistoryItem(
                    index=entry.index,
                    event_type=data["event_type"],
                    time=data["time"],
                    fields=list(data.get("fields") or []),
                    expires_at=data.get("expires_at"),
                )
                for entry, data in entries(grant)
            ]

        def grant_rows() -> Iterator[GrantItem]:
            for grant in grants:
                app = apps[grant.app_id]
                yield GrantItem(
                    grant_id=str(grant.id),
                    vendor_id=str(app.id),
                    vendor_name=app.name,
                    vendor_homepage=app.homepage_url,
                    fields=list(grant.fields),
                    purpose=grant.purpose,
                    agreement_id=grant.agreement_id,
                    granted_at=grant.granted_at,
                    expires_at=grant.expires_at,
                    revoked_at=grant.revoked_at,
                    status=_status(grant),
                    history=history(grant),
                )

        def access_rows() -> Iterator[AccessItem]:
            rows = db.execute(
                select(
                    AccessLogEntry.accessed_at,
                    AccessLogEntry.app_id,
                    AccessLogEntry.app_name,
                    AccessLogEntry.fields,
                )
                .where(AccessLogEntry.individual_id == owner_id)
                .order_by(AccessLogEntry.accessed_at, AccessLogEntry.id)
                .execution_options(yield_per=_BATCH)
            )
            for accessed_at, app_id, app_name, fields in rows:
                # A deleted app's read keeps the name the app had when it read.
                app = apps.get(app_id) if app_id is not None else None
                yield AccessItem(
                    accessed_at=accessed_at,
                    vendor_id=str(app_id) if app_id is not None else None,
                    vendor_name=app.name if app else app_name,
                    fields=list(fields),
                )

        access_count = count_rows(db, AccessLogEntry, AccessLogEntry.individual_id == owner_id)

        receipts: dict[uuid.UUID, str] = {}

        def receipt_rows() -> Iterator[ReceiptItem]:

            for grant in grants:
                found = entries(grant)
                if not found or checkpoint_at_least(db, found[-1][0].index + 1) is None:
                    continue  # an event newer than the checkpoint: its receipt comes later
                if grant.id not in receipts:
                    try:
                        receipts[grant.id] = receipt_for(db, rt, grant.id)["receipt"]
                    except ReceiptPending:
                        continue  # its latest event is not in the tree yet: likewise later
                yield ReceiptItem(
                    grant_id=str(grant.id),
                    vendor_name=apps[grant.app_id].name,
                    receipt=receipts[grant.id],
                )

        def ledger_rows() -> Iterator[LedgerItem]:
            if not subjects or checkpoint is None:
                return
            tree = StoredTree(db, memoize=True)
            for entry in db.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.subject.in_(subjects), LedgerEntry.index < checkpoint.size)
                .order_by(LedgerEntry.index)
            ):
                yield LedgerItem(
                    index=entry.index,
                    entry=bytes(entry.entry).decode(),
                    leaf_hash=bytes(entry.leaf_hash).hex(),
                    tree_size=checkpoint.size,
                    inclusion_proof=[h.hex() for h in tree.inclusion(entry.index, checkpoint.size)],
                )

        def ledger_count() -> int:
            if not subjects or checkpoint is None:
                return 0
            return int(
                db.scalar(
                    select(func.count())
                    .select_from(LedgerEntry)
                    .where(LedgerEntry.subject.in_(subjects), LedgerEntry.index < checkpoint.size)
                )
                or 0
            )

        def checkpoint_rows() -> Iterator[CheckpointItem]:
            if checkpoint is not None:
                yield CheckpointItem(
                    tree_size=checkpoint.size,
                    note=checkpoint.note,
                    public_key=public_key_text(rt),
                )

        def had_rows() -> Iterator[VendorHadItem]:
            for raw in previous_vendors(db, rt, owner_id):
                yield VendorHadItem.model_validate(raw)

        return [
            Section(
                "preferences",
                "Preferences",
                "The terms you offer vendors.",
                "provided",
                PreferenceItem,
                preference_rows,
                lambda: 1 if account.preferred_agreement_id else 0,
            ),
            Section(
                "grants",
                "Connections",
                "Every vendor you let read your data: the fields, why, under which terms, until "
                "when, and every change (each a consent-ledger event).",
                "provided",
                GrantItem,
                grant_rows,
                lambda: len(grants),
                csv_columns=(
                    "grant_id",
                    "vendor_name",
                    "fields",
                    "purpose",
                    "agreement_id",
                    "granted_at",
                    "expires_at",
                    "revoked_at",
                    "status",
                ),
            ),
            Section(
                "access_log",
                "Reads by vendors",
                "Every time a vendor read your data, and which fields.",
                "observed",
                AccessItem,
                access_rows,
                access_count,
                csv_columns=("accessed_at", "vendor_name", "vendor_id", "fields"),
            ),
            Section(
                "receipts",
                "Consent receipts",
                "Signed receipts (JWS, verifiable offline with the vault's public key).",
                "observed",
                ReceiptItem,
                receipt_rows,
                lambda: len(grants),
            ),
            Section(
                "ledger_entries",
                "Consent ledger entries",
                "The entries of the consent ledger about you (under your pseudonym), each with "
                "its inclusion proof against the checkpoint below.",
                "observed",
                LedgerItem,
                ledger_rows,
                ledger_count,
            ),
            Section(
                "ledger_checkpoint",
                "Ledger checkpoint",
                "The signed tree head the proofs lead to.",
                "observed",
                CheckpointItem,
                checkpoint_rows,
                lambda: 1 if checkpoint else 0,
            ),
            Section(
                "previous_vendors",
                "Vendors you had before",
                "Connections from a vault you imported from. They did not transfer: each "
                "vendor must ask you again.",
                "provided",
                VendorHadItem,
                had_rows,
                lambda: len(previous_vendors(db, rt, owner_id)),
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
        """Preferences, and the vendors the person had (as a list to look at, not grants)."""
        for raw in sections.get("preferences", []):
            item = PreferenceItem.model_validate(raw)
            if item.name == "preferred_agreement":
                if item.value in AGREEMENTS:
                    owner.preferred_agreement_id = item.value
                    context.imported["preferences"] = 1
                else:
                    context.notes.append(f"agreement {item.value[:40]!r} is unknown here")
        had: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for raw in sections.get("grants", []):
            grant = GrantItem.model_validate(raw)
            key = (grant.vendor_name, grant.vendor_homepage)
            if key not in seen:
                seen.add(key)
                had.append(
                    VendorHadItem(
                        vendor_name=grant.vendor_name,
                        vendor_homepage=grant.vendor_homepage,
                        fields=grant.fields,
                        source=context.source,
                    ).model_dump()
                )
        for raw in sections.get("previous_vendors", []):
            item_h = VendorHadItem.model_validate(raw)
            key = (item_h.vendor_name, item_h.vendor_homepage)
            if key not in seen:
                seen.add(key)
                had.append(item_h.model_dump())
        if had:
            store_previous_vendors(db, rt, owner.id, had)
            context.imported["previous_vendors"] = len(had)
        db.flush()

    def erase(self, db: Session, rt: Runtime, owner_id: uuid.UUID, context: ErasureContext) -> None:

        service = GrantService(db, rt)
        grants = list(db.scalars(select(Grant).where(Grant.individual_id == owner_id)))
        for grant in grants:
            if is_active(grant):
                service.revoke(owner_id, grant.id)
            service.kill_credentials(grant.id)
        for app_id in sorted({g.app_id for g in grants}):
            context.notify.setdefault(app_id, {})["subject"] = pairwise_subject(
                rt, app_id, owner_id
            )
            context.notify[app_id]["grant_ids"] = sorted(
                str(g.id) for g in grants if g.app_id == app_id
            )
        subject = pseudonym_for(db, rt, owner_id)
        context.subject = subject
        context.subjects = sorted(set(all_subjects(db, rt, owner_id)))
        pending = record(db, {"event_type": "individual.erased", "subject": subject})
        # The erasure receipt carries the event's index and proof, so the erasure runs the
        # sequencer itself (erasures are rare: holding the head lock to the end of this
        # transaction delays other sequencing by that long, never a change being recorded).
        context.ledger_index = integrate(db).indexes[pending.id]
        context.deleted["access_log"] = deleted(
            db, delete(AccessLogEntry).where(AccessLogEntry.individual_id == owner_id)
        )
        context.deleted["grants"] = deleted(
            db, delete(Grant).where(Grant.individual_id == owner_id)
        )
        context.deleted["ledger_pseudonym_links"] = deleted(
            db, delete(LedgerSubject).where(LedgerSubject.owner_id == owner_id)
        ) + deleted(db, delete(LedgerVendorSubject).where(LedgerVendorSubject.owner_id == owner_id))
        context.deleted["previous_vendor_lists"] = deleted(
            db, delete(PreviousVendors).where(PreviousVendors.owner_id == owner_id)
        )
        db.flush()

    def finish_erasure(self, db: Session, rt: Runtime, context: ErasureContext) -> None:
        """``subject.erased`` to every vendor that held a grant or made an offer, and the
        checkpoint and proof for the receipt (all still in the erasure's transaction)."""

        for app_id, data in context.notify.items():
            app = db.get(VendorApp, app_id)
            if app is None:
                continue
            # Each part of the erasure added the names it knew (its keys are the model's).
            event = SubjectErasedData.model_validate({**data, "request": _ERASED_REQUEST})
            queued = enqueue(db, app, event)
            if queued is not None:
                context.vendors_notified.append(app.name)
            else:  # no webhook URL: the receipt says so, rather than claim it was asked
                context.vendors_not_reachable.append(app.name)
        if context.ledger_index is not None:
            create_checkpoint(db, rt)
            checkpoint = checkpoint_at_least(db, context.ledger_index + 1)
            assert checkpoint is not None
            entry = db.get_one(LedgerEntry, context.ledger_index)
            context.evidence = {
                "ledger_index": context.ledger_index,
                "entry": bytes(entry.entry).decode(),
                "leaf_hash": bytes(entry.leaf_hash).hex(),
                "tree_size": checkpoint.size,
                "checkpoint": checkpoint.note,
                "inclusion_proof": [
                    h.hex() for h in StoredTree(db).inclusion(context.ledger_index, checkpoint.size)
                ],
            }


def previous_vendors(db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[dict[str, Any]]:
    row = db.scalars(
        select(PreviousVendors).where(PreviousVendors.owner_id == owner_id)
    ).one_or_none()
    if row is None:
        return []
    binding = Binding(owner_id, PreviousVendors.__tablename__, "vendors_ct", row.id)
    found: list[dict[str, Any]] = json.loads(KeyStore(db, rt.keys).decrypt(binding, row.vendors_ct))
    return found


def store_previous_vendors(
    db: Session, rt: Runtime, owner_id: uuid.UUID, vendors: list[dict[str, Any]]
) -> None:
    row = PreviousVendors(id=uuid.uuid4(), owner_id=owner_id, vendors_ct=b"", imported_at=utcnow())
    binding = Binding(owner_id, PreviousVendors.__tablename__, "vendors_ct", row.id)
    row.vendors_ct = KeyStore(db, rt.keys).encrypt(
        binding, json.dumps(vendors, ensure_ascii=False).encode()
    )
    db.add(row)
    db.flush()
