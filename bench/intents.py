"""Vendor intent listings and offer creation against PostgreSQL at growing table sizes.

    .venv/bin/python bench/intents.py [--sizes 10000 100000 1000000] [--requests 300]
                                      [--plans 100]

Creates a throwaway PostgreSQL database (VRM_BENCH_DATABASE_URL's server, default the local
one), migrates it, signs up individuals through the account service (each gets a data key),
registers one vendor app that accepts the intent-sharing agreement and issues its own token
(client credentials, ``intents:read offers:write``). It then seeds intents in stages with COPY
(title and description encrypted per row under the owner's data key, bound to the row as
``IntentService._fill`` does; realistic categories, countries, currencies, budgets, statuses
and publication times), runs ANALYZE, and at each total size measures sequential keep-alive
requests against uvicorn in a subprocess:

- ``GET /healthz`` (no database), the baseline of the ratios;
- ``GET /vendor/v1/intents`` filtered by category subtree (a root or a leaf), country,
  currency and a budget range, page 1 and the pages after it (following ``next_cursor``);
- ``POST /vendor/v1/intents/{id}/offers`` on distinct open EUR intents.

Prints p50/p95 per endpoint and size and the ratios to the bare endpoint. At each size it also
runs EXPLAIN ANALYZE on the exact SQL ``Market.list_intents`` issues for 100 listings of the same
mix (how the intents table was read, how many of its rows were examined) and runs them as the
API's connections do (psycopg prepares after 5 runs) to count generic plans. At the largest size
it prints EXPLAIN (ANALYZE, BUFFERS) of a typical listing and of the one that examined the most
rows, as a custom plan and as the generic plan a prepared statement may switch to. The machine
is shared and noisy: compare ratios, rows examined and their trend with size, not absolute
times.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")

# (code, weight, city or None): about thirty countries, weighted like a European market.
COUNTRIES = [
    ("DE", 14, "Berlin"),
    ("NL", 12, "Utrecht"),
    ("FR", 10, "Lyon"),
    ("GB", 9, "Leeds"),
    ("ES", 7, "Valencia"),
    ("IT", 7, "Milano"),
    ("US", 6, "Boston"),
    ("BE", 5, "Gent"),
    ("PL", 4, "Krakow"),
    ("SE", 3, "Malmo"),
    ("AT", 3, "Graz"),
    ("PT", 2.5, "Porto"),
    ("IE", 2, "Cork"),
    ("DK", 2, "Aarhus"),
    ("CH", 2, "Basel"),
    ("FI", 1.5, "Tampere"),
    ("NO", 1.5, "Bergen"),
    ("CZ", 1.5, "Brno"),
    ("CA", 1.5, "Toronto"),
    ("GR", 1.2, "Patra"),
    ("RO", 1.2, "Cluj"),
    ("HU", 1, "Debrecen"),
    ("SK", 0.6, "Kosice"),
    ("HR", 0.6, "Split"),
    ("BG", 0.5, "Plovdiv"),
    ("SI", 0.4, "Maribor"),
    ("LT", 0.4, "Kaunas"),
    ("LU", 0.3, "Esch"),
    ("LV", 0.3, "Riga"),
    ("EE", 0.3, "Tartu"),
]
ROOT_WEIGHTS = {
    "electronics": 25,
    "travel": 15,
    "home": 15,
    "services": 15,
    "sports": 10,
    "fashion": 10,
    "vehicles": 10,
}
STATUSES = [("open", 85), ("closed", 4), ("withdrawn", 4), ("expired", 4), ("draft", 3)]
MIN_BUDGET, MAX_BUDGET = 10, 20_000
# What vendors filter on: budget ranges in EUR (major units) and the countries they serve.
BUDGET_RANGES = [(10, 200), (100, 1000), (500, 5000), (1000, 20000), (50, 20000)]
QUERY_COUNTRIES = ["DE", "NL", "FR", "ES", "IT", "BE", "AT", "PL", "IE", "PT"]
COLUMNS = (
    "id",
    "owner_id",
    "status",
    "category",
    "category_root",
    "title_ct",
    "description_ct",
    "quantity",
    "budget_minor",
    "currency",
    "country",
    "city",
    "online",
    "needed_by",
    "expires_at",
    "published_at",
    "closed_at",
    "created_at",
    "updated_at",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runtime(db_url: str, key_dir: Path) -> Any:
    from vault.runtime import Runtime
    from vault.settings import Settings

    settings = Settings(
        database_url=db_url,
        key_dir=key_dir,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    return Runtime.from_settings(settings)


@dataclass
class Prepared:
    token: str
    app_id: uuid.UUID
    keys: dict[uuid.UUID, Any]
    """Each individual's data key (vault.crypto.DataKey), as the keystore opened it."""


