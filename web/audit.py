"""The auditor console: the signed ledger head, its entries with their inclusion checked, per-vendor
summaries and exports. Auditors see pseudonyms, never names, emails or profile values."""

from __future__ import annotations

import base64
import json
import statistics
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request, Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.grants.service import is_active
from consent.ledger.export import export_range
from consent.ledger.merkle import leaf_hash, verify_inclusion
from consent.ledger.models import MAX_INDEX, LedgerCheckpoint, LedgerEntry
from consent.ledger.service import latest_checkpoint, public_key_text
from consent.ledger.store import EVENT_TYPES, StoredTree
from consent.vendors.models import VendorApp
from vault.accounts.dependencies import ViewerDep
from vault.accounts.models import Account, Role
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import Forbidden
from vault.routing import APIRouter
from web.dependencies import SignInRequired
from web.templating import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_EXPORT = 100_000
VERIFIED, FAILED, PENDING = "verified", "FAILED", "not yet in a checkpoint"
ENDINGS = ("grant.revoked", "grant.expired")


def require_auditor(request: Request, viewer: ViewerDep) -> Account:
    if viewer.account is None:
        raise SignInRequired(
            request.url.path if request.method == "GET" else "",
            getattr(request.state, "session_expired", False),
        )
    if viewer.account.role != Role.AUDITOR:
        raise Forbidden("This page is for privacy auditors; your account has another role.")
    return viewer.account


