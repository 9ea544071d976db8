"""Finding what webhook delivery may send next, with a long history and a dead app's queue.

    .venv/bin/python bench/webhook_queue.py [--delivered 500000] [--waiting 20000] [--apps 50]
                                            [--repeat 5]

Creates a throwaway PostgreSQL database on VRM_BENCH_DATABASE_URL's server (default the local
one, dropped at the end), migrates it, and fills the outbox: ``--delivered`` delivered
messages spread over ``--apps - 1`` apps, ``--waiting`` messages waiting for one dead app
(its first one failing, its retry an hour away), and one waiting message for every other app.
It then times the worker's query for each app's due head (``delivery.due_heads``, what every
pass runs) and, for comparison, the query of the unordered delivery before it (every due
message, no head test), both with migration 0012's partial indexes of the waiting messages and
without them. The machine is shared and noisy: compare the rows of one run, not absolutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path, and bench/http.py would hide the standard
# library's ``http`` package (which httpx imports).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

# The imports must follow the sys.path fix above.
# ruff: noqa: E402
import argparse
import os
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.attempts import _due
from consent.webhooks.delivery import due_heads
from consent.webhooks.models import WebhookMessage
from vault.base import utcnow
from vault.db import make_engine
from vault.migrate import upgrade

_INDEXES = (
    "CREATE INDEX ix_webhook_outbox_waiting ON webhook_outbox (app_id, created_at, id) "
    "WHERE delivered_at IS NULL AND abandoned_at IS NULL",
    "CREATE INDEX ix_webhook_outbox_waiting_due ON webhook_outbox (next_attempt_at, created_at) "
    "WHERE delivered_at IS NULL AND abandoned_at IS NULL",
)


def _fill(engine: Engine, delivered: int, waiting: int, apps: int) -> None:
    with Session(engine) as db, db.begin():
        for n in range(apps):
            db.add(
                VendorApp(
                    client_id=f"bench-{n}",
                    name="Bench",
                    homepage_url="https://bench.example",
                    privacy_policy_url="https://bench.example/privacy",
                    redirect_uris=[],
                    purpose="Benchmark",
                    accepted_agreements=[],
                    webhook_url="https://bench.example/hooks",
                )
            )
    with engine.begin() as c:
        ids = [r[0] for r in c.execute(text("SELECT id FROM vendor_apps ORDER BY client_id"))]
        c.execute(
            text(
                "INSERT INTO webhook_outbox (id, app_id, event_type, payload, created_at, "
                "next_attempt_at, attempts, delivered_at) "
                "SELECT gen_random_uuid(), (:ids)[2 + g % (:n - 1)], 'consent.changed', "
                "'{}'::json, now() - interval '30 days' + g * interval '1 second', "
                "now() - interval '30 days' + g * interval '1 second', 1, now() "
                "FROM generate_series(1, :delivered) g"
            ),
            {"ids": ids, "n": apps, "delivered": delivered},
        )
        c.execute(
            text(
                "INSERT INTO webhook_outbox (id, app_id, event_type, payload, created_at, "
                "next_attempt_at, attempts) "
                "SELECT gen_random_uuid(), (:ids)[1], 'consent.changed', '{}'::json, "
                "now() - interval '1 day' + g * interval '1 second', "
                "CASE WHEN g = 1 THEN now() + interval '1 hour' "
                "ELSE now() - interval '1 day' + g * interval '1 second' END, "
                "CASE WHEN g = 1 THEN 5 ELSE 0 END "
                "FROM generate_series(1, :waiting) g"
            ),
            {"ids": ids, "waiting": waiting},
        )
        c.execute(
            text(
                "INSERT INTO webhook_outbox (id, app_id, event_type, payload, created_at, "
                "next_attempt_at, attempts) "
                "SELECT gen_random_uuid(), a, 'consent.changed', '{}'::json, "
                "now() - interval '1 minute', now() - interval '1 minute', 0 "
                "FROM unnest((:ids)[2:]) a"
            ),
            {"ids": ids},
        )
        c.execute(text("ANALYZE webhook_outbox"))


def _time(engine: Engine, run: Callable[[Session], int], repeat: int) -> tuple[float, int]:
    with Session(engine) as db:
        rows = run(db)
        started = time.perf_counter()
        for _ in range(repeat):
            rows = run(db)
        return (time.perf_counter() - started) / repeat * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delivered", type=int, default=500_000)
    parser.add_argument("--waiting", type=int, default=20_000)
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    server = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/")
    parts = urlsplit(server)
    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    engine = make_engine(urlunsplit(parts._replace(path=f"/{name}")))
    try:
        upgrade(engine)
        _fill(engine, args.delivered, args.waiting, args.apps)
        now = utcnow()

        def heads(db: Session) -> int:
            return len(due_heads(db, now, 16))

        def unordered(db: Session) -> int:
            query = (
                select(WebhookMessage.id, WebhookMessage.app_id)
                .where(*_due(now)[:-1])  # every due message: no head test
                .order_by(WebhookMessage.next_attempt_at, WebhookMessage.created_at)
                .limit(16 * 5)
            )
            return len(db.execute(query).all())

        print(
            f"{args.delivered:,} delivered, {args.waiting:,} waiting for one dead app, "
            f"{args.apps - 1} other apps with one waiting each; ms per query, mean of "
            f"{args.repeat}"
        )
        results: dict[str, float] = {}
        for indexes in ("with 0012's indexes", "without them"):
            if indexes == "without them":
                with engine.begin() as c:
                    c.execute(text("DROP INDEX ix_webhook_outbox_waiting"))
                    c.execute(text("DROP INDEX ix_webhook_outbox_waiting_due"))
                    c.execute(text("ANALYZE webhook_outbox"))
            for label, run in (
                ("due heads (ordered)", heads),
                ("due messages (before)", unordered),
            ):
                ms, rows = _time(engine, run, args.repeat)
                results[f"{label}, {indexes}"] = ms
                print(f"  {label:24} {indexes:20} {ms:8.1f} ms  ({rows} rows)")
        base = results["due messages (before), without them"]
        ordered = results["due heads (ordered), with 0012's indexes"]
        print(f"ordered with 0012 / unordered before 0012: {ordered / base:.2f}")
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name}")


if __name__ == "__main__":
    main()
