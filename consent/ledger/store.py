"""Appending to the consent ledger and serving its proofs from stored subtree hashes.

An append runs in the transaction of the event it records: it locks the one head row
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already serialises
writers), takes the next index, stores the entry and every perfect subtree the new leaf
completes, and advances the compact range kept in the head. No reads of older nodes are
needed, and a proof needs O(log n) node lookups.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consent.ledger.merkle import (
    EMPTY_ROOT,
    canonical_json,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
)
from consent.ledger.models import (
    LedgerEntry,
    LedgerHead,
    LedgerNode,
    LedgerSubject,
    LedgerVendorSubject,
)
from vault.base import utcnow
from vault.crypto import Binding
from vault.keystore import KeyStore
from vault.runtime import Runtime

HEAD_ID = 1
EVENT_TYPES = frozenset(
    {
        "vendor.registered",
        "vendor.changed",
        "vendor.deleted",
        "grant.given",
        "grant.narrowed",
        "grant.extended",
        "grant.changed",
        "grant.revoked",
        "grant.expired",
        "token.reuse_detected",
        "code.replayed",
        "subject.erased",
        "individual.erased",
    }
)


@dataclass(frozen=True, slots=True)
class Appended:
    index: int
    leaf_hash: bytes


def lock_head(db: Session) -> LedgerHead:
    head = db.scalars(
        select(LedgerHead).where(LedgerHead.id == HEAD_ID).with_for_update()
    ).one_or_none()
    if head is None:  # created by the migration; recreated if someone deleted it
        head = LedgerHead(id=HEAD_ID, size=0, frontier=[])
        db.add(head)
        db.flush()
    return head


def append(db: Session, event: dict[str, Any], *, now: datetime | None = None) -> Appended:
    """Append one event in the caller's transaction; the entry gains ``index`` and ``time``."""
    event_type = event.get("event_type")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown ledger event {event_type!r}")
    now = now or utcnow()
    head = lock_head(db)
    index = head.size
    entry = {**event, "index": index, "time": now.isoformat().replace("+00:00", "Z")}
    data = canonical_json(entry)
    digest = leaf_hash(data)
    vendor = event.get("vendor_id")
    db.add(
        LedgerEntry(
            index=index,
            entry=data,
            leaf_hash=digest,
            event_type=event_type,
            vendor_id=uuid.UUID(vendor) if vendor else None,
            subject=event.get("subject"),
            occurred_at=now,
        )
    )
    # The frontier holds the roots of the perfect subtrees that make up the tree, largest
    # first. Appending a leaf merges equal-sized subtrees from the right, like binary carry.
    frontier = [bytes.fromhex(h) for h in head.frontier]
    current, level, position = digest, 0, index
    while position & 1:
        current = node_hash(frontier.pop(), current)
        level += 1
        position >>= 1
        db.add(LedgerNode(level=level, index=position, hash=current))
    frontier.append(current)
    head.frontier = [h.hex() for h in frontier]
    head.size = index + 1
    db.flush()
    return Appended(index, digest)


class StoredTree:
    """Perfect-subtree hashes read from storage, for proofs at any size up to the head."""

    def __init__(self, db: Session, *, memoize: bool = False) -> None:
        """``memoize`` keeps hashes read for later proofs in this object's life (stored
        subtrees never change): many proofs over neighbouring entries then share their reads."""
        self.db = db
        self.lookups = 0
        self._memo: dict[tuple[int, int], bytes] | None = {} if memoize else None

    def size(self) -> int:
        head = self.db.get(LedgerHead, HEAD_ID)
        return head.size if head else 0

    def subtree(self, level: int, index: int) -> bytes:
        if self._memo is not None and (level, index) in self._memo:
            return self._memo[(level, index)]
        self.lookups += 1
        if level == 0:
            found = self.db.scalar(select(LedgerEntry.leaf_hash).where(LedgerEntry.index == index))
        else:
            found = self.db.scalar(
                select(LedgerNode.hash).where(LedgerNode.level == level, LedgerNode.index == index)
            )
        if found is None:
            raise LookupError(f"no stored subtree at level {level}, index {index}")
        if self._memo is not None:
            self._memo[(level, index)] = bytes(found)
        return bytes(found)

    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else root_hash(size, self.subtree)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.subtree)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(old_size, new_size, self.subtree)


