"""Concurrent appends on a real, committed database (SQLite file or PostgreSQL).

Threads append in their own transactions at the same time. The head row's lock must hand out
every index once, in commit order, with no gap (a rolled-back append gives its index back),
and the stored nodes and compact range must describe exactly the tree of the stored leaves.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from consent.ledger.merkle import InMemoryTree, leaf_hash, root_from_frontier, root_from_leaf_hashes
from consent.ledger.models import LedgerEntry, LedgerHead, LedgerNode
from consent.ledger.store import HEAD_ID, StoredTree, append
from vault.runtime import Runtime

THREADS = 4
EACH = 25


def run_threads(rt: Runtime, *, roll_back_every: int = 0) -> dict[int, list[int]]:
    """THREADS threads, released together, each appending EACH events one transaction at a
    time; with ``roll_back_every``, every such transaction rolls back after its append.
    Returns the committed indexes per thread, in the order each thread got them."""
    barrier = threading.Barrier(THREADS)

    def worker(thread: int) -> list[int]:
        got: list[int] = []
        barrier.wait(timeout=30)
        for n in range(EACH):
            with rt.sessions() as session, session.begin():
                appended = append(
                    session,
                    {
                        "event_type": "grant.given",
                        "vendor_id": None,
                        "subject": f"p-thread{thread}-{n:03d}",
                        "fields": ["email"],
                        "purpose": "Deliver your orders to your door.",
                        "agreement_id": "service-only",
                        "consent_text_hash": None,
                    },
                )
                if roll_back_every and n % roll_back_every == roll_back_every - 1:
                    session.rollback()
                    continue
            got.append(appended.index)
        return got

    with ThreadPoolExecutor(THREADS) as pool:
        return dict(enumerate(pool.map(worker, range(THREADS))))


def check_tree(rt: Runtime, expected: int) -> None:
    """Indexes exactly 0 .. expected - 1, and every stored hash agrees with the leaves."""
    with rt.sessions() as session:
        rows = session.scalars(select(LedgerEntry).order_by(LedgerEntry.index)).all()
        assert [r.index for r in rows] == list(range(expected))
        leaves = [bytes(r.leaf_hash) for r in rows]
        assert leaves == [leaf_hash(bytes(r.entry)) for r in rows]
        assert [json.loads(r.entry)["index"] for r in rows] == list(range(expected))
        subjects = [json.loads(r.entry)["subject"] for r in rows]
        assert len(set(subjects)) == expected  # no event stored twice

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


def test_parallel_appends_take_every_index_once_in_commit_order(committed_rt: Runtime) -> None:
    got = run_threads(committed_rt)

    total = THREADS * EACH
    assert sorted(i for indexes in got.values() for i in indexes) == list(range(total))
    assert all(indexes == sorted(indexes) for indexes in got.values())
    check_tree(committed_rt, total)


def test_rolled_back_parallel_appends_leave_no_gap(committed_rt: Runtime) -> None:
    got = run_threads(committed_rt, roll_back_every=5)

    total = THREADS * (EACH - EACH // 5)
    assert sorted(i for indexes in got.values() for i in indexes) == list(range(total))
    check_tree(committed_rt, total)
