"""Consent ledger at scale: appends per second, proof cost by tree size, offline verification.

    .venv/bin/python bench/ledger.py [--events 100000] [--database postgresql|sqlite]
                                     [--batch 1] [--bulk-after K --bulk-batch M]
                                     [--proofs 200] [--seed 1]

Creates a throwaway database (PostgreSQL: a new database on VRM_BENCH_DATABASE_URL's server,
default the local one, dropped at the end; SQLite: a file in a temporary directory), migrates
it and appends ``--events`` events shaped like real ``grant.given`` entries through
``consent.ledger.store.append``, ``--batch`` appends per committed transaction (1, the
default, is what the service does: each consent event commits on its own). With
``--bulk-after K`` only the first K events are appended ``--batch`` at a time and the rest
``--bulk-batch`` at a time (default 500), so a per-event rate can be measured without waiting
for the whole log to be built one commit at a time; each phase is reported separately.

A signed checkpoint is created when the log reaches 1,000, 10,000, 100,000 entries (those not
above ``--events``) and at the end. At each of those sizes, with the table holding exactly
that many entries, it times ``--proofs`` inclusion proofs of random leaves and as many
consistency proofs from random older sizes, served from the stored subtree hashes
(``StoredTree``), checks every proof against the signed root, and counts the stored-node
lookups per proof. The lookup count is the machine-independent evidence that proofs are
O(log n): a proof needs one lookup per tree level plus the few perfect pieces of the one
ragged subtree on the right edge, about log2(n) + 3 and never more than about 2 * log2(n),
so it grows by an additive ~log2(10) = 3.3 (at most ~7) per tenfold size, where a linear
scheme would grow tenfold.

Finally it exports the whole ledger under the last checkpoint (``export_lines``) to a
temporary file and times the offline verifier (``verify_export``: no database) over it,
without and with per-entry inclusion proofs. The machine is shared and noisy: read the
lookup counts and the growth between rows, not the absolute times.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consent.ledger.merkle import verify_consistency, verify_inclusion  # noqa: E402
from consent.ledger.models import LedgerCheckpoint, LedgerEntry  # noqa: E402
from consent.ledger.service import create_checkpoint, public_key_text  # noqa: E402
from consent.ledger.store import StoredTree, append  # noqa: E402
from consent.ledger.verify import export_lines, verify_export  # noqa: E402
from vault.migrate import upgrade  # noqa: E402
from vault.runtime import Runtime  # noqa: E402
from vault.settings import Settings  # noqa: E402

ADMIN_URL = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
MEASURED_SIZES = (1_000, 10_000, 100_000)
FIELDS = ["given_name", "family_name", "email", "phone", "address", "birthdate", "locale"]
PURPOSES = [
    "Delivering your order and contacting you about it.",
    "Creating and running your account.",
    "Sending the newsletter you asked for.",
]
AGREEMENTS = ["service-only", "service-and-newsletter", "research"]


class EventSource:
    """Events shaped like the ``grant.given`` entries ``GrantService`` appends."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.vendors = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(200)]
        self.subjects = ["p-" + rng.randbytes(16).hex() for _ in range(20_000)]
        self.start = datetime(2025, 1, 1, tzinfo=UTC)

    def next(self) -> dict[str, Any]:
        rng = self.rng
        fields = sorted(rng.sample(FIELDS, rng.randint(1, len(FIELDS))))
        expires = self.start + timedelta(
            days=rng.choice([30, 90, 365]), seconds=rng.randrange(10_000_000)
        )
        consent_text = f"{rng.choice(PURPOSES)} Fields: {', '.join(fields)}."
        return {
            "event_type": "grant.given",
            "vendor_id": rng.choice(self.vendors),
            "subject": rng.choice(self.subjects),
            "grant_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "fields": fields,
            "purpose": rng.choice(PURPOSES),
            "agreement_id": rng.choice(AGREEMENTS),
            "expires_at": expires.isoformat(),
            "consent_text_hash": hashlib.sha256(consent_text.encode()).hexdigest(),
        }


