"""Recording consent events, sequencing them into the tree, and serving proofs.

Recording (:func:`record`) runs in the transaction of the change it records and only inserts
a row into ``ledger_pending``: no service-wide lock, so any number of changes commit at once.
The sequencer (:func:`integrate`, run by ``vrm worker`` every fraction of a second and by
``vrm ledger sequence``) takes the head row's lock (``SELECT ... FOR UPDATE`` on PostgreSQL;
SQLite's ``BEGIN IMMEDIATE`` already serialises writers), so two sequencers never interleave,
and moves the pending events it sees into the tree in batches: each gets the next index in
integration order (gap-free), its entry and every perfect subtree it completes are stored, the
compact range in the head advances, and the pending rows are deleted, all in one transaction.
An event whose transaction rolled back was never visible, so it never gets an index.

Proofs read every hash they need in one query (:meth:`StoredTree.prefetch`): the node
coordinates depend on the index and sizes only, so they are computed first.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Integer,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.engine import Connection
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
    LedgerPending,
    LedgerSubject,
    LedgerVendorSubject,
)
from vault.base import utcnow
from vault.crypto import Binding
from vault.keystore import KeyStore
from vault.runtime import Runtime

HEAD_ID = 1
BATCH = 5000
"""The most pending events one sequencer transaction integrates (it loops for more)."""
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
class Pending:
    """A recorded event waiting for the sequencer: its ``ledger_pending`` id."""

    id: int


@dataclass(frozen=True, slots=True)
class Integrated:
    """What one sequencer run did: ``count`` events integrated, the tree is now ``size``
    entries, and ``indexes`` maps each integrated pending id to its ledger index."""

    count: int
    size: int
    indexes: dict[int, int]


def lock_head(db: Session) -> LedgerHead:
    head = db.scalars(
        select(LedgerHead)
        .where(LedgerHead.id == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if head is None:  # created by the migration; recreated if someone deleted it
        head = LedgerHead(id=HEAD_ID, size=0, frontier=[])
        db.add(head)
        db.flush()
    return head


def record(
    db: Session | Connection, event: dict[str, Any], *, now: datetime | None = None
) -> Pending:
    """Record one event in the caller's transaction, pending until the sequencer gives it an
    index. The entry gains ``time`` now and ``index`` when it is integrated."""
    event_type = event.get("event_type")
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown ledger event {event_type!r}")
    if "index" in event:
        raise ValueError("the sequencer gives an event its index")
    now = now or utcnow()
    data, index_at = _canonical_split({**event, "time": now.isoformat().replace("+00:00", "Z")})
    vendor = event.get("vendor_id")
    pending_id = db.execute(
        insert(LedgerPending)
        .values(
            event=data,
            event_type=event_type,
            vendor_id=uuid.UUID(vendor) if vendor else None,
            subject=event.get("subject"),
            occurred_at=now,
            index_at=index_at,
        )
        .returning(LedgerPending.id)
    ).scalar_one()
    return Pending(pending_id)


def _canonical_split(event: dict[str, Any]) -> tuple[bytes, int]:
    """The event's canonical JSON (it has no ``index``), and the byte offset where
    ``"index":N`` goes in it: after the members whose keys sort before ``"index"``. The two
    halves are serialised apart and joined, which is the canonical form of the whole (keys
    sorted, no spaces)."""
    before = canonical_json({k: v for k, v in event.items() if k < "index"})
    after = canonical_json({k: v for k, v in event.items() if k > "index"})
    joint = b"," if len(before) > 2 and len(after) > 2 else b""
    return before[:-1] + joint + after[1:], len(before) - 1


def _with_index(event: bytes, index_at: int | None, index: int) -> bytes:
    """The entry for a pending event: its canonical JSON with ``"index":index``, the same
    bytes as ``canonical_json({**json.loads(event), "index": index})``. Spliced in at
    ``index_at`` when the event has one that falls between two members (or after the opening
    brace); otherwise parsed and re-serialised."""
    if index_at is not None and event[:1] == b"{" and event[-1:] == b"}":
        if 1 < index_at < len(event) and event[index_at] in b",}":
            return event[:index_at] + b',"index":%d' % index + event[index_at:]
        if index_at == 1 and event[1] in b'"}':
            comma = b"," if event[1] == 0x22 else b""  # members follow
            return b'{"index":%d' % index + comma + event[1:]
    return canonical_json({**json.loads(event), "index": index})


def _take_pending(db: Session, limit: int) -> list[Any]:
    """Delete the ``limit`` oldest pending events the transaction sees and return them, oldest
    first: one statement (``DELETE ... RETURNING``), so exactly the rows returned are the rows
    deleted. Under the head lock no other sequencer takes any."""
    oldest = select(LedgerPending.id).order_by(LedgerPending.id).limit(limit)
    deleted = db.execute(
        delete(LedgerPending)
        .where(LedgerPending.id.in_(oldest))
        .returning(
            LedgerPending.id,
            LedgerPending.event,
            LedgerPending.event_type,
            LedgerPending.vendor_id,
            LedgerPending.subject,
            LedgerPending.occurred_at,
            LedgerPending.index_at,
        )
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(deleted, key=lambda row: row[0])  # RETURNING promises no order


def _append(
    events: list[tuple[int, bytes, int | None]], size: int, frontier: list[bytes]
) -> tuple[list[tuple[int, bytes, bytes]], list[tuple[int, int, bytes]]]:
    """Give each ``(pending id, event, index_at)`` the next index, in order: its entry (the
    event's canonical JSON with its ``index``) and leaf hash, and the hash of every perfect
    subtree it completes.
    ``frontier`` (the roots of the perfect subtrees that make up the tree, largest first) is
    updated in place. Returns ``(index, entry, leaf hash)`` per event and the new nodes as
    ``(level, index, hash)``."""
    entries: list[tuple[int, bytes, bytes]] = []
    nodes: list[tuple[int, int, bytes]] = []
    for index, (_, event, index_at) in enumerate(events, start=size):
        data = _with_index(event, index_at, index)
        digest = leaf_hash(data)
        entries.append((index, data, digest))
        # Appending a leaf merges equal-sized subtrees from the right, like binary carry.
        current, level, position = digest, 0, index
        while position & 1:
            current = node_hash(frontier.pop(), current)
            level += 1
            position >>= 1
            nodes.append((level, position, current))
        frontier.append(current)
    return entries, nodes


def _integrate_batch(db: Session, head: LedgerHead, limit: int) -> dict[int, int]:
    connection = db.connection()
    driver: Any = connection.connection.driver_connection
    if connection.dialect.name == "postgresql" and hasattr(driver, "cursor"):
        return _integrate_batch_postgresql(db, driver, head, limit)
    rows = _take_pending(db, limit)
    if not rows:
        return {}
    frontier = [bytes.fromhex(h) for h in head.frontier]
    entries, nodes = _append([(row[0], row[1], row[6]) for row in rows], head.size, frontier)
    connection.execute(
        insert(LedgerEntry),
        [
            {
                "index": index, "entry": data, "leaf_hash": digest, "event_type": row[2],
                "vendor_id": row[3], "subject": row[4], "occurred_at": row[5],
            }
            for (index, data, digest), row in zip(entries, rows, strict=True)
        ],
    )  # fmt: skip
    if nodes:
        connection.execute(
            insert(LedgerNode), [{"level": lv, "index": i, "hash": h} for lv, i, h in nodes]
        )
    head.frontier = [h.hex() for h in frontier]
    head.size += len(entries)
    db.flush()
    return {row[0]: index for (index, _, _), row in zip(entries, rows, strict=True)}


_READ_PENDING = "SELECT id, event, index_at FROM ledger_pending ORDER BY id LIMIT %s"
_MOVE_PENDING = """\
WITH taken AS (
    DELETE FROM ledger_pending WHERE id = ANY(%(ids)b)
    RETURNING id, event_type, vendor_id, subject, occurred_at
)
INSERT INTO ledger_entries (index, entry, leaf_hash, event_type, vendor_id, subject, occurred_at)
SELECT new.index, new.entry, new.leaf_hash,
       taken.event_type, taken.vendor_id, taken.subject, taken.occurred_at
FROM taken
JOIN unnest(%(ids)b::bigint[], %(indexes)b::bigint[], %(entries)b::bytea[], %(leaves)b::bytea[])
     AS new (id, index, entry, leaf_hash) ON new.id = taken.id
"""
_INSERT_NODES = """\
INSERT INTO ledger_nodes (level, index, hash)
SELECT * FROM unnest(%b::integer[], %b::bigint[], %b::bytea[])
"""


def _integrate_batch_postgresql(
    db: Session, driver: Any, head: LedgerHead, limit: int
) -> dict[int, int]:
    """The batch on PostgreSQL, through psycopg directly and in binary: the oldest ``limit``
    pending ids, events and ``index_at`` are read (nothing else: the other columns go from the
    pending row to the entry inside the server), each entry and its hashes are computed here,
    then one statement deletes the pending rows and inserts their entries from arrays of the
    computed values, and one more inserts the new nodes. Under the head lock no other
    sequencer reads or deletes pending rows, so the rows deleted are the rows read: the count
    is checked."""
    with driver.cursor(binary=True) as cursor:
        events = cursor.execute(_READ_PENDING, (limit,)).fetchall()
        if not events:
            return {}
        frontier = [bytes.fromhex(h) for h in head.frontier]
        entries, nodes = _append(events, head.size, frontier)
        ids = [pending_id for pending_id, _, _ in events]
        cursor.execute(
            _MOVE_PENDING,
            {
                "ids": ids,
                "indexes": [index for index, _, _ in entries],
                "entries": [data for _, data, _ in entries],
                "leaves": [digest for _, _, digest in entries],
            },
        )
        if cursor.rowcount != len(events):
            raise RuntimeError(
                f"{len(events)} pending events read, {cursor.rowcount} moved: another "
                "process changed ledger_pending under the sequencer's lock"
            )
        if nodes:
            cursor.execute(
                _INSERT_NODES,
                (
                    [level for level, _, _ in nodes],
                    [index for _, index, _ in nodes],
                    [digest for _, _, digest in nodes],
                ),
            )
    head.frontier = [h.hex() for h in frontier]
    head.size += len(entries)
    db.flush()
    return {pending_id: entry[0] for pending_id, entry in zip(ids, entries, strict=True)}


def pending_events(db: Session, limit: int) -> tuple[int, list[LedgerPending]]:
    """How many events are pending, and the oldest ``limit`` of them."""
    count = db.scalar(select(func.count()).select_from(LedgerPending)) or 0
    rows = db.scalars(select(LedgerPending).order_by(LedgerPending.id).limit(limit)).all()
    return int(count), list(rows)


def has_pending(db: Session) -> bool:
    return db.scalar(select(LedgerPending.id).limit(1)) is not None


def integrate(db: Session, *, limit: int | None = None, batch: int = BATCH) -> Integrated:
    """The sequencer: integrate pending events into the tree, in the caller's transaction.

    Cheap when nothing is pending (one indexed read, no lock). Otherwise takes the head lock,
    so that two sequencers (or a sequencer and the checkpoint signer) never interleave, and
    integrates up to ``limit`` events (all it sees when None), ``batch`` per statement.
    """
    if not has_pending(db):
        head = db.get(LedgerHead, HEAD_ID)
        return Integrated(0, head.size if head else 0, {})
    head = lock_head(db)
    indexes: dict[int, int] = {}
    while limit is None or len(indexes) < limit:
        step = batch if limit is None else min(batch, limit - len(indexes))
        done = _integrate_batch(db, head, step)
        indexes.update(done)
        if len(done) < step:
            break
    return Integrated(len(indexes), head.size, indexes)


class StoredTree:
    """Perfect-subtree hashes read from storage, for proofs at any size up to the head."""

    def __init__(self, db: Session, *, memoize: bool = False) -> None:
        """``memoize`` keeps hashes read for later proofs in this object's life (stored
        subtrees never change): many proofs over neighbouring entries then share their reads.
        Hashes fetched with :meth:`prefetch` are kept for this object's life either way."""
        self.db = db
        self.lookups = 0
        self._memo: dict[tuple[int, int], bytes] | None = {} if memoize else None
        self._fetched: dict[tuple[int, int], bytes] = {}

    def size(self) -> int:
        head = self.db.get(LedgerHead, HEAD_ID)
        return head.size if head else 0

    def prefetch(self, coordinates: Iterable[tuple[int, int]]) -> None:
        """Read the hashes of these ``(level, index)`` subtrees in one query (one round
        trip: leaves from the entries, the rest from the nodes). Missing ones are left out,
        so that the lookup that needs one raises ``LookupError`` as before."""
        wanted = {c for c in coordinates if c not in self._fetched}
        if not wanted:
            return
        leaves = sorted(i for level, i in wanted if level == 0)
        inner = sorted(c for c in wanted if c[0] > 0)
        parts = []
        if leaves:
            parts.append(
                select(literal(0).label("level"), LedgerEntry.index, LedgerEntry.leaf_hash).where(
                    LedgerEntry.index.in_(leaves)
                )
            )
        if inner and self.db.get_bind().dialect.name == "postgresql":
            # Two array parameters joined as a table: one plan whatever the count, a
            # primary-key lookup per hash (a long OR list costs more to plan than to run).
            wanted_nodes = (
                select(
                    func.unnest(literal([c[0] for c in inner], ARRAY(Integer))).label("level"),
                    func.unnest(literal([c[1] for c in inner], ARRAY(BigInteger))).label("index"),
                )
            ).subquery()
            parts.append(
                select(LedgerNode.level, LedgerNode.index, LedgerNode.hash).join(
                    wanted_nodes,
                    (LedgerNode.level == wanted_nodes.c.level)
                    & (LedgerNode.index == wanted_nodes.c.index),
                )
            )
        elif inner:
            parts.append(
                select(LedgerNode.level, LedgerNode.index, LedgerNode.hash).where(
                    tuple_(LedgerNode.level, LedgerNode.index).in_(inner)
                )
            )
        query = parts[0] if len(parts) == 1 else union_all(*parts)
        self.lookups += 1
        for level, index, digest in self.db.execute(query):
            self._fetched[(int(level), int(index))] = bytes(digest)

    def subtree(self, level: int, index: int) -> bytes:
        found = self._fetched.get((level, index))
        if found is not None:
            return found
        if self._memo is not None and (level, index) in self._memo:
            return self._memo[(level, index)]
        self.lookups += 1
        if level == 0:
            value = self.db.scalar(select(LedgerEntry.leaf_hash).where(LedgerEntry.index == index))
        else:
            value = self.db.scalar(
                select(LedgerNode.hash).where(LedgerNode.level == level, LedgerNode.index == index)
            )
        if value is None:
            raise LookupError(f"no stored subtree at level {level}, index {index}")
        if self._memo is not None:
            self._memo[(level, index)] = bytes(value)
        return bytes(value)

    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else root_hash(size, self.subtree)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.subtree)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return consistency_proof(old_size, new_size, self.subtree)

    def prove_inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """The root of ``size`` and the inclusion proof of ``index``, every hash read in one
        query."""
        self.prefetch(inclusion_needs(index, size))
        return self.root(size), self.inclusion(index, size)

    def prove_consistency(self, old_size: int, new_size: int) -> tuple[bytes, list[bytes]]:
        """The root of ``new_size`` and the consistency proof from ``old_size``, every hash
        read in one query."""
        self.prefetch(consistency_needs(old_size, new_size))
        return self.root(new_size), self.consistency(old_size, new_size)