PageAuditor = Annotated[Account, Depends(require_auditor)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inclusion_status(
    tree: StoredTree, row: LedgerEntry, checkpoint: LedgerCheckpoint | None
) -> str:
    """Whether the entry as stored now is in the tree the latest checkpoint signed.

    The leaf hash is recomputed from the stored entry bytes, not read from ``leaf_hash``.
    """
    if checkpoint is None or row.index >= checkpoint.size:
        return PENDING
    try:
        proof = tree.inclusion(row.index, checkpoint.size)
    except LookupError:
        return FAILED
    digest = leaf_hash(bytes(row.entry))
    ok = verify_inclusion(digest, row.index, checkpoint.size, proof, bytes(checkpoint.root))
    return VERIFIED if ok else FAILED


def _entry_fields(data: bytes) -> list[str]:
    try:
        obj = json.loads(data)
    except ValueError:
        return []
    fields = obj.get("fields") if isinstance(obj, dict) else None
    return [str(f) for f in fields] if isinstance(fields, list) else []


def vendor_names(db: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = db.execute(select(VendorApp.id, VendorApp.name).where(VendorApp.id.in_(ids)))
    return {app_id: name for app_id, name in rows}


@dataclass(slots=True)
class Filters:
    vendor: str = ""
    event_type: str = ""
    start: str = ""
    end: str = ""
    subject: str = ""

    def query(self, **extra: Any) -> str:
        values = {
            "vendor": self.vendor,
            "event_type": self.event_type,
            "from": self.start,
            "to": self.end,
            "subject": self.subject,
            **extra,
        }
        return urlencode({k: v for k, v in values.items() if v})


def _day(raw: str, field: str, errors: dict[str, str]) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(raw), time(), tzinfo=UTC)
    except ValueError:
        errors[field] = "Give a date as YYYY-MM-DD."
        return None


def _apply(
    stmt: Select[tuple[LedgerEntry]], f: Filters, errors: dict[str, str]
) -> Select[tuple[LedgerEntry]]:
    if f.vendor:
        try:
            stmt = stmt.where(LedgerEntry.vendor_id == uuid.UUID(f.vendor))
        except ValueError:
            errors["vendor"] = "A vendor id looks like 123e4567-e89b-12d3-a456-426614174000."
    if f.event_type:
        if f.event_type in EVENT_TYPES:
            stmt = stmt.where(LedgerEntry.event_type == f.event_type)
        else:
            errors["event_type"] = "Choose an event type from the list."
    if f.start and (start := _day(f.start, "from", errors)) is not None:
        stmt = stmt.where(LedgerEntry.occurred_at >= start)
    if f.end and (end := _day(f.end, "to", errors)) is not None:
        stmt = stmt.where(LedgerEntry.occurred_at < end + timedelta(days=1))
    if f.subject:
        stmt = stmt.where(LedgerEntry.subject == f.subject)
    return stmt


Text = Annotated[str, Query(max_length=200)]


@router.get("/audit")
def audit_page(
    request: Request,
    auditor: PageAuditor,
    db: DbDep,
    rt: RuntimeDep,
    vendor: Text = "",
    event_type: Text = "",
    start: Annotated[str, Query(alias="from", max_length=20)] = "",
    end: Annotated[str, Query(alias="to", max_length=20)] = "",
    subject: Text = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    filters = Filters(
        vendor.strip(), event_type.strip(), start.strip(), end.strip(), subject.strip()
    )
    errors: dict[str, str] = {}
    stmt = _apply(select(LedgerEntry), filters, errors)
    rows: list[LedgerEntry] = []
    if not errors:
        rows = list(
            db.scalars(
                stmt.order_by(LedgerEntry.index.desc())
                .limit(PAGE_SIZE + 1)
                .offset((page - 1) * PAGE_SIZE)
            )
        )
    has_next = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    checkpoint = latest_checkpoint(db)
    tree = StoredTree(db, memoize=True)  # a page's proofs share most of their nodes
    names = vendor_names(db, {r.vendor_id for r in rows if r.vendor_id is not None})
    entries = [
        {
            "index": r.index,
            "at": r.occurred_at,
            "event_type": r.event_type,
            "vendor_id": str(r.vendor_id) if r.vendor_id else "",
            "vendor_name": names.get(r.vendor_id) if r.vendor_id else None,
            "subject": r.subject or "",
            "fields": _entry_fields(bytes(r.entry)),
            "inclusion": inclusion_status(tree, r, checkpoint),
        }
        for r in rows
    ]
    return render(
        request,
        "audit_log.html",
        {
            "checkpoint": checkpoint,
            "root": _b64(bytes(checkpoint.root)) if checkpoint else "",
            "verifier_key": public_key_text(rt),
            "tree_size": tree.size(),
            "entries": entries,
            "event_types": sorted(EVENT_TYPES),
            "filters": filters,
            "errors": errors,
            "page": page,
            "prev_query": filters.query(page=page - 1) if page > 1 else None,
            "next_query": filters.query(page=page + 1) if has_next else None,
            "failed": sum(1 for e in entries if e["inclusion"] == FAILED),
        },
        status_code=400 if errors else 200,
    )


@dataclass(slots=True)
class VendorSummary:
    vendor_id: uuid.UUID
    name: str | None = None
    active: int = 0
    given: int = 0
    revocations: int = 0
    expiries: int = 0
    reuse: int = 0
    durations: list[float] | None = None

    @property
    def median_duration(self) -> timedelta | None:
        if not self.durations:
            return None
        return timedelta(seconds=round(statistics.median(self.durations)))


def vendor_summaries(db: Session) -> list[VendorSummary]:
    """Per vendor, from the ledger (grant durations run from ``grant.given`` to the
    ``grant.revoked`` or ``grant.expired`` that ends it) and the grants table (active now)."""
    summaries: dict[uuid.UUID, VendorSummary] = {}

    def of(vendor_id: uuid.UUID) -> VendorSummary:
        if vendor_id not in summaries:
            summaries[vendor_id] = VendorSummary(vendor_id, durations=[])
        return summaries[vendor_id]

    opened: dict[str, datetime] = {}
    rows = db.execute(
        select(
            LedgerEntry.vendor_id,
            LedgerEntry.event_type,
            LedgerEntry.occurred_at,
            LedgerEntry.entry,
        )
        .where(LedgerEntry.vendor_id.is_not(None))
        .order_by(LedgerEntry.index)
    )
    for vendor_id, event_type, occurred_at, data in rows:
        if vendor_id is None:
            continue
        summary = of(vendor_id)
        if event_type == "token.reuse_detected":
            summary.reuse += 1
        if not event_type.startswith("grant."):
            continue
        try:
            grant_id = str(json.loads(data).get("grant_id") or "")
        except (ValueError, AttributeError):
            grant_id = ""
        if event_type == "grant.given":
            summary.given += 1
            if grant_id and grant_id not in opened:
                opened[grant_id] = occurred_at
        elif event_type in ENDINGS:
            if event_type == "grant.revoked":
                summary.revocations += 1
            else:
                summary.expiries += 1
            began = opened.pop(grant_id, None) if grant_id else None
            if began is not None and summary.durations is not None:
                summary.durations.append((occurred_at - began).total_seconds())
    for grant in db.scalars(select(Grant)):
        if is_active(grant):
            of(grant.app_id).active += 1
    names = vendor_names(db, set(summaries))
    for summary in summaries.values():
        summary.name = names.get(summary.vendor_id)
    return sorted(summaries.values(), key=lambda s: ((s.name or "").lower(), str(s.vendor_id)))


@router.get("/audit/vendors")
def vendors_page(request: Request, auditor: PageAuditor, db: DbDep) -> Response:
    return render(request, "audit_vendors.html", {"vendors": vendor_summaries(db)})


@router.get("/audit/export")
def export(
    auditor: PageAuditor,
    db: DbDep,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    end: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
) -> Response:
    """The latest checkpoint and the stored entries ``start <= index < end`` as JSON Lines,
    each with its inclusion proof from the stored hashes of the signed tree."""
    export = export_range(db, start=start, end=end, limit=MAX_EXPORT)
    body = "".join(export.lines())
    return Response(
        body,
        media_type="application/jsonl",
        headers={
            "Content-Disposition": (
                f'attachment; filename="ledger-{export.size}-{start}-{export.end}.jsonl"'
            ),
            "Cache-Control": "no-store",
        },
    )
