"""Publishing an intent to subscribed vendors: matching, queueing and delivery.

    .venv/bin/python bench/subscriptions.py [--backend postgresql|sqlite] [--apps 1000]
                                            [--per-app 10] [--intents 40] [--gap 0.5]

Makes a throwaway database (PostgreSQL on VRM_BENCH_DATABASE_URL's server, default the local
one, dropped at the end; or a SQLite file in a temporary directory), migrates it, and registers
``--apps`` vendor apps that accept the intent-sharing agreement, each with ``--per-app``
subscriptions drawn at random (seeded) from the listing's filters (a leaf, 5 % a root, 1 %
any; a country, 5 % any; EUR or any; sometimes a budget range or
"online") and a webhook URL at a local receiver (127.0.0.1). With the worker running
(``vrm worker``'s loops, ``--interval``), it publishes ``--intents`` intents one after
another, ``--gap`` seconds apart, and prints:

- publish -> outbox rows committed: the portal's ``IntentService.create(publish=True)`` and the
  commit (matching by one query, one message per matching app), p50 / p95 / max;
- publish -> delivered: until the receiver got the intent's first and its last
  ``intent.published`` message (every matching app), p50 / p95 / max;
- how many apps each intent matched.

The machine is shared and noisy: compare the rows of one run, not absolutes.
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
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, urlunsplit

import psycopg
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from consent.webhooks.attempts import DeliveryOutcome
from intents import taxonomy
from intents.models import ANY, IntentNotice, IntentSubscription
from intents.rules import parse_intent
from intents.service import IntentService
from vault.accounts.models import Account
from vault.base import utcnow
from vault.migrate import upgrade
from vault.runtime import Runtime
from vault.settings import Settings
from vault.signup import sign_up
from vrm.cli import worker as worker_cli

COUNTRIES = ("NL", "DE", "FR", "BE", "ES", "IT", "AT", "PL", "SE", "DK")


class Arrivals:
    """What the receiver got: per intent id, the moments its ``intent.published`` arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.at: dict[str, list[float]] = defaultdict(list)

    def add(self, body: bytes) -> None:
        message = json.loads(body)
        if message.get("type") == "intent.published":
            with self.lock:
                self.at[message["data"]["intent"]["id"]].append(time.perf_counter())