def prepare(rt: Any, individuals: int) -> Prepared:
    """Schema, the individuals (accounts and data keys), one market vendor app, its token."""
    from consent.oauth.tokens import TokenService
    from consent.vendors.service import AppInput, register_app
    from vault.keystore import KeyStore
    from vault.migrate import upgrade
    from vault.signup import sign_up

    upgrade(rt.engine)
    token = "bench-" + uuid.uuid4().hex
    keys: dict[uuid.UUID, Any] = {}
    with rt.sessions() as db, db.begin():
        store = KeyStore(db, rt.keys)
        for n in range(individuals):
            person = sign_up(db, rt, f"bench-{n}@example.org", "a long bench password")
            keys[person.id] = store.for_owner(person.id)
        app, _ = register_app(
            db,
            rt,
            AppInput(
                name="Bench Market",
                homepage_url="https://market.example",
                privacy_policy_url="https://market.example/privacy",
                redirect_uris=["https://market.example/cb"],
                purpose="Answer purchase intents with offers.",
                accepted_agreements=["intent-sharing", "service-only"],
                vendor_scopes=["intents:read", "offers:write"],
            ),
            owner_id=None,
            registered_via="cli",
        )
        TokenService(db, rt).issue(
            app, "intents:read offers:write", grant=None, access_token=token, expires_in=86400
        )
        app_id = app.id
    return Prepared(token=token, app_id=app_id, keys=keys)


# -- seeding ----------------------------------------------------------------------------------


def _end_of_day(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), clock.min, tzinfo=UTC)


