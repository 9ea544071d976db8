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
from consent.ledger.models import LedgerEntry, LedgerHead, LedgerNode, LedgerSubject
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
_BINDING_TABLE = LedgerSubject.__tablename__


def pseudonym_for(db: Session, rt: Runtime, owner_id: uuid.UUID) -> str:
    """The individual's ledger pseudonym, created on first use (random, not derived)."""
    existing = existing_pseudonym(db, rt, owner_id)
    if existing is not None:
        return existing
    keys = KeyStore(db, rt.keys)
    pseudonym = "p-" + secrets.token_hex(16)
    row = LedgerSubject(id=uuid.uuid4(), owner_id=owner_id, pseudonym_ct=b"")
    row.pseudonym_ct = keys.encrypt(
        Binding(owner_id, _BINDING_TABLE, "pseudonym_ct", row.id), pseudonym.encode()
    )
    db.add(row)
    db.flush()
    return pseudonym


def existing_pseudonym(db: Session, rt: Runtime, owner_id: uuid.UUID) -> str | None:
    """The individual's ledger pseudonym if they have one (never creates it: safe in a
    read-only transaction)."""
    row = db.scalars(select(LedgerSubject).where(LedgerSubject.owner_id == owner_id)).one_or_none()
    if row is None:
        return None
    binding = Binding(owner_id, _BINDING_TABLE, "pseudonym_ct", row.id)
    return KeyStore(db, rt.keys).decrypt(binding, row.pseudonym_ct).decode()