def timed_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def measure_proofs(rt: Runtime, size: int, count: int, rng: random.Random) -> dict[str, float]:
    """Time ``count`` inclusion and consistency proofs at ``size``; verify each; count lookups."""
    with rt.sessions() as db, db.begin():
        checkpoint = db.get(LedgerCheckpoint, size)
        assert checkpoint is not None, f"no checkpoint at size {size}"
        root = bytes(checkpoint.root)
        checker = StoredTree(db)  # for the verification inputs; not counted

        tree = StoredTree(db)
        tree.root(size)  # warm the connection and the statement cache
        tree.lookups = 0
        incl_ms, incl_lookups = [], []
        for index in (rng.randrange(size) for _ in range(count)):
            before = tree.lookups
            ms, proof = timed_ms(lambda i=index: tree.inclusion(i, size))
            incl_ms.append(ms)
            incl_lookups.append(tree.lookups - before)
            leaf = checker.subtree(0, index)
            assert verify_inclusion(leaf, index, size, proof, root), (index, size)

        cons_ms, cons_lookups = [], []
        for old in (rng.randrange(1, size) for _ in range(count)):
            before = tree.lookups
            ms, proof = timed_ms(lambda o=old: tree.consistency(o, size))
            cons_ms.append(ms)
            cons_lookups.append(tree.lookups - before)
            old_root = checker.root(old)
            assert verify_consistency(old, size, old_root, root, proof), (old, size)
    return {
        "incl_ms": statistics.median(incl_ms),
        "incl_p95": statistics.quantiles(incl_ms, n=20)[-1],
        "incl_avg": statistics.fmean(incl_lookups),
        "incl_max": max(incl_lookups),
        "cons_ms": statistics.median(cons_ms),
        "cons_p95": statistics.quantiles(cons_ms, n=20)[-1],
        "cons_avg": statistics.fmean(cons_lookups),
        "cons_max": max(cons_lookups),
    }