def inclusion_needs(index: int, size: int) -> set[tuple[int, int]]:
    """The ``(level, index)`` subtrees whose hashes the root of ``size`` and the inclusion
    proof of ``index`` are made of."""
    return _needed(lambda sub: (root_hash(size, sub), inclusion_proof(index, size, sub)))


def consistency_needs(old_size: int, new_size: int) -> set[tuple[int, int]]:
    """The subtrees the root of ``new_size`` and the consistency proof from ``old_size`` are
    made of."""
    return _needed(
        lambda sub: (root_hash(new_size, sub), consistency_proof(old_size, new_size, sub))
    )


def _lookup(hashes: dict[tuple[int, int], bytes]) -> Any:
    def subtree(level: int, index: int) -> bytes:
        found = hashes.get((level, index))
        if found is None:
            raise LookupError(f"no stored subtree at level {level}, index {index}")
        return found

    return subtree


def inclusion_from(
    hashes: dict[tuple[int, int], bytes], index: int, size: int
) -> tuple[bytes, list[bytes]]:
    """:meth:`StoredTree.prove_inclusion` from hashes read already (those
    :func:`inclusion_needs` names); ``LookupError`` when one is missing."""
    subtree = _lookup(hashes)
    return root_hash(size, subtree), inclusion_proof(index, size, subtree)


def consistency_from(
    hashes: dict[tuple[int, int], bytes], old_size: int, new_size: int
) -> tuple[bytes, list[bytes]]:
    """:meth:`StoredTree.prove_consistency` from hashes read already."""
    subtree = _lookup(hashes)
    return root_hash(new_size, subtree), consistency_proof(old_size, new_size, subtree)


_PLACEHOLDER = bytes(32)


def _needed(compute: Any) -> set[tuple[int, int]]:
    """The subtree coordinates a computation looks up: it is run once on placeholder hashes
    (which subtrees a root or proof needs depends on the index and sizes alone)."""
    wanted: set[tuple[int, int]] = set()

    def note(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return _PLACEHOLDER

    compute(note)
    return wanted


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