@contextmanager
def receiver(arrivals: Arrivals) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrivals.add(self.rfile.read(int(self.headers.get("content-length", 0))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # A web server's listen backlog (nginx: 511), not socketserver's 5: with 64
        # deliveries in flight, a queue of 5 drops connections on a busy machine.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    server = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/")
    parts = urlsplit(server)
    admin = urlunsplit(parts._replace(path="/postgres"))
    name = f"vrm_bench_subs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _subscription(rng: random.Random, app_id: uuid.UUID) -> IntentSubscription:
    roll = rng.random()
    if roll < 0.01:
        category = ANY
    elif roll < 0.06:
        category = rng.choice(taxonomy.ROOTS).id
    else:
        category = rng.choice([c.id for c in taxonomy.CATEGORIES.values() if not c.is_root])
    ranged = rng.random() < 0.3
    low = rng.choice((0, 1_000, 5_000, 20_000)) if ranged else None
    return IntentSubscription(
        id=uuid.uuid4(),
        app_id=app_id,
        category_key=category,
        country_key=rng.choice(COUNTRIES) if rng.random() < 0.95 else ANY,
        currency_key="EUR" if ranged or rng.random() < 0.5 else ANY,
        online=True if rng.random() < 0.1 else None,
        budget_min=low,
        budget_max=(low or 0) * 10 + 50_000 if ranged else None,
        created_at=utcnow(),
    )


def fill(rt: Runtime, apps: int, per_app: int, url: str, rng: random.Random) -> Account:
    with rt.sessions() as db, db.begin():
        for n in range(apps):
            app = VendorApp(
                id=uuid.uuid4(),
                client_id=f"bench-{n}",
                name=f"Bench vendor {n}",
                homepage_url="https://bench.example",
                privacy_policy_url="https://bench.example/privacy",
                redirect_uris=[],
                purpose="Benchmark",
                accepted_agreements=["intent-sharing"],
                vendor_scopes=["intents:read", "offers:write"],
                webhook_url=f"{url}/{n}",
            )
            db.add(app)
            db.add_all(_subscription(rng, app.id) for _ in range(per_app))
        owner = sign_up(db, rt, "bench@example.org", "a long bench passphrase")
        return owner


def _intent(rng: random.Random) -> dict[str, str]:
    leaf = rng.choice([c for c in taxonomy.CATEGORIES.values() if not c.is_root])
    return {
        "category": leaf.id,
        "title": "Lunch for two near the station",
        "description": "A table for two, today around 12:30.",
        "quantity": "2",
        "budget": str(rng.choice((30, 60, 150, 400, 900))),
        "currency": "EUR",
        "country": rng.choice(COUNTRIES),
        "city": "Utrecht",
        "online": "",
        "closes": "in_2h",
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{label:<40} p50 {statistics.median(ms):8.1f} ms   p95 {pct(ms, 0.95):8.1f} ms   "
        f"max {max(ms):8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--per-app", type=int, default=10)
    parser.add_argument("--intents", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between publishes")
    parser.add_argument("--interval", type=float, default=1.0, help="the worker's interval")
    args = parser.parse_args()
    rng = random.Random(15)
    arrivals = Arrivals()
    with (
        database(args.backend) as url,
        tempfile.TemporaryDirectory() as keys,
        receiver(arrivals) as hook,
    ):
        upgrade(url)
        rt = Runtime.from_settings(
            Settings(environment="development", database_url=url, key_dir=Path(keys))
        )
        started = time.perf_counter()
        owner = fill(rt, args.apps, args.per_app, hook, rng)
        print(
            f"{args.apps} apps, {args.apps * args.per_app} subscriptions ({args.backend}), "
            f"made in {time.perf_counter() - started:.1f} s"
        )
        failed: list[str] = []  # the worker's line per delivery: only failures, counted

        def report(outcome: DeliveryOutcome) -> None:
            if outcome.result != "delivered":
                failed.append(f"{outcome.result} ({outcome.error})")

        worker_cli.report = report
        background = worker_cli.Background(rt, args.interval)
        worker = threading.Thread(target=background.run, daemon=True)
        worker.start()
        committed: list[float] = []
        published: dict[str, float] = {}
        matched: list[int] = []
        try:
            for _ in range(args.intents):
                raw = parse_intent(_intent(rng))
                t0 = time.perf_counter()
                with rt.sessions() as db:
                    intent = IntentService(db, rt).create(owner, raw, publish=True)
                    db.commit()
                committed.append(time.perf_counter() - t0)
                published[str(intent.id)] = t0
                with rt.sessions() as db:
                    matched.append(_told(db, intent.id))
                time.sleep(args.gap)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with arrivals.lock:
                    done = sum(len(arrivals.at[i]) for i in published)
                if done >= sum(matched):
                    break
                time.sleep(0.1)
        finally:
            background.stop()
            worker.join(timeout=30)
        first = [min(arrivals.at[i]) - t for i, t in published.items() if arrivals.at[i]]
        last = [max(arrivals.at[i]) - t for i, t in published.items() if arrivals.at[i]]
        delivered = sum(len(arrivals.at[i]) for i in published)
        print(
            f"{args.intents} intents published, {args.gap:g} s apart; worker interval "
            f"{args.interval:g} s"
        )
        print(
            f"apps told per intent: median {statistics.median(matched):.0f}, "
            f"max {max(matched)}; {delivered} of {sum(matched)} messages delivered"
        )
        if failed:
            print(f"{len(failed)} attempts failed: {sorted(set(failed))}")
        print(row("publish -> outbox rows committed", committed))
        if first:
            print(row("publish -> first delivered", first))
            print(row("publish -> last delivered (every app)", last))
        rt.engine.dispose()


def _told(db: Session, intent_id: uuid.UUID) -> int:
    """How many apps were told of the intent (one ``intent.published`` each)."""
    told = select(func.count()).select_from(IntentNotice)
    return int(db.scalar(told.where(IntentNotice.intent_id == intent_id)) or 0)


if __name__ == "__main__":
    main()
