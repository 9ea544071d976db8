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

``--scenario sequencer`` runs ``--writers`` concurrent writers (each commits a change and its
consent event) while the sequencer integrates, as ``vrm worker`` runs it: ``--driver pgbench``
(pgbench's clients running ``bench/ledger_writer.pgbench``; the measurement of the issue's
figure, since a Python client saturates the cores first) or ``--driver python`` (psycopg
threads in ``--processes`` processes).

``--scenario scale --entries N`` bulk-seeds a ledger of N entries through COPY instead, then
times proofs through the audit API in process (TestClient, and straight through ASGI with an
auditor API token), ``StoredTree.prove_inclusion`` alone, and offline verification of the
export. ``--http`` also serves the vault as ``vrm serve`` does, beside the bare FastAPI floor
(``bench/http.py``'s servers and wrk runs), and drives the bare authenticated endpoint
(``/public-key``) and both proofs (random entries and sizes) with wrk at ``--connections``
(32) and at one connection, the auditor's API token in the ``Authorization`` header: req/s,
p50/p99, the ratio to the floor, the server's CPU per request and the load average.
``--keep DIR`` keeps the seeded database (named in DIR/database; write a name there first to
choose it), its keys, the auditor and the export in DIR, and reuses them on the next run with
the same ``--entries`` (seeding 1M takes about 3 minutes, 10M 17 to 35). For example::

    .venv/bin/python bench/ledger.py --scenario scale --entries 1000000 \
        --keep /tmp/ledger-1m --http --no-verify [--only proof] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the standard library's http (FastAPI's test client needs it).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from consent.ledger.merkle import canonical_json, verify_consistency, verify_inclusion  # noqa: E402
from consent.ledger.models import LedgerCheckpoint, LedgerEntry  # noqa: E402
from consent.ledger.service import create_checkpoint, public_key_text  # noqa: E402
from consent.ledger.store import StoredTree, integrate, record  # noqa: E402
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
                record(db, source.next())
            integrate(db)  # as the sequencer would, here in the same transaction
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


# -- the sequencer: concurrent writers -------------------------------------------------------

WRITER_SQL_CHANGE = "UPDATE vendor_apps SET purpose = %s, updated_at = now() WHERE id = %s"
WRITER_SQL_EVENT = (
    "INSERT INTO ledger_pending (event, event_type, vendor_id, subject, occurred_at, index_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id"
)
PGBENCH_SCRIPT = ROOT / "bench" / "ledger_writer.pgbench"


def bench_app_id(n: int) -> uuid.UUID:
    """Writer ``n``'s vendor app: ``md5('bench-app-' || n)`` as a UUID, which the pgbench
    script computes the same way from its ``client_id``."""
    return uuid.UUID(hashlib.md5(f"bench-app-{n}".encode()).hexdigest())  # noqa: S324 (an id)


def _backend_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a PostgreSQL backend has used so far, from /proc when the
    server runs on this machine; None otherwise."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Written:
    """What a writer driver reports: each writer's commit times (wall clock, in the order of
    its transactions) by app id, and CPU seconds of the writers' clients and of their
    PostgreSQL backends (None when /proc cannot tell)."""

    commits: dict[str, list[float]]
    started_at: float
    client_cpu: float
    backend_cpu: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(times) for times in self.commits.values())


def _writer_process(
    conninfo: str,
    app_ids: list[str],
    seconds: float,
    seed: int,
    ready: Any,
    go: Any,
    out: Any,
    with_events: bool = True,
) -> None:
    """Threads, one per app id, each committing (change + consent event) transactions until
    the deadline, through psycopg directly: the two statements ``GrantService`` and
    ``consent.ledger.store.record`` would run, one round trip per transaction (pipeline).
    Returns each writer's commit times."""
    import threading

    import psycopg

    from consent.ledger.store import _canonical_split

    results: dict[str, list[float]] = {}
    backend_cpu: list[float] = []
    lock = threading.Lock()
    connected = threading.Barrier(len(app_ids) + 1)

    def writer(app_id: str, n: int) -> None:
        source = EventSource(random.Random(seed * 1000 + n))
        got: list[float] = []
        with psycopg.connect(conninfo) as conn:
            pid = conn.info.backend_pid
            cpu_before = _backend_cpu(pid)
            connected.wait()
            go.wait()
            deadline = time.time() + seconds
            count = 0
            while time.time() < deadline:
                event = source.next()
                event["vendor_id"] = app_id
                now = datetime.now(UTC)
                data, index_at = _canonical_split(
                    {**event, "time": now.isoformat().replace("+00:00", "Z")}
                )  # as record() does
                with conn.pipeline():
                    conn.execute(WRITER_SQL_CHANGE, (f"Purpose {count}", app_id))
                    if with_events:
                        cur = conn.execute(
                            WRITER_SQL_EVENT,
                            (data, event["event_type"], app_id, event["subject"], now, index_at),
                        )
                    conn.commit()
                if with_events:
                    assert cur.fetchone() is not None
                got.append(time.time())
                count += 1
            cpu_after = _backend_cpu(pid)
        with lock:
            results[app_id] = got
            if cpu_before is not None and cpu_after is not None:
                backend_cpu.append(cpu_after - cpu_before)

    threads = [threading.Thread(target=writer, args=(a, n)) for n, a in enumerate(app_ids)]
    for t in threads:
        t.start()
    connected.wait()
    cpu_start = time.process_time()
    ready.put(True)
    for t in threads:
        t.join()
    client_cpu = time.process_time() - cpu_start
    out.put((results, client_cpu, sum(backend_cpu) if len(backend_cpu) == len(threads) else None))


