"""Concurrent recording and sequencing on a real, committed database (SQLite file or
PostgreSQL).

Writer threads each commit a change together with its consent event, at the same time, while
two sequencers integrate pending events at the same time too. Every committed event must end
up in the tree exactly once, at an index of a gap-free run 0 .. n - 1; an event whose
transaction rolled back must never appear; and the stored nodes and compact range must
describe exactly the tree of the stored leaves.
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from consent.ledger.merkle import InMemoryTree, leaf_hash, root_from_frontier, root_from_leaf_hashes
from consent.ledger.models import LedgerEntry, LedgerHead, LedgerNode, LedgerPending
from consent.ledger.store import HEAD_ID, StoredTree, integrate, record
from consent.vendors.models import VendorApp
from tests.consent.factories import make_app
from vault.runtime import Runtime

WRITERS = 6
EACH = 20


def event(subject: str) -> dict[str, object]:
    return {
        "event_type": "grant.given",
        "vendor_id": None,
        "subject": subject,
        "fields": ["email"],
        "purpose": "Deliver your orders to your door.",
        "agreement_id": "service-only",
        "consent_text_hash": None,
    }


def run_writers(
    rt: Runtime, app_id: uuid.UUID, *, roll_back_every: int = 0, sequencers: int = 2
) -> tuple[set[str], set[str]]:
    """WRITERS threads, released together, each committing EACH changes (the app's purpose
    rewritten) with one consent event apiece, while ``sequencers`` threads integrate pending
    events over and over until the writers are done. With ``roll_back_every``, every such
    transaction rolls back after its change and event. Returns the subjects of the committed
    events and of the rolled-back ones."""
    barrier = threading.Barrier(WRITERS + sequencers)
    writing = threading.Event()
    writing.set()
    lock = threading.Lock()
    committed: set[str] = set()
    rolled_back: set[str] = set()

    def writer(thread: int) -> None:
        barrier.wait(timeout=30)
        for n in range(EACH):
            subject = f"p-writer{thread}-{n:03d}"
            with rt.sessions() as session, session.begin():
                app = session.get_one(VendorApp, app_id)
                app.purpose = f"Purpose number {n} of writer {thread}."
                record(session, event(subject))
                if roll_back_every and n % roll_back_every == roll_back_every - 1:
                    session.rollback()
                    with lock:
                        rolled_back.add(subject)
                    continue
            with lock:
                committed.add(subject)

    def sequencer() -> None:
        barrier.wait(timeout=30)
        while writing.is_set():
            with rt.sessions() as session, session.begin():
                integrate(session, batch=7)  # small batches: many interleavings

    with ThreadPoolExecutor(WRITERS + sequencers) as pool:
        sequencing = [pool.submit(sequencer) for _ in range(sequencers)]
        writes = [pool.submit(writer, t) for t in range(WRITERS)]
        for done in writes:
            done.result()
        writing.clear()
        for done in sequencing:
            done.result()
    with rt.sessions() as session, session.begin():
        integrate(session)  # what was committed after the sequencers' last look
    return committed, rolled_back


def make_committed_app(rt: Runtime) -> uuid.UUID:
    with rt.sessions() as session:
        return make_app(session).id  # committed; records no ledger event


def check_tree(rt: Runtime, committed: set[str]) -> list[str]:
    """Indexes exactly 0 .. n - 1, every stored hash agrees with the leaves, nothing left
    pending; the subjects of the grant events in index order."""
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerPending)) == 0
        rows = session.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
        expected = len(rows)
        assert [r.index for r in rows] == list(range(expected))
        leaves = [bytes(r.leaf_hash) for r in rows]
        assert leaves == [leaf_hash(bytes(r.entry)) for r in rows]
        assert [json.loads(r.entry)["index"] for r in rows] == list(range(expected))
        subjects = [json.loads(r.entry)["subject"] for r in rows if r.event_type == "grant.given"]
        assert len(subjects) == len(set(subjects)) == len(committed)  # each exactly once
        assert set(subjects) == committed

        tree, memory = StoredTree(session), InMemoryTree(leaves)
        assert tree.size() == expected
        assert tree.root(expected) == root_from_leaf_hashes(leaves) == memory.root()
        head = session.get(LedgerHead, HEAD_ID)
        assert head is not None and head.size == expected
        assert root_from_frontier([bytes.fromhex(h) for h in head.frontier]) == memory.root()
        nodes = session.execute(select(LedgerNode.level, LedgerNode.index, LedgerNode.hash)).all()
        # Every completed perfect subtree is stored once, with the hash of its leaves.
        assert len(nodes) == expected - bin(expected).count("1")
        for level, index, digest in nodes:
            assert bytes(digest) == memory.subtree(level, index), (level, index)
        return subjects


def test_concurrent_writers_and_two_sequencers_give_every_event_one_index(
    committed_rt: Runtime,
) -> None:
    app_id = make_committed_app(committed_rt)
    committed, _ = run_writers(committed_rt, app_id)

    assert len(committed) == WRITERS * EACH
    subjects = check_tree(committed_rt, committed)
    # Each writer's events were committed one after another, so they are integrated in order.
    for thread in range(WRITERS):
        mine = [s for s in subjects if s.startswith(f"p-writer{thread}-")]
        assert mine == sorted(mine)


def test_rolled_back_events_never_appear_and_leave_no_gap(committed_rt: Runtime) -> None:
    app_id = make_committed_app(committed_rt)
    committed, rolled_back = run_writers(committed_rt, app_id, roll_back_every=4)

    assert len(rolled_back) == WRITERS * (EACH // 4)
    subjects = check_tree(committed_rt, committed)
    assert not rolled_back & set(subjects)


def test_recording_waits_for_no_sequencer(committed_rt: Runtime) -> None:
    """A change with its event commits while a sequencer holds the head lock, and the event
    is integrated by the next sequencer run. (PostgreSQL: SQLite lets one writer at a time.)"""
    if committed_rt.engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises every writing transaction")
    app_id = make_committed_app(committed_rt)
    with committed_rt.sessions() as holder, holder.begin():
        with committed_rt.sessions() as first, first.begin():
            record(first, event("p-before"))
        integrate(holder)  # holds the head lock until this block ends
        with committed_rt.sessions() as writer, writer.begin():
            writer.get_one(VendorApp, app_id).purpose = "Changed while the sequencer ran."
            record(writer, event("p-during"))
    with committed_rt.sessions() as reader:
        pending = reader.scalars(select(LedgerPending.subject)).all()
        assert pending == ["p-during"]  # the sequencer integrated only what it saw
    with committed_rt.sessions() as session, session.begin():
        assert integrate(session).count == 1
    check_tree(committed_rt, {"p-before", "p-during"})
