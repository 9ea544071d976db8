"""The stored ledger: appends in order, nodes that give O(log n) proofs, signed checkpoints."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.ledger.checkpoint import verify_signed_checkpoint
from consent.ledger.merkle import (
    InMemoryTree,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from consent.ledger.models import LedgerEntry
from consent.ledger.service import create_checkpoint, public_key_text
from consent.ledger.store import StoredTree
from tests.sequencer import append
from vault.runtime import Runtime


def _append(db: Session, n: int) -> None:
    for i in range(n):
        append(
            db,
            {
                "event_type": "grant.given",
                "vendor_id": None,
                "subject": f"p-{i}",
                "fields": ["email"],
                "purpose": "test",
                "agreement_id": "service-only",
            },
        )


def _leaves(db: Session) -> list[bytes]:
    return [bytes(h) for h in db.scalars(select(LedgerEntry.leaf_hash).order_by(LedgerEntry.index))]


def test_appends_take_consecutive_indexes_and_hash_the_stored_entry(db: Session) -> None:
    start = StoredTree(db).size()
    _append(db, 5)
    rows = db.scalars(
        select(LedgerEntry).where(LedgerEntry.index >= start).order_by(LedgerEntry.index)
    ).all()
    assert [r.index for r in rows] == list(range(start, start + 5))
    assert all(bytes(r.leaf_hash) == leaf_hash(bytes(r.entry)) for r in rows)
    assert b'"index":' + str(start).encode() in bytes(rows[0].entry)


def test_stored_root_and_proofs_match_an_in_memory_tree(db: Session) -> None:
    _append(db, 37)
    leaves = _leaves(db)
    tree, memory = StoredTree(db), InMemoryTree(leaves)
    size = len(leaves)
    assert tree.root(size) == root_from_leaf_hashes(leaves)
    for index in (0, 1, size // 2, size - 1):
        proof = tree.inclusion(index, size)
        assert proof == memory.inclusion_proof(index, size)
        assert verify_inclusion(leaves[index], index, size, proof, tree.root(size))
    for old in (1, 8, size - 1):
        proof = tree.consistency(old, size)
        assert verify_consistency(old, size, tree.root(old), tree.root(size), proof)


def test_a_proof_reads_logarithmically_many_stored_nodes(db: Session) -> None:
    _append(db, 300)
    tree = StoredTree(db)
    size = tree.size()
    tree.lookups = 0
    tree.inclusion(size // 3, size)
    assert tree.lookups <= 2 * size.bit_length() + 2


def test_checkpoints_are_signed_batched_and_verifiable(db: Session, rt: Runtime) -> None:
    _append(db, 3)
    first = create_checkpoint(db, rt)
    assert first is not None
    assert create_checkpoint(db, rt) is None  # nothing new to sign
    checkpoint = verify_signed_checkpoint(first.note, public_key_text(rt))
    assert checkpoint.size == first.size == StoredTree(db).size()
    assert checkpoint.root == StoredTree(db).root(first.size)
    _append(db, 2)
    second = create_checkpoint(db, rt)
    assert second is not None and second.size == first.size + 2
    count = db.scalar(select(func.count()).select_from(LedgerEntry))
    assert count == second.size


def test_memoized_proofs_of_neighbouring_entries_share_their_reads(db: Session) -> None:
    _append(db, 200)
    size = StoredTree(db).size()
    plain, memo = StoredTree(db), StoredTree(db, memoize=True)
    for index in range(size - 50, size):
        assert memo.inclusion(index, size) == plain.inclusion(index, size)
    assert memo.lookups < plain.lookups / 3


def test_proofs_read_every_hash_they_need_in_one_query(db: Session) -> None:
    _append(db, 300)
    leaves = _leaves(db)
    memory = InMemoryTree(leaves)
    for size in (1, 2, 7, 128, 255, 300):
        root = root_from_leaf_hashes(leaves[:size])
        for index in {0, size // 3, size - 1}:
            tree = StoredTree(db)
            got_root, proof = tree.prove_inclusion(index, size)
            assert tree.lookups == 1  # one round trip
            assert got_root == root and proof == memory.inclusion_proof(index, size)
            assert verify_inclusion(leaves[index], index, size, proof, root)
        for old in {1, size // 2, size}:
            if old == 0:
                continue
            tree = StoredTree(db)
            got_root, proof = tree.prove_consistency(old, size)
            assert tree.lookups <= 1
            assert got_root == root
            assert verify_consistency(old, size, root_from_leaf_hashes(leaves[:old]), root, proof)


def test_a_batch_stores_every_column_as_recorded_whatever_the_characters(db: Session) -> None:
    # On PostgreSQL the sequencer moves the columns from pending row to entry inside the
    # server and sends the entries as binary arrays: tabs, newlines, backslashes and non-ASCII
    # must come back as they went in, and missing values as NULL.
    import uuid
    from datetime import UTC, datetime

    from consent.ledger.store import integrate, record

    vendor = uuid.uuid4()
    when = datetime(2026, 12, 7, 4, 30, 1, 123456, tzinfo=UTC)
    subjects = ["p-tab\there", "p-line\nbreak\r", "p-back\\slash\\N", "p-ünï €", None]
    pending = [
        record(
            db,
            {
                "event_type": "grant.given",
                "vendor_id": str(vendor) if i % 2 else None,
                "subject": s,
                "purpose": "a\tb\\c\nd",
            },
            now=when,
        )
        for i, s in enumerate(subjects)
    ]
    done = integrate(db)
    db.expire_all()
    rows = [db.get_one(LedgerEntry, done.indexes[p.id]) for p in pending]
    assert [r.subject for r in rows] == subjects
    assert [r.vendor_id for r in rows] == [vendor if i % 2 else None for i in range(len(rows))]
    assert {r.occurred_at for r in rows} == {when}
    for row in rows:
        assert row.leaf_hash == leaf_hash(row.entry)
        assert b'"purpose":"a\\tb\\\\c\\nd"' in row.entry


def _entries_as_recorded(db: Session, events: list[dict[str, object]]) -> None:
    """Record ``events``, integrate them, and check each entry is the recorded event's
    canonical JSON with its index, and hashed as stored."""
    import json

    from consent.ledger.merkle import canonical_json
    from consent.ledger.models import LedgerPending
    from consent.ledger.store import integrate, record

    pending = [record(db, event) for event in events]
    recorded = {
        p.id: bytes(db.get_one(LedgerPending, p.id).event) for p in pending
    }  # what the audit API and receipts show while pending
    for p, event in zip(pending, events, strict=True):
        assert json.loads(recorded[p.id]) == {**event, "time": json.loads(recorded[p.id])["time"]}
        assert recorded[p.id] == canonical_json(json.loads(recorded[p.id]))
    done = integrate(db)
    db.expire_all()
    for p in pending:
        entry = db.get_one(LedgerEntry, done.indexes[p.id])
        expected = {**json.loads(recorded[p.id]), "index": done.indexes[p.id]}
        assert entry.entry == canonical_json(expected)
        assert entry.leaf_hash == leaf_hash(entry.entry)


def test_an_entry_is_the_recorded_event_with_its_index_whatever_its_keys(db: Session) -> None:
    # The index goes between the keys that sort before "index" and those after, and nothing
    # inside a value (a nested "index", a string that looks like a member) may move it.
    _append(db, 3)  # a tree that is not empty
    tricky = [
        {"event_type": "grant.given", "i": 1, "in": [1, {"index": 2}], "index0": None},
        {"event_type": "grant.given", "indew": ',"index":0,', "indexa": {"index": "}"}},
        {"event_type": "vendor.registered", "vendor_id": None, "ind": "ü€", "j": {"a": [1, 2]}},
        {"event_type": "subject.erased", "subject": "p-x"},
    ]
    _entries_as_recorded(db, tricky * 3)


def test_events_recorded_without_an_index_offset_are_integrated_the_same(db: Session) -> None:
    # Rows written before migration 0021 (or by a process still running the older code) have
    # no index_at: the sequencer parses them and gives the same entries.
    import json

    from sqlalchemy import update

    from consent.ledger.merkle import canonical_json
    from consent.ledger.models import LedgerPending
    from consent.ledger.store import integrate, record

    events = [
        {"event_type": "grant.given", "subject": f"p-{i}", "fields": ["email"], "k": i}
        for i in range(4)
    ]
    pending = [record(db, event) for event in events]
    db.execute(update(LedgerPending).where(LedgerPending.id == pending[1].id).values(index_at=None))
    db.execute(update(LedgerPending).where(LedgerPending.id == pending[2].id).values(index_at=9999))
    recorded = {p.id: bytes(db.get_one(LedgerPending, p.id).event) for p in pending}
    done = integrate(db)
    db.expire_all()
    for p in pending:
        entry = db.get_one(LedgerEntry, done.indexes[p.id]).entry
        assert entry == canonical_json({**json.loads(recorded[p.id]), "index": done.indexes[p.id]})