def drive_python(conninfo: str, apps: list[str], args: argparse.Namespace) -> Written:
    """The Python writers: ``--writers`` threads in ``--processes`` processes (psycopg)."""
    import multiprocessing

    procs = max(1, min(args.processes, len(apps)))
    chunks = [apps[i::procs] for i in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(
            target=_writer_process,
            args=(conninfo, chunk, args.seconds, n, ready, go, out, not args.without_events),
        )
        for n, chunk in enumerate(chunks)
    ]
    for process in workers:
        process.start()
    for _ in workers:
        ready.get()  # every writer connected
    start_at = time.time()
    go.set()
    parts = [out.get() for _ in workers]
    for process in workers:
        process.join()
    backends = [cpu for _, _, cpu in parts]
    return Written(
        commits={app: times for part, _, _ in parts for app, times in part.items()},
        started_at=start_at,
        client_cpu=sum(cpu for _, cpu, _ in parts),
        backend_cpu=None if None in backends else sum(b for b in backends if b is not None),
        notes=[f"writers: {len(apps)} threads in {procs} Python processes (psycopg, pipeline)"],
    )


class _BackendWatch(threading.Thread):
    """The CPU the pgbench clients' PostgreSQL backends use: their pids are found in
    pg_stat_activity once they have connected, then /proc is read every 50 ms until they
    exit, keeping each one's last reading (CPU since the backend started, connection set-up
    included; what a backend does in its last 50 ms, at most 0.1 CPU-second over all, is
    missed)."""

    def __init__(self, conninfo: str, dbname: str, expected: int) -> None:
        super().__init__(daemon=True)
        self.conninfo, self.dbname, self.expected = conninfo, dbname, expected
        self.last: dict[int, float] = {}
        self.found = False

    def run(self) -> None:
        import psycopg

        deadline = time.time() + 30
        pids: list[int] = []
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while time.time() < deadline and len(pids) < self.expected:
                pids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                        "AND application_name = 'pgbench'",
                        (self.dbname,),
                    )
                ]
                time.sleep(0.01)
        self.found = len(pids) == self.expected
        alive = set(pids)
        while alive:
            for pid in list(alive):
                cpu = _backend_cpu(pid)
                if cpu is None:
                    alive.discard(pid)
                else:
                    self.last[pid] = cpu
            time.sleep(0.05)


def _payload_cost(conninfo: str, rows: int = 40_000) -> float | None:
    """CPU microseconds a backend spends on the values the pgbench script inserts (the
    event's JSON put together in SQL: work the app does in Python), per statement: the
    script's ``VALUES`` row run as a prepared ``SELECT`` ``rows`` times, less a prepared
    ``SELECT`` of the bare parameters run as often."""
    import psycopg

    script = PGBENCH_SCRIPT.read_text()
    values = script[script.index("VALUES (") + 7 : script.index("RETURNING id;")].strip()
    names = ["client_id", "subject", "fields", "purpose", "agreement", "days", "seconds"]
    for name in names:
        values = values.replace(f":{name}::int", f"%({name})s::int")
    query = "SELECT " + values.removeprefix("(").removesuffix(")")
    bare = "SELECT " + ", ".join(f"%({name})s::int" for name in names)
    params = [
        {
            "client_id": n % 32, "subject": n % 20000, "fields": 1 + n % 16,
            "purpose": 1 + n % 3, "agreement": 1 + (n // 3) % 3, "days": 1 + (n // 9) % 3,
            "seconds": n * 7919 % 10_000_000,
        }
        for n in range(rows)
    ]  # fmt: skip
    spent = []
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=0) as conn:
        pid = conn.info.backend_pid
        for statement in (query, bare):
            with conn.cursor() as cur:
                cur.executemany(statement, params[:100])  # warm-up, prepared
                before = _backend_cpu(pid)
                cur.executemany(statement, params)
                after = _backend_cpu(pid)
            if before is None or after is None:
                return None
            spent.append(after - before)
    return (spent[0] - spent[1]) * 1e6 / rows