def run(rt: Runtime, args: argparse.Namespace, db_label: str) -> None:
    events = args.events
    sizes = [s for s in MEASURED_SIZES if s <= events]
    if events not in sizes:
        sizes.append(events)
    rng = random.Random(args.seed)
    source = EventSource(rng)
    bulk_after = events if args.bulk_after is None else min(args.bulk_after, events)

    print(
        f"{db_label}; {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}, "
        f"Python {platform.python_version()}); {events:,} events; "
        + (
            f"appends per committed transaction: {args.batch}"
            if bulk_after == events
            else f"appends per committed transaction: {args.batch} for the first "
            f"{bulk_after:,}, then {args.bulk_batch}"
        ),
        flush=True,
    )

    # -- appends ---------------------------------------------------------------------------
    phases: list[list[float]] = []  # [first, last, batch, seconds]
    proofs: dict[int, dict[str, float]] = {}
    checkpoint_ms: dict[int, float] = {}
    step = max(1, events // 10)
    next_report = step
    appended = 0
    total_start = last_report_time = time.perf_counter()
    last_report_count = 0
    paused = 0.0  # time spent on checkpoints and proofs, left out of the append rate
    phase_start = total_start
    phase_paused = 0.0
    while appended < events:
        batch = args.batch if appended < bulk_after else args.bulk_batch
        boundary = min(
            [s for s in sizes if s > appended] + ([bulk_after] if appended < bulk_after else [])
        )
        end = min(appended + batch, boundary)
        with rt.sessions() as db, db.begin():
            for _ in range(end - appended):
                append(db, source.next())
        appended = end

        if appended in (bulk_after, events) and (not phases or phases[-1][1] < appended):
            now = time.perf_counter()
            first = int(phases[-1][1]) if phases else 0
            phases.append([first, appended, batch, now - phase_start - phase_paused])
            phase_start, phase_paused = now, 0.0
        if appended >= next_report or appended == events:
            now = time.perf_counter()
            recent = (appended - last_report_count) / max(now - last_report_time, 1e-9)
            print(
                f"  {appended:>9,} appended ({100 * appended / events:3.0f}%), "
                f"{now - total_start - paused:7.1f} s appending, {recent:8.0f} appends/s recently",
                flush=True,
            )
            while next_report <= appended:
                next_report += step
            last_report_time, last_report_count = time.perf_counter(), appended
        if appended in sizes:
            pause_start = time.perf_counter()
            with rt.sessions() as db, db.begin():
                ms, row = timed_ms(lambda db=db: create_checkpoint(db, rt))
                assert row is not None and row.size == appended
            checkpoint_ms[appended] = ms
            proofs[appended] = measure_proofs(rt, appended, args.proofs, rng)
            pause = time.perf_counter() - pause_start
            paused += pause
            phase_paused += pause
            last_report_time += pause
    total_seconds = time.perf_counter() - total_start - paused

    print()
    print("Appends (checkpoint and proof time excluded):")
    for first, last, batch, seconds in phases:
        n = last - first
        print(
            f"  events {first:>7,} .. {last:>7,}: {int(batch):>4} per transaction, "
            f"{seconds:7.1f} s, {n / seconds:8.0f} appends/s, {1000 * seconds / n:6.3f} ms/append"
        )
    print(f"  all {events:,}: {total_seconds:.1f} s, {events / total_seconds:.0f} appends/s")

    # -- proofs ----------------------------------------------------------------------------
    print()
    print(
        f"Proofs from stored subtree hashes, {args.proofs} of each kind per size "
        "(median and p95 ms; stored-node lookups per proof, average and maximum):"
    )
    print(
        f"  {'tree size':>9} {'log2 n':>6} {'checkpoint':>10} | "
        f"{'inclusion':>9} {'p95':>6} {'lookups':>7} {'max':>4} | "
        f"{'consistency':>11} {'p95':>6} {'lookups':>7} {'max':>4}"
    )
    for size in sizes:
        p = proofs[size]
        print(
            f"  {size:>9,} {math.log2(size):>6.1f} {checkpoint_ms[size]:>8.1f}ms | "
            f"{p['incl_ms']:>7.2f}ms {p['incl_p95']:>6.2f} {p['incl_avg']:>7.1f} "
            f"{p['incl_max']:>4} | "
            f"{p['cons_ms']:>9.2f}ms {p['cons_p95']:>6.2f} {p['cons_avg']:>7.1f} "
            f"{p['cons_max']:>4}"
        )
    for small, large in itertools.pairwise(sizes):
        a, b = proofs[small], proofs[large]
        print(
            f"  {small:,} -> {large:,} ({large / small:.0f}x entries): inclusion lookups "
            f"{b['incl_avg'] - a['incl_avg']:+.1f}, time x{b['incl_ms'] / a['incl_ms']:.2f}; "
            f"consistency lookups {b['cons_avg'] - a['cons_avg']:+.1f}, "
            f"time x{b['cons_ms'] / a['cons_ms']:.2f}"
        )

    # -- export and offline verification ---------------------------------------------------
    print()
    print("Export of the whole ledger and offline verification (no database):")
    vkey = public_key_text(rt)
    with rt.sessions() as db, db.begin():
        note = db.get(LedgerCheckpoint, events).note  # type: ignore[union-attr]
        read_ms, entries = timed_ms(
            lambda: [
                bytes(e)
                for e in db.scalars(
                    select(LedgerEntry.entry)
                    .where(LedgerEntry.index < events)
                    .order_by(LedgerEntry.index)
                )
            ]
        )
    print(f"  read {len(entries):,} entries from the database: {read_ms / 1000:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for with_proofs in (False, True):
            path = Path(tmp) / f"export-{with_proofs}.jsonl"

            def write(path: Path = path, with_proofs: bool = with_proofs) -> None:
                with path.open("w", encoding="utf-8", newline="") as fh:
                    fh.writelines(export_lines(note, entries, with_proofs=with_proofs))

            def verify(path: Path = path) -> Any:
                with path.open(encoding="utf-8", newline="") as fh:
                    return verify_export(fh, vkey)

            write_ms, _ = timed_ms(write)
            verify_ms, report = timed_ms(verify)
            assert report.ok and report.entries_checked == events, report.problems
            label = "with per-entry proofs" if with_proofs else "without proofs"
            print(
                f"  {label:<22}: export written in {write_ms / 1000:5.2f} s "
                f"({path.stat().st_size / 1e6:6.1f} MB); verify_export {verify_ms / 1000:5.2f} s "
                f"({events / (verify_ms / 1000):,.0f} entries/s), OK"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--batch", type=int, default=1, help="appends per committed transaction (default 1)"
    )
    parser.add_argument(
        "--bulk-after",
        type=int,
        default=None,
        metavar="K",
        help="append only the first K events --batch at a time, the rest --bulk-batch at a time",
    )
    parser.add_argument("--bulk-batch", type=int, default=500, metavar="M")
    parser.add_argument("--proofs", type=int, default=200, help="proofs of each kind per size")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.events < 2 or args.batch < 1 or args.bulk_batch < 1 or args.proofs < 2:
        parser.error("--events and --proofs must be at least 2, batch sizes at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        key_dir = Path(tmp) / "keys"
        if args.database == "sqlite":
            db_path = Path(tmp) / "ledger.db"
            rt = Runtime.from_settings(
                Settings(database_url=f"sqlite:///{db_path}", key_dir=key_dir)
            )
            try:
                upgrade(rt.engine)
                run(rt, args, f"SQLite {sqlite3.sqlite_version} (WAL, file {db_path})")
            finally:
                rt.engine.dispose()
            return

        admin = create_engine(
            ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
        )
        name = f"vrm_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            version = conn.execute(text("SHOW server_version")).scalar_one()
        try:
            db_url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
            rt = Runtime.from_settings(Settings(database_url=db_url, key_dir=key_dir))
            try:
                upgrade(rt.engine)
                host = make_url(ADMIN_URL).host
                run(rt, args, f"PostgreSQL {version} on {host} (throwaway database {name})")
            finally:
                rt.engine.dispose()
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