# -- pseudonyms ---------------------------------------------------------------------------------
# Entries name people only by random pseudonyms. Events between a person and a vendor app carry
# the pseudonym of that (person, app) pair, so what one vendor receives (receipts, proofs, the
# entry bytes in them) never equals what another receives about the same person. The person-wide
# pseudonym names events that concern the person alone (their erasure) and, in entries written
# before pairs had their own, every event of the person.
_BINDING_TABLE = LedgerSubject.__tablename__
_VENDOR_BINDING_TABLE = LedgerVendorSubject.__tablename__


def _new_pseudonym() -> str:
    return "p-" + secrets.token_hex(16)


def pseudonym_for(db: Session, rt: Runtime, owner_id: uuid.UUID) -> str:
    """The individual's person-wide ledger pseudonym, created on first use (random)."""
    existing = existing_pseudonym(db, rt, owner_id)
    if existing is not None:
        return existing
    keys = KeyStore(db, rt.keys)
    pseudonym = _new_pseudonym()
    row = LedgerSubject(id=uuid.uuid4(), owner_id=owner_id, pseudonym_ct=b"")
    row.pseudonym_ct = keys.encrypt(
        Binding(owner_id, _BINDING_TABLE, "pseudonym_ct", row.id), pseudonym.encode()
    )
    db.add(row)
    db.flush()
    return pseudonym


def existing_pseudonym(db: Session, rt: Runtime, owner_id: uuid.UUID) -> str | None:
    """The individual's person-wide ledger pseudonym if they have one (never creates it: safe
    in a read-only transaction)."""
    row = db.scalars(select(LedgerSubject).where(LedgerSubject.owner_id == owner_id)).one_or_none()
    if row is None:
        return None
    binding = Binding(owner_id, _BINDING_TABLE, "pseudonym_ct", row.id)
    return KeyStore(db, rt.keys).decrypt(binding, row.pseudonym_ct).decode()


def _open_vendor_subject(keys: KeyStore, row: LedgerVendorSubject) -> str:
    binding = Binding(row.owner_id, _VENDOR_BINDING_TABLE, "pseudonym_ct", row.id)
    return keys.decrypt(binding, row.pseudonym_ct).decode()


def vendor_pseudonym_for(db: Session, rt: Runtime, owner_id: uuid.UUID, app_id: uuid.UUID) -> str:
    """The pseudonym of events between the individual and one app, created on first use
    (random, not derived: nothing but the encrypted link row ties it to the person)."""
    keys = KeyStore(db, rt.keys)
    for _attempt in range(2):
        row = db.scalars(
            select(LedgerVendorSubject).where(
                LedgerVendorSubject.owner_id == owner_id, LedgerVendorSubject.app_id == app_id
            )
        ).one_or_none()
        if row is not None:
            return _open_vendor_subject(keys, row)
        pseudonym = _new_pseudonym()
        row = LedgerVendorSubject(
            id=uuid.uuid4(), owner_id=owner_id, app_id=app_id, pseudonym_ct=b""
        )
        row.pseudonym_ct = keys.encrypt(
            Binding(owner_id, _VENDOR_BINDING_TABLE, "pseudonym_ct", row.id), pseudonym.encode()
        )
        try:
            with db.begin_nested():
                db.add(row)
        except IntegrityError:
            continue  # a concurrent transaction created the pair's pseudonym first: use it
        return pseudonym
    raise RuntimeError("the ledger pseudonym of this pair could not be created")


def pair_subjects(db: Session, rt: Runtime, owner_id: uuid.UUID, app_id: uuid.UUID) -> list[str]:
    """Every subject the events between the individual and one app may carry: the pair's own
    pseudonym and, for entries written before pairs had one, the person-wide pseudonym. Never
    creates either (safe in a read-only transaction)."""
    found = []
    row = db.scalars(
        select(LedgerVendorSubject).where(
            LedgerVendorSubject.owner_id == owner_id, LedgerVendorSubject.app_id == app_id
        )
    ).one_or_none()
    if row is not None:
        found.append(_open_vendor_subject(KeyStore(db, rt.keys), row))
    legacy = existing_pseudonym(db, rt, owner_id)
    if legacy is not None:
        found.append(legacy)
    return found


def all_subjects(db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[str]:
    """Every subject under which the individual's events were recorded (for their export)."""
    keys = KeyStore(db, rt.keys)
    found = [
        _open_vendor_subject(keys, row)
        for row in db.scalars(
            select(LedgerVendorSubject).where(LedgerVendorSubject.owner_id == owner_id)
        )
    ]
    legacy = existing_pseudonym(db, rt, owner_id)
    if legacy is not None:
        found.append(legacy)
    return found