def drive_pgbench(conninfo: str, dbname: str, apps: list[str], args: argparse.Namespace) -> Written:
    """pgbench's clients as the writers: ``--writers`` clients on 2 threads, the script
    ``bench/ledger_writer.pgbench`` (one pipelined transaction each), for ``--seconds``; its
    per-transaction log gives each commit's time."""
    import resource

    seconds = max(1, round(args.seconds))
    watch = _BackendWatch(conninfo, dbname, len(apps))
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "tx"
        script = PGBENCH_SCRIPT.read_text()
        if args.without_events:  # the change alone: the script without its INSERT
            start = script.index("INSERT INTO ledger_pending")
            script = script[:start] + script[script.index("RETURNING id;\n", start) + 14 :]
        script_path = Path(tmp) / "writer.pgbench"
        script_path.write_text(script)
        command = [
            args.pgbench, "-n", "-M", "prepared", "-c", str(len(apps)), "-j", "2",
            "-T", str(seconds), "-f", str(script_path), "--log", f"--log-prefix={prefix}",
            conninfo,
        ]  # fmt: skip
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        watch.start()
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        watch.join()
        if done.returncode != 0:
            raise SystemExit(f"pgbench failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        by_client: dict[int, list[tuple[int, float, float]]] = {}
        for path in Path(tmp).glob("tx.*"):
            for line in path.read_text().splitlines():
                client, txn, latency_us, _script, epoch, epoch_us = line.split()[:6]
                end = int(epoch) + int(epoch_us) / 1e6
                by_client.setdefault(int(client), []).append(
                    (int(txn), end - int(latency_us) / 1e6, end)
                )
    for times in by_client.values():
        times.sort()
    summary = [
        line.strip()
        for line in done.stdout.splitlines()
        if line.startswith(
            ("number of transactions actually", "number of failed", "latency", "tps")
        )
    ]
    client_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    return Written(
        commits={
            str(bench_app_id(client)): [end for _, _, end in times]
            for client, times in by_client.items()
        },
        started_at=min(start for times in by_client.values() for _, start, _ in times),
        client_cpu=client_cpu,
        backend_cpu=sum(watch.last.values()) if watch.found else None,
        notes=[
            f"writers: pgbench, {len(apps)} clients on 2 threads, -M prepared, "
            f"{PGBENCH_SCRIPT.relative_to(ROOT)}"
            + (" without its INSERT (the change alone)" if args.without_events else ""),
            "pgbench: " + "; ".join(summary),
        ],
    )


class Sequencer(threading.Thread):
    """The sequencer as ``vrm worker`` runs it: ``integrate`` in a transaction of its own,
    again at once after a run with work, every ``SEQUENCE_INTERVAL`` s when idle. Notes the
    tree size and the wall-clock time after each run that committed work, its CPU (this
    thread) and its backend's."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__()
        self.rt = rt
        self.stopping = threading.Event()
        self.sizes: list[int] = []
        self.committed: list[float] = []
        self.runs: list[tuple[int, float]] = []  # (events, seconds) per run with work
        self.cpu: float | None = None
        self.backend_cpu: float | None = None

    def run(self) -> None:
        from consent.ledger.jobs import SEQUENCE_INTERVAL

        with self.rt.engine.connect() as conn:  # the pool's connection the sequencer then uses
            pid = conn.connection.driver_connection.info.backend_pid  # type: ignore[union-attr]
        backend_before = _backend_cpu(pid)
        thread_before = time.thread_time()
        while not self.stopping.is_set():
            started = time.perf_counter()
            with self.rt.sessions() as db, db.begin():
                done = integrate(db)
            now = time.time()
            if done.count:  # as `vrm worker`: again at once after a run with work
                self.runs.append((done.count, time.perf_counter() - started))
                self.sizes.append(done.size)
                self.committed.append(now)
            else:
                self.stopping.wait(SEQUENCE_INTERVAL)
        self.cpu = time.thread_time() - thread_before
        backend_after = _backend_cpu(pid)
        if backend_before is not None and backend_after is not None:
            self.backend_cpu = backend_after - backend_before

    def committed_at(self, index: int) -> float:
        """When the run that integrated ``index`` committed."""
        return self.committed[bisect.bisect_right(self.sizes, index)]


def run_sequencer(rt: Runtime, args: argparse.Namespace, db_label: str) -> None:
    """``--writers`` concurrent writers commit a change and its consent event each, for
    ``--seconds``, while a sequencer runs as ``vrm worker`` runs it; the writers are Python
    processes (``--driver python``) or pgbench's clients (``--driver pgbench``)."""
    from consent.ledger.jobs import SEQUENCE_INTERVAL
    from consent.ledger.models import LedgerPending
    from consent.vendors.models import VendorApp

    writers = args.writers
    with rt.sessions() as db, db.begin():
        apps = []
        for n in range(writers):
            app = VendorApp(
                id=bench_app_id(n),
                owner_id=None,
                client_id=f"bench-{n}",
                client_secret_hash=None,
                name=f"Bench shop {n}",
                homepage_url="https://shop.example",
                privacy_policy_url="https://shop.example/privacy",
                redirect_uris=["https://shop.example/callback"],
                purpose="Deliver your orders.",
                accepted_agreements=["service-only"],
                vendor_scopes=[],
            )
            db.add(app)
            apps.append(str(app.id))
    conninfo = rt.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    dbname = rt.engine.url.database or ""
    load_before = os.getloadavg()
    print(
        f"{db_label}; {os.cpu_count()} CPUs; {writers} writers ({args.driver}) for "
        f"{args.seconds:g} s; sequencer at once after a run with work, every {SEQUENCE_INTERVAL} s "
        f"when idle; load average {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f} at the start",
        flush=True,
    )
    sequencer = Sequencer(rt)
    sequencer.start()
    try:
        if args.driver == "pgbench":
            written = drive_pgbench(conninfo, dbname, apps, args)
        else:
            written = drive_python(conninfo, apps, args)
        deadline = time.time() + 30
        while time.time() < deadline:
            with rt.sessions() as db:
                if db.scalar(select(LedgerPending.id).limit(1)) is None:
                    break
            time.sleep(0.05)
        time.sleep(2 * SEQUENCE_INTERVAL)
    finally:
        sequencer.stopping.set()
        sequencer.join()
    load_after = os.getloadavg()
    for note in written.notes:
        print(f"  {note}")

    n = written.count
    span = max(t for times in written.commits.values() for t in times) - written.started_at

    def per_event(cpu: float | None) -> str:
        return "n/a" if cpu is None else f"{cpu * 1e6 / n:,.0f} us"

    if args.without_events:
        print(f"  changes committed (no consent event): {n:,} in {span:.1f} s: {n / span:,.0f} /s")
        print(
            f"  CPU per change: writers' client {per_event(written.client_cpu)}, their "
            f"PostgreSQL backends {per_event(written.backend_cpu)}"
        )
        return
    print(f"  events committed: {n:,} in {span:.1f} s: {n / span:,.0f} /s")

    # Each writer's events, in index order, are its transactions in commit order (a writer
    # commits one before it starts the next): entry k of app A is A's k-th commit.
    with rt.sessions() as db:
        rows = db.execute(
            select(LedgerEntry.index, LedgerEntry.vendor_id).order_by(LedgerEntry.index)
        ).all()
        stored = db.scalars(select(LedgerEntry.entry).order_by(LedgerEntry.index)).all()
        not_canonical = sum(
            1
            for i, entry in enumerate(stored)
            if canonical_json(json.loads(entry)) != entry or json.loads(entry)["index"] != i
        )
        distinct = db.scalar(
            text("SELECT count(DISTINCT convert_from(entry, 'UTF8')::jsonb ->> 'grant_id') "
                 "FROM ledger_entries")
        )  # fmt: skip
    by_app: dict[str, list[int]] = {}
    for index, vendor_id in rows:
        by_app.setdefault(str(vendor_id), []).append(index)
    latencies: list[float] = []
    for app, commits in written.commits.items():
        indexes = by_app.get(app, [])
        assert len(indexes) == len(commits), (
            f"writer {app}: {len(commits)} events committed, {len(indexes)} integrated"
        )
        latencies.extend(
            sequencer.committed_at(i) - t for i, t in zip(indexes, commits, strict=True)
        )
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    print(
        f"  integration latency (writer's commit -> sequencer's commit): p50 {q[49] * 1000:.0f} "
        f"ms, p99 {q[98] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    per_run = [count / sec for count, sec in sequencer.runs]
    print(
        f"  sequencer: {len(sequencer.runs)} runs with work, "
        f"{statistics.median([c for c, _ in sequencer.runs]):.0f} events per run (median), "
        f"{statistics.median(per_run):,.0f} events/s while running"
    )
    client = "pgbench" if args.driver == "pgbench" else "Python, psycopg"
    print(
        f"  CPU per event: writers' client ({client}) {per_event(written.client_cpu)}, their "
        f"PostgreSQL backends {per_event(written.backend_cpu)}; sequencer (Python) "
        f"{per_event(sequencer.cpu)}, its backend {per_event(sequencer.backend_cpu)}"
    )
    if args.driver == "pgbench":
        cost = _payload_cost(conninfo)
        if cost is not None:
            print(
                f"    of the backends' CPU, putting the event's JSON together in SQL (the app "
                f"does it in Python): {cost:,.0f} us per event"
            )
    if written.backend_cpu is not None and sequencer.backend_cpu is not None:
        vault = written.backend_cpu + sequencer.backend_cpu + (sequencer.cpu or 0.0)
        whole = vault + written.client_cpu
        cores = os.cpu_count() or 1
        print(
            f"  => on {cores} dedicated cores (CPU-bound, WAL writer and fsync aside): "
            f"{cores * n / whole:,.0f} events/s with these writer clients on the same cores, "
            f"{cores * n / vault:,.0f} events/s for the database and the sequencer alone"
        )
    assert [i for i, _ in rows] == list(range(len(rows))), "indexes are not gap-free"
    assert len(rows) == n, (len(rows), n)
    assert distinct == n, f"{n} events, {distinct} distinct grant ids"
    assert not not_canonical, f"{not_canonical} entries not canonical JSON with their index"
    print(
        f"  tree: {len(rows):,} entries, indexes 0 .. {len(rows) - 1:,} with no gap; each "
        f"writer's committed events integrated once each ({distinct:,} distinct grant ids), every "
        "entry its canonical JSON with its index"
    )
    print(
        f"  load average {load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} at the end"
    )


# -- at scale: bulk seeding, proofs through the audit API, offline verification -------------


def seed_bulk(rt: Runtime, entries: int, seed: int) -> tuple[float, str]:
    """Build a ledger of ``entries`` entries through COPY (entries and nodes computed here,
    exactly as the sequencer computes them), set the head and sign a checkpoint. Returns the
    seconds taken and the export file of the whole ledger (written as it goes)."""
    import psycopg

    from consent.ledger.merkle import canonical_json, leaf_hash, node_hash

    rng = random.Random(seed)
    source = EventSource(rng)
    conninfo = rt.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.perf_counter()
    frontier: list[bytes] = []
    when = datetime(2025, 1, 1, tzinfo=UTC)
    fd, export_path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    entries_out = open(export_path + ".entries", "wb")  # noqa: SIM115
    chunk = 20_000
    with psycopg.connect(conninfo) as conn:
        # A bulk load: the secondary indexes are dropped first and built once at the end
        # (several times quicker than keeping them up to date row by row).
        secondary = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ledger_entries' "
            "AND indexname <> 'ledger_entries_pkey' AND indexdef NOT LIKE '%UNIQUE%'"
        ).fetchall()
        for name, _ in secondary:
            conn.execute(f'DROP INDEX "{name}"')
        nodes: list[tuple[int, int, bytes]] = []
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY ledger_entries (index, entry, leaf_hash, event_type, vendor_id, subject, "
                "occurred_at) FROM STDIN"
            ) as copy_entries,
        ):
            for first in range(0, entries, chunk):
                rows = []
                for index in range(first, min(first + chunk, entries)):
                    event = source.next()
                    moment = when + timedelta(milliseconds=index)
                    data = canonical_json(
                        {**event, "index": index, "time": moment.isoformat().replace("+00:00", "Z")}
                    )
                    digest = leaf_hash(data)
                    # COPY text, as the sequencer writes it (bytea in hex; no tab, newline or
                    # backslash in these values)
                    rows.append(
                        f"{index}\t\\\\x{data.hex()}\t\\\\x{digest.hex()}\t{event['event_type']}"
                        f"\t{event['vendor_id']}\t{event['subject']}\t{moment.isoformat()}\n"
                    )
                    entries_out.write(data + b"\n")
                    current, level, position = digest, 0, index
                    while position & 1:
                        current = node_hash(frontier.pop(), current)
                        level += 1
                        position >>= 1
                        nodes.append((level, position, current))
                    frontier.append(current)
                copy_entries.write("".join(rows).encode("utf-8"))
        with (
            conn.cursor() as cur,
            cur.copy("COPY ledger_nodes (level, index, hash) FROM STDIN") as copy_nodes,
        ):
            copy_nodes.write(
                "".join(f"{lv}\t{i}\t\\\\x{h.hex()}\n" for lv, i, h in nodes).encode("ascii")
            )
        for _, definition in secondary:
            conn.execute(definition)
        conn.execute(
            "UPDATE ledger_head SET size = %s, frontier = %s WHERE id = 1",
            (entries, json.dumps([h.hex() for h in frontier])),
        )
        conn.commit()
        conn.execute("ANALYZE ledger_entries")
        conn.execute("ANALYZE ledger_nodes")
        conn.commit()
    entries_out.close()
    with rt.sessions() as db, db.begin():
        row = create_checkpoint(db, rt)
        assert row is not None and row.size == entries
        note = row.note
    with open(export_path + ".entries", "rb") as src:
        stored = [line.rstrip(b"\n") for line in src]
    os.unlink(export_path + ".entries")
    with open(export_path, "w", encoding="utf-8", newline="") as fh:
        fh.writelines(export_lines(note, stored))
    del stored
    return time.perf_counter() - started, export_path