class IntentRows:
    """Random intents as COPY rows, encrypted like ``IntentService._fill``."""

    def __init__(self, keys: dict[uuid.UUID, Any], seed: int) -> None:
        from intents import taxonomy

        self.rng = random.Random(seed)
        self.owners = list(keys)
        self.keys = keys
        self.countries = [c for c, _, _ in COUNTRIES]
        self.country_weights = list(accumulate(w for _, w, _ in COUNTRIES))
        self.cities = {c: city for c, _, city in COUNTRIES}
        self.roots = list(ROOT_WEIGHTS)
        self.root_weights = list(accumulate(ROOT_WEIGHTS.values()))
        self.leaves = {r: [c.id for c in taxonomy.children(r)] for r in self.roots}
        self.labels = {c.id: c.label for c in taxonomy.CATEGORIES.values()}
        self.statuses = [s for s, _ in STATUSES]
        self.status_weights = list(accumulate(w for _, w in STATUSES))

    def _currency(self, country: str) -> str:
        roll = self.rng.random()
        if country == "GB":
            return "GBP" if roll < 0.85 else ("EUR" if roll < 0.95 else "USD")
        if country in ("US", "CA"):
            return "USD" if roll < 0.9 else "EUR"
        return "EUR" if roll < 0.95 else ("USD" if roll < 0.98 else "GBP")

    def rows(self, count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
        from vault.crypto import Binding

        rng = self.rng
        today = now.date()
        low, high = math.log(MIN_BUDGET), math.log(MAX_BUDGET)
        for _ in range(count):
            row_id = uuid.uuid4()
            owner = rng.choice(self.owners)
            key = self.keys[owner]
            root = rng.choices(self.roots, cum_weights=self.root_weights)[0]
            category = root if rng.random() < 0.1 else rng.choice(self.leaves[root])
            label = self.labels[category]
            country = rng.choices(self.countries, cum_weights=self.country_weights)[0]
            currency = self._currency(country)
            budget = round(math.exp(rng.uniform(low, high)))
            status = rng.choices(self.statuses, cum_weights=self.status_weights)[0]
            created = now - timedelta(seconds=rng.uniform(0, 60 * 86400))
            published: datetime | None = created + timedelta(seconds=rng.uniform(0, 3600))
            closed = None
            expires = _end_of_day(today + timedelta(days=rng.randint(1, 60)))
            if status == "draft":
                published = None
            elif status in ("closed", "withdrawn"):
                assert published is not None
                closed = published + (now - published) * rng.random()
            elif status == "expired":
                assert published is not None
                expires = published + (now - published) * rng.random()
                closed = expires
            if published is not None and published > now:
                published = now
            title = f"{label}: {rng.choice(('wanted', 'best offer', 'looking for one'))}"
            description = (
                f"Looking for {label.lower()} within my budget. Delivery or pick-up "
                f"near {self.cities[country]}; new or as new."
            )
            yield (
                row_id,
                owner,
                status,
                category,
                root,
                key.encrypt(title.encode(), Binding(owner, "intents", "title_ct", row_id)),
                key.encrypt(
                    description.encode(), Binding(owner, "intents", "description_ct", row_id)
                ),
                1 if rng.random() < 0.9 else rng.randint(2, 10),
                budget * 100,
                currency,
                country,
                self.cities[country] if rng.random() < 0.3 else None,
                rng.random() < 0.4,
                today + timedelta(days=rng.randint(1, 90)) if rng.random() < 0.4 else None,
                expires,
                published,
                closed,
                created,
                closed or published or created,
            )


def seed(conninfo: str, generator: IntentRows, count: int, batch: int = 100_000) -> float:
    """COPY ``count`` intents in committed batches, then ANALYZE; returns the seconds taken."""
    start = time.perf_counter()
    now = datetime.now(UTC)
    columns = ", ".join(COLUMNS)
    with psycopg.connect(conninfo) as conn:
        done = 0
        while done < count:
            size = min(batch, count - done)
            with conn.cursor() as cur, cur.copy(f"COPY intents ({columns}) FROM STDIN") as copy:
                for row in generator.rows(size, now):
                    copy.write_row(row)
            conn.commit()
            done += size
        conn.execute("ANALYZE")
        conn.commit()
    return time.perf_counter() - start


# -- driving ----------------------------------------------------------------------------------


def quantile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def pct(values: list[float], p: float) -> float:
    """The ``p`` quantile of durations in seconds, in milliseconds."""
    return quantile(values, p) * 1000


def listing_params(rng: random.Random) -> dict[str, str]:
    """A vendor's filter: a root or a leaf category, a country, EUR and a budget range."""
    from intents import taxonomy

    root = rng.choice(list(ROOT_WEIGHTS))
    category = root if rng.random() < 0.5 else rng.choice(taxonomy.children(root)).id
    low, high = rng.choice(BUDGET_RANGES)
    return {
        "category": category,
        "country": rng.choice(QUERY_COUNTRIES),
        "currency": "EUR",
        "budget_min": str(low),
        "budget_max": str(high),
        "limit": "20",
    }


def offer_targets(
    client: httpx.Client, rng: random.Random, wanted: int, taken: set[str]
) -> list[str]:
    """Ids of distinct open EUR intents without an offer of ours, found through listings."""
    found: list[str] = []
    for _ in range(1000):
        if len(found) >= wanted:
            break
        params = {
            "country": rng.choice(QUERY_COUNTRIES),
            "currency": "EUR",
            "limit": "100",
        }
        cursor = None
        for _ in range(3):
            page = client.get(
                "/vendor/v1/intents", params=params | ({"cursor": cursor} if cursor else {})
            )
            page.raise_for_status()
            body = page.json()
            for item in body["data"]:
                if item["your_offer"] is None and item["id"] not in taken:
                    taken.add(item["id"])
                    found.append(item["id"])
            cursor = body["next_cursor"]
            if not cursor:
                break
    if len(found) < wanted:
        raise SystemExit(f"found only {len(found)} open EUR intents to offer on; seed more")
    rng.shuffle(found)
    return found[:wanted]


TYPICAL = {
    "category": "sports.bicycles",
    "country": "NL",
    "currency": "EUR",
    "budget_min": "100",
    "budget_max": "1000",
    "limit": "20",
}
"""A representative vendor filter: a leaf category, a large country, a middle budget."""


@dataclass
class Timings:
    healthz: list[float]
    page1: list[float]
    deeper: list[float]
    offer: list[float]
    errors: int


def timed(call: Callable[[], httpx.Response], into: list[float]) -> httpx.Response:
    start = time.perf_counter()
    response = call()
    into.append(time.perf_counter() - start)
    return response


def measure(client: httpx.Client, requests: int, warmup: int, targets: list[str]) -> Timings:
    """Sequential keep-alive requests, the three kinds interleaved in rounds of 50 each."""
    rng = random.Random(7)
    t = Timings([], [], [], [], 0)
    scratch: list[float] = []
    valid_until = (datetime.now(UTC) + timedelta(days=7)).isoformat().replace("+00:00", "Z")

    def listing(record: bool, deep: bool) -> None:
        params = listing_params(rng)
        page = timed(
            lambda: client.get("/vendor/v1/intents", params=params),
            t.page1 if record else scratch,
        )
        t.errors += page.status_code != 200
        cursor = page.json().get("next_cursor") if page.status_code == 200 else None
        for _ in range(2 if deep else 0):
            if not cursor:
                break
            page = timed(
                lambda c=cursor: client.get("/vendor/v1/intents", params=params | {"cursor": c}),
                t.deeper if record else scratch,
            )
            t.errors += page.status_code != 200
            cursor = page.json().get("next_cursor") if page.status_code == 200 else None

    def offer(intent_id: str, record: bool) -> None:
        body = {
            "price": f"{rng.randint(10, 150)}.00",
            "currency": "EUR",
            "message": "In stock, delivered within a week.",
            "valid_until": valid_until,
        }
        response = timed(
            lambda: client.post(f"/vendor/v1/intents/{intent_id}/offers", json=body),
            t.offer if record else scratch,
        )
        t.errors += response.status_code != 201

    pending = iter(targets)
    for _ in range(warmup):
        client.get("/healthz")
        listing(False, True)
        offer(next(pending), False)
    done = 0
    while done < requests:
        chunk = min(50, requests - done)
        for _ in range(chunk):
            timed(lambda: client.get("/healthz"), t.healthz)
        for n in range(chunk):
            listing(True, deep=n % 3 == 0)
        for _ in range(chunk):
            offer(next(pending), True)
        done += chunk
    return t


# -- the plan ---------------------------------------------------------------------------------


def capture_listing_sql(
    rt: Any, app_id: uuid.UUID, param_sets: list[dict[str, str]]
) -> list[tuple[str, dict[str, Any]]]:
    """The SQL and parameters ``Market.list_intents`` sends for each filter set (page 1)."""
    from consent.vendors.models import VendorApp
    from intents import money, taxonomy
    from intents.market import IntentFilters, Market, Seller

    seen: list[tuple[str, dict[str, Any]]] = []

    def listen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.search(r"FROM intents\s", statement) and "ORDER BY" in statement:
            seen.append((statement, dict(parameters)))

    event.listen(rt.engine, "before_cursor_execute", listen)
    try:
        with rt.sessions() as db:
            app = db.get_one(VendorApp, app_id)
            for params in param_sets:
                amount = partial(money.parse_amount, currency="EUR", field="", label="")
                filters = IntentFilters(
                    category=taxonomy.get(params["category"]),
                    country=params["country"],
                    currency=params["currency"],
                    budget_min=amount(params["budget_min"]),
                    budget_max=amount(params["budget_max"]),
                )
                Market(db, rt, Seller.of(db, app)).list_intents(filters, limit=int(params["limit"]))
    finally:
        event.remove(rt.engine, "before_cursor_execute", listen)
    assert len(seen) == len(param_sets)
    return seen


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


@dataclass
class Plan:
    shape: str
    """How the intents table was read: an ordered index scan, or a bitmap scan then a sort."""
    examined: int
    """Intents rows the scan looked at (returned plus removed by the filter)."""
    milliseconds: float


def read_plan(explained: dict[str, Any]) -> Plan:
    nodes = list(_nodes(explained["Plan"]))
    scan = next(n for n in nodes if n.get("Relation Name") == "intents")
    if scan["Node Type"] == "Bitmap Heap Scan":
        indexes = [n["Index Name"] for n in _nodes(scan) if "Index Name" in n]
        sort = any(n["Node Type"] == "Sort" for n in nodes)
        shape = f"bitmap {'+'.join(indexes)}" + (" + sort" if sort else "")
    else:
        shape = f"{scan['Node Type'].lower()} {scan.get('Index Name', '')}".strip()
        if any(n["Node Type"] == "Sort" for n in nodes):
            shape += " + sort"
        else:
            shape = "ordered " + shape
    examined = scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0)
    examined += scan.get("Rows Removed by Index Recheck", 0)
    return Plan(shape, int(examined), float(explained["Execution Time"]))