def asgi_cpu(
    app: Any, token: str, n: int, count: int, rng: random.Random
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU milliseconds of each of ``count`` requests to the app straight through
    ASGI (no client, no HTTP server): the bare authenticated endpoint and both proofs."""
    import asyncio

    from bench.cpu import asgi_call, lifespan

    headers = {"authorization": f"Bearer {token}"}

    def paths(kind: str) -> str:
        if kind == "inclusion proof":
            return f"/api/audit/v1/proofs/inclusion?index={rng.randrange(n)}&size={n}"
        if kind == "consistency proof":
            return f"/api/audit/v1/proofs/consistency?first={rng.randrange(1, n)}&second={n}"
        return "/api/audit/v1/public-key"

    async def go() -> dict[str, tuple[list[float], list[float]]]:
        stop = await lifespan(app)
        out: dict[str, tuple[list[float], list[float]]] = {}
        try:
            for kind in ("bare authenticated endpoint", "inclusion proof", "consistency proof"):
                wall: list[float] = []
                used: list[float] = []
                for i in range(count + 50):
                    call = asgi_call(app, "GET", paths(kind), headers)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    status = await call()
                    if status != 200:
                        raise SystemExit(f"{kind}: status {status}")
                    if i >= 50:  # after a warm-up
                        wall.append((time.perf_counter() - start) * 1000)
                        used.append((time.process_time() - start_cpu) * 1000)
                out[kind] = (wall, used)
        finally:
            await stop()
        return out

    return asyncio.run(go())


def http_proofs(rt: Runtime, args: argparse.Namespace, api_token: str, n: int) -> None:
    """The audit API served as ``vrm serve`` serves it, driven by wrk over real HTTP beside
    the bare FastAPI floor (``bench/http.py``'s servers, wrk runs and CPU accounting): the
    bare authenticated endpoint and both proofs at 32 connections and at one, each proof
    request for a random entry or older size (a wrk script rotating over 1,000)."""
    import shutil

    from bench.http import (
        FLOOR_APP,
        VAULT_APP,
        Request,
        Result,
        Server,
        cpu_seconds,
        py_spy_record,
        run_wrk,
        vrm_serve_options,
    )

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found; `make bench` installs Debian's wrk")
    rng = random.Random(args.seed + 1)
    auth = {"Authorization": f"Bearer {api_token}"}

    def rotating(label: str, paths: list[str]) -> Request:
        listed = ", ".join(json.dumps(path) for path in paths)
        lua = f"""
local paths = {{{listed}}}
local headers = {{["Authorization"] = {json.dumps("Bearer " + api_token)}}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
"""
        return Request(label, "vault", paths[0], headers=auth, lua=lua)

    floor = Request("floor (bare async def)", "floor", "/")
    bare = Request(
        "GET /api/audit/v1/public-key", "vault", "/api/audit/v1/public-key", headers=auth
    )
    inclusion = rotating(
        "inclusion proof",
        [f"/api/audit/v1/proofs/inclusion?index={rng.randrange(n)}&size={n}" for _ in range(1000)],
    )
    consistency = rotating(
        "consistency proof",
        [
            f"/api/audit/v1/proofs/consistency?first={rng.randrange(1, n)}&second={n}"
            for _ in range(1000)
        ],
    )
    env = {
        "VRM_DATABASE_URL": rt.engine.url.render_as_string(hide_password=False),
        "VRM_KEY_DIR": str(rt.settings.key_dir),
        **dict(item.split("=", 1) for item in args.env),
    }
    options = vrm_serve_options(env)
    many = args.connections
    plan = [(floor, many), (bare, many), (inclusion, many), (consistency, many), (floor, many)]
    plan += [(floor, 1), (bare, 1), (inclusion, 1), (consistency, 1), (floor, 1)]
    if args.only:
        plan = [(r, c) for r, c in plan if r is floor or any(o in r.label for o in args.only)]
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        servers = {
            "floor": Server("floor", FLOOR_APP, 1, options, {}, work / "floor.log"),
            "vault": Server("vault", VAULT_APP, 1, options, env, work / "vault.log"),
        }
        results: list[tuple[Request, int, Result, float]] = []
        try:
            servers["floor"].wait_ready("/")
            servers["vault"].wait_ready("/healthz")
            import httpx

            for request in (bare, inclusion, consistency):
                answer = httpx.get(servers["vault"].base + request.path, headers=auth, timeout=30)
                if answer.status_code != 200:
                    raise SystemExit(f"{request.label}: {answer.status_code} {answer.text[:300]}")
            for request, conns in plan:
                server = servers[request.server]
                print(f"  wrk: {request.label}, {conns} conn", flush=True)
                run_wrk(wrk, server.base, request, conns, args.warmup, 10, work)
                server.new_output()
                load = os.getloadavg()[0]
                spy = None
                if args.py_spy is not None and server.name == "vault":
                    name = re.sub(r"[^a-z0-9]+", "-", request.label.lower()).strip("-")
                    spy = py_spy_record(server, args.duration, args.py_spy / f"{name}-{conns}c.txt")
                before = cpu_seconds(server.proc.pid)
                result = run_wrk(wrk, server.base, request, conns, args.duration, 10, work)
                if spy is not None:
                    spy.wait(timeout=args.duration + 30)
                if result.requests:
                    result.cpu_ms = (cpu_seconds(server.proc.pid) - before) * 1000 / result.requests
                statuses, _other = server.new_output()
                bad = sum(c for s, c in statuses.items() if not s.startswith("2"))
                if result.non_2xx_3xx or bad or result.socket_errors:
                    result.problems.append(
                        f"{result.non_2xx_3xx} non-2xx/3xx, {bad} logged, {result.socket_errors}"
                    )
                results.append((request, conns, result, load))
        finally:
            for server in servers.values():
                server.stop()
    print(
        f"  over HTTP: vrm serve's uvicorn (1 worker) and the floor, wrk -t1 -d{args.duration:.0f}s"
        f" after {args.warmup:.0f} s of warm-up; ratio = req/s over the floor's at the same "
        "connections (mean of the floor before and after); cpu ms = the server's CPU per "
        "request; load = 1-minute load average at the start"
    )
    print(
        f"    {'request':<32} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'ratio':>6} {'cpu ms':>6} {'load':>5}"
    )
    for request, conns, result, load in results:
        floors = [r.rps for q, c, r, _ in results if q is floor and c == conns]
        ratio = result.rps / statistics.fmean(floors)
        failed = ("  FAILED: " + "; ".join(result.problems)) if result.problems else ""
        print(
            f"    {request.label:<32} {conns:>5} {result.rps:>8,.0f} {result.p50_ms:>7.2f} "
            f"{result.p99_ms:>7.2f} {ratio:>6.3f} {result.cpu_ms:>6.2f} {load:>5.1f}{failed}"
        )


def kept_ledger(rt: Runtime, args: argparse.Namespace) -> tuple[str, str] | None:
    """The auditor's password and API token of a ledger kept by an earlier run (``--keep``)
    that holds exactly ``--entries`` entries, or None."""
    from consent.ledger.models import LedgerHead

    if args.keep is None or not (args.keep / "auditor.json").exists():
        return None
    with rt.sessions() as db:
        head = db.get(LedgerHead, 1)
        if head is None or head.size != args.entries:
            return None
    saved = json.loads((args.keep / "auditor.json").read_text())
    return saved["password"], saved["token"]


def run_scale(rt: Runtime, args: argparse.Namespace, db_label: str) -> None:
    from fastapi.testclient import TestClient

    from vault.accounts.models import Role
    from vault.accounts.tokens import issue_token
    from vault.signup import sign_up
    from vrm.app import create_app

    n = args.entries
    kept = kept_ledger(rt, args)
    export_path: str | None = None
    if kept is not None:
        password, api_token = kept
        if (args.keep / "export.jsonl").exists():
            export_path = str(args.keep / "export.jsonl")
        print(f"{db_label}; {os.cpu_count()} CPUs; {n:,} entries kept by an earlier run")
    else:
        print(f"{db_label}; {os.cpu_count()} CPUs; {n:,} entries seeded through COPY", flush=True)
        seconds, export_path = seed_bulk(rt, n, args.seed)
        print(f"  seeded {n:,} entries and their nodes, signed a checkpoint: {seconds:.0f} s")
        password = secrets.token_urlsafe(16)
        with rt.sessions() as db, db.begin():
            auditor = sign_up(db, rt, "auditor@bench.example", password, role=Role.AUDITOR)
            api_token = issue_token(db, rt, auditor, label="bench", days=30).token
        if args.keep is not None:
            os.replace(export_path, args.keep / "export.jsonl")
            export_path = str(args.keep / "export.jsonl")
            (args.keep / "auditor.json").write_text(
                json.dumps({"password": password, "token": api_token})
            )
    try:
        if args.http:
            http_proofs(rt, args, api_token, n)
        if args.no_inprocess:
            return
        rng = random.Random(args.seed)
        with TestClient(create_app(runtime=rt), base_url="http://127.0.0.1") as client:
            page = client.get("/signin").text
            token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            signed_in = client.post(
                "/signin",
                data={"email": "auditor@bench.example", "password": password, "csrf_token": token},
                follow_redirects=False,
            )
            assert signed_in.status_code == 303, signed_in.text
            vkey = public_key_text(rt)
            root = client.get("/api/audit/v1/checkpoint").json()["root"]

            cpu: dict[str, list[float]] = {"bare": [], "incl": [], "cons": []}

            def timed(path: str, params: dict[str, int], kind: str = "incl") -> float:
                start, start_cpu = time.perf_counter(), time.process_time()
                response = client.get(path, params=params)
                ms = (time.perf_counter() - start) * 1000
                cpu[kind].append((time.process_time() - start_cpu) * 1000)
                assert response.status_code == 200, response.text
                assert response.json()["root"] == root
                return ms

            for _ in range(50):  # warm up
                timed("/api/audit/v1/proofs/inclusion", {"index": rng.randrange(n), "size": n})
            cpu["incl"].clear()
            bare = []
            for _ in range(args.proofs):
                start, start_cpu = time.perf_counter(), time.process_time()
                client.get("/api/audit/v1/public-key")
                bare.append((time.perf_counter() - start) * 1000)
                cpu["bare"].append((time.process_time() - start_cpu) * 1000)
            incl = [
                timed("/api/audit/v1/proofs/inclusion", {"index": rng.randrange(n), "size": n})
                for _ in range(args.proofs)
            ]
            cons = [
                timed(
                    "/api/audit/v1/proofs/consistency",
                    {"first": rng.randrange(1, n), "second": n},
                    "cons",
                )
                for _ in range(args.proofs)
            ]
        asgi = asgi_cpu(create_app(runtime=rt), api_token, n, args.proofs, rng)
        with rt.sessions() as db:
            tree = StoredTree(db)
            direct, direct_cpu = [], []
            for _ in range(args.proofs):
                index = rng.randrange(n)
                start, start_cpu = time.perf_counter(), time.process_time()
                tree = StoredTree(db)
                got_root, proof = tree.prove_inclusion(index, n)
                direct.append((time.perf_counter() - start) * 1000)
                direct_cpu.append((time.process_time() - start_cpu) * 1000)
                leaf = tree.subtree(0, index)
                assert verify_inclusion(leaf, index, n, proof, got_root)

        def p(values: list[float], pct: int) -> float:
            return statistics.quantiles(values, n=100)[pct - 1]

        print(
            f"  audit API in-process (TestClient, no network), {args.proofs} requests each, "
            "p50 / p95 wall ms, and p50 CPU ms of this process (client and app; the database "
            "server's not counted):"
        )
        rows = [
            ("bare authenticated endpoint (/public-key)", bare, cpu["bare"]),
            ("inclusion proof", incl, cpu["incl"]),
            ("consistency proof", cons, cpu["cons"]),
            ("StoredTree.prove_inclusion alone (1 query)", direct, direct_cpu),
        ]
        for label, wall, used in rows:
            print(
                f"    {label + ':':44} {p(wall, 50):7.2f} / {p(wall, 95):7.2f}   "
                f"CPU {p(used, 50):6.2f}"
            )
        print(
            "  the app alone, straight through ASGI (as bench/cpu.py; auditor API token; no "
            "client), p50 / p95 wall ms, and p50 CPU ms:"
        )
        for label, (wall, used) in asgi.items():
            print(
                f"    {label + ':':44} {p(wall, 50):7.2f} / {p(wall, 95):7.2f}   "
                f"CPU {p(used, 50):6.2f}"
            )
        if export_path is None or args.no_verify:
            return
        start, start_cpu = time.perf_counter(), time.process_time()
        with open(export_path, encoding="utf-8", newline="") as fh:
            report = verify_export(fh, vkey)
        verify_s = time.perf_counter() - start
        verify_cpu = time.process_time() - start_cpu
        assert report.ok and report.entries_checked == n, report.problems
        size_mb = os.path.getsize(export_path) / 1e6
        print(
            f"  offline verification of the export ({size_mb:.0f} MB, no proofs): "
            f"{verify_s:.1f} s wall, {verify_cpu:.1f} s CPU ({n / verify_cpu:,.0f} entries per "
            "CPU-second), OK"
        )
        if args.keep_export or args.keep is not None:
            print(f"  export kept at {export_path}")
    finally:
        if export_path is not None and not args.keep_export and args.keep is None:
            os.unlink(export_path)


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
    parser.add_argument(
        "--scenario",
        choices=["appends", "sequencer", "scale"],
        default="appends",
        help="appends: the log built through the sequencer, proofs by size (default); "
        "sequencer: concurrent writers and integration latency; scale: a bulk-seeded log, "
        "proofs through the audit API, offline verification",
    )
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument(
        "--driver",
        choices=["python", "pgbench"],
        default="python",
        help="for --scenario sequencer: the writers are Python processes (psycopg; default) "
        "or pgbench's clients (bench/ledger_writer.pgbench)",
    )
    parser.add_argument("--pgbench", default="/usr/bin/pgbench", help="the pgbench to run")
    parser.add_argument("--processes", type=int, default=4, help="Python writer processes")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--without-events",
        action="store_true",
        help="for --scenario sequencer: the writers commit their change alone (no consent "
        "event), to see what recording the event adds",
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="for --scenario scale")
    parser.add_argument("--keep-export", action="store_true")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="for --scenario scale: keep the seeded database, its keys, the auditor and the "
        "export in DIR, and reuse them when DIR holds a ledger of --entries entries (no "
        "reseeding; drop the database named in DIR/database by hand when done)",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="for --scenario scale: also drive the served audit API with wrk (bench/http.py's "
        "servers) beside the bare FastAPI floor",
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each (2)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="for the served vault"
    )
    parser.add_argument(
        "--no-inprocess",
        action="store_true",
        help="skip the in-process measurements (TestClient, ASGI, the proof alone)",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip offline verification")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="with --http: sample the vault with py-spy (--gil) during each of its wrk runs, "
        "collapsed stacks written to DIR (count them with bench/stacks.py)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="with --http: measure only the requests whose label contains TEXT (and the floor)",
    )
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
        if args.keep is not None:
            # The database named in DIR/database (write a name there first to choose it).
            args.keep.mkdir(parents=True, exist_ok=True)
            key_dir = args.keep / "keys"
            named = args.keep / "database"
            name = named.read_text().strip() if named.exists() else name
            named.write_text(name + "\n")
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            version = conn.execute(text("SHOW server_version")).scalar_one()
        try:
            db_url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
            rt = Runtime.from_settings(Settings(database_url=db_url, key_dir=key_dir))
            try:
                upgrade(rt.engine)
                host = make_url(ADMIN_URL).host
                what = "kept database" if args.keep is not None else "throwaway database"
                label = f"PostgreSQL {version} on {host} ({what} {name})"
                scenario = {"appends": run, "sequencer": run_sequencer, "scale": run_scale}
                scenario[args.scenario](rt, args, label)
            finally:
                rt.engine.dispose()
        finally:
            if args.keep is None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