@dataclass
class Census:
    plans: list[Plan]
    generic: int
    custom: int
    worst: tuple[dict[str, str], str, dict[str, Any]]
    """The filters, SQL and parameters of the listing that examined the most rows."""


def plan_census(rt: Any, conninfo: str, app_id: uuid.UUID, combos: int) -> Census:
    """EXPLAIN ANALYZE the API's own SQL for ``combos`` listing filters of the benchmark mix.

    Then runs the same statements on one connection the way the API's pooled connections do
    (psycopg prepares a statement server-side after 5 runs; PostgreSQL may then switch it to a
    generic plan) and counts the generic and custom plans PostgreSQL used.
    """
    rng = random.Random(11)
    param_sets = [listing_params(rng) for _ in range(combos)]
    queries = capture_listing_sql(rt, app_id, param_sets)
    plans: list[Plan] = []
    with psycopg.connect(conninfo, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
        for statement, parameters in queries:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
            row = cur.fetchone()
            assert row is not None
            plans.append(read_plan(row[0][0]))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement, parameters in queries:
            conn.execute(statement, parameters).fetchall()
        generic, custom = conn.execute(
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
            "FROM pg_prepared_statements"
        ).fetchone() or (0, 0)
    worst = max(range(combos), key=lambda i: plans[i].examined)
    return Census(plans, int(generic), int(custom), (param_sets[worst], *queries[worst]))


@dataclass
class Stage:
    size: int
    seed_seconds: float
    timings: Timings
    census: Census


def census_line(size: int, census: Census) -> str:
    shapes = Counter(p.shape for p in census.plans)
    examined = [float(p.examined) for p in census.plans]
    ms = [p.milliseconds for p in census.plans]

    def spread(values: list[float], fmt: str) -> str:
        return "/".join(format(quantile(values, q), fmt) for q in (0.5, 0.95, 1.0))

    return (
        f"{size:>9,}  examined {spread(examined, '.0f')}  execution {spread(ms, '.2f')} ms  "
        + ", ".join(f"{n} x {shape}" for shape, n in shapes.most_common())
        + f"; as prepared statements: {census.generic} generic, {census.custom} custom plans"
    )


def explain(conninfo: str, params: dict[str, str], statement: str, values: Any) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of one listing, as a custom and as a generic plan."""
    print()
    print("Filters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
    ordered = [values[n] for n in names]
    placeholders = ", ".join(["%s"] * len(ordered))
    with psycopg.connect(conninfo, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
        cur.execute(f"PREPARE listing AS {numbered}")
        for mode in ("force_custom_plan", "force_generic_plan"):
            cur.execute(f"SET plan_cache_mode = {mode}")
            cur.execute(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE listing({placeholders})", ordered)
            print(f"EXPLAIN (ANALYZE, BUFFERS), plan_cache_mode = {mode}:")
            for (line,) in cur.fetchall():
                print("  " + line)


# -- main -------------------------------------------------------------------------------------


def start_server(db_url: str, key_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "VRM_DATABASE_URL": db_url,
        "VRM_KEY_DIR": str(key_dir),
        "VRM_BASE_URL": f"http://127.0.0.1:{port}",
        "VRM_VENDOR_READS_PER_MINUTE": "1000000",
        "VRM_VENDOR_WRITES_PER_MINUTE": "1000000",
    }
    server = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "vrm.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=300, help="timed requests of each kind")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--individuals", type=int, default=2000)
    parser.add_argument("--plans", type=int, default=100, help="listings to EXPLAIN per size")
    args = parser.parse_args()
    sizes = sorted(args.sizes)

    admin = create_engine(
        ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"vrm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name)
    db_url = url.render_as_string(hide_password=False)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    server: subprocess.Popen[bytes] | None = None
    rt = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key_dir = Path(tmp) / "keys"
            rt = runtime(db_url, key_dir)
            start = time.perf_counter()
            prepared = prepare(rt, args.individuals)
            print(
                f"{args.individuals} individuals signed up (accounts, data keys) and one vendor "
                f"app in {time.perf_counter() - start:.1f} s"
            )
            generator = IntentRows(prepared.keys, seed=1)
            server, base = start_server(db_url, key_dir)
            auth = {"Authorization": f"Bearer {prepared.token}"}
            stages: list[Stage] = []
            taken: set[str] = set()
            seeded = 0
            with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
                for size in sizes:
                    seconds = seed(conninfo, generator, size - seeded)
                    print(
                        f"seeded {size - seeded:,} intents (total {size:,}) in {seconds:.1f} s "
                        f"({(size - seeded) / seconds:,.0f}/s; COPY and ANALYZE)",
                        flush=True,
                    )
                    seeded = size
                    check = client.get("/vendor/v1/intents", params=listing_params(random.Random()))
                    assert check.status_code == 200, check.text
                    targets = offer_targets(
                        client, random.Random(size), args.requests + args.warmup, taken
                    )
                    timings = measure(client, args.requests, args.warmup, targets)
                    census = plan_census(rt, conninfo, prepared.app_id, args.plans)
                    stages.append(Stage(size, seconds, timings, census))
                    print(f"  measured at {size:,}", flush=True)
            report(stages, args.requests, args.plans)
            print()
            print(f"The listing query the API sends, at {sizes[-1]:,} intents (page 1):")
            print(re.sub(r"\s+", " ", stages[-1].census.worst[1]))
            statement, values = capture_listing_sql(rt, prepared.app_id, [TYPICAL])[0]
            explain(conninfo, TYPICAL, statement, values)
            print()
            print(f"The listing of the {args.plans} that examined the most rows:")
            explain(conninfo, *stages[-1].census.worst)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if rt is not None:
            rt.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _cell(values: list[float]) -> str:
    return f"{pct(values, 0.5):.1f}/{pct(values, 0.95):.1f}" if values else "-"


def _ratio(values: list[float], bare: float) -> str:
    return f"{pct(values, 0.5) / bare:.1f}" if values else "-"


def report(stages: list[Stage], requests: int, plans: int) -> None:
    print()
    print(
        f"PostgreSQL, 1 uvicorn worker, {requests} sequential keep-alive requests of each kind "
        f"per size, {os.cpu_count()} cores shared with the load generator. p50/p95 ms; ratios "
        "of p50 to the bare endpoint's."
    )
    print(
        f"{'intents':>9}  {'healthz':>9}  {'listing p1':>10}  {'pages 2-3':>10}  "
        f"{'offer':>10}  {'list/bare':>9}  {'deep/bare':>9}  {'offer/bare':>10}  {'errors':>6}"
    )
    for stage in stages:
        t = stage.timings
        bare = pct(t.healthz, 0.5)
        print(
            f"{stage.size:>9,}  {_cell(t.healthz):>9}  {_cell(t.page1):>10}  "
            f"{_cell(t.deeper):>10}  {_cell(t.offer):>10}  {_ratio(t.page1, bare):>9}  "
            f"{_ratio(t.deeper, bare):>9}  {_ratio(t.offer, bare):>10}  {t.errors:>6}"
        )
    print()
    previous = 0
    steps = []
    for stage in stages:
        steps.append(f"+{stage.size - previous:,} in {stage.seed_seconds:.1f} s")
        previous = stage.size
    total = sum(stage.seed_seconds for stage in stages)
    print(f"Seeding intents (COPY, ANALYZE): {', '.join(steps)}; {total:.0f} s in all")
    print()
    print(
        f"Plans of {plans} page-1 listings of the same mix (EXPLAIN ANALYZE of the API's SQL): "
        "intents rows examined and execution time, p50/p95/max"
    )
    for stage in stages:
        print(census_line(stage.size, stage.census))


if __name__ == "__main__":
    main()
