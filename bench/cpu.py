"""CPU time per vendor request, in process: a figure the machine's other load hardly moves.

    .venv/bin/python bench/cpu.py [--requests 2000] [--profile DIR]

``bench/http.py`` measures what a client sees (req/s, latency) with wrk against served
processes; on a shared machine those figures move by tens of percent between runs. This script
measures the server's own cost instead: it seeds a throwaway PostgreSQL database the way
``bench/http.py`` does, builds the vault's ASGI app and the floor app (``bench/floor_app.py``)
in this process, and calls each one request at a time, straight through ASGI (no HTTP server,
no sockets on the app side), counting the process's CPU time (all threads: the worker-thread
hops are in it) per request. PostgreSQL's and Redis's own CPU is not in it. What it leaves out
is what uvicorn adds to every request alike (parsing, the access log), so the ratios here are
of the app's own work; ``bench/http.py`` gives the served ratios.

With ``--profile DIR`` each request is also run under cProfile (a separate pass) and the
profile written to DIR/<request>.prof (read with ``python -m pstats``).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

# ruff: noqa: E402
import argparse
import asyncio
import base64
import cProfile
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import uvloop

from bench.floor_app import create_app as create_floor
from bench.http import seed_accounts, throwaway_database
from bench.intents import IntentRows
from bench.intents import seed as seed_intents

Call = Callable[[], Awaitable[int]]


def asgi_call(
    app: Any,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    sink: list[bytes] | None = None,
) -> Call:
    """One request to ``app`` through ASGI; returns the status (the body goes to ``sink``)."""
    query = b""
    if "?" in path:
        path, raw = path.split("?", 1)
        query = raw.encode()
    raw_headers = [(b"host", b"127.0.0.1")] + [
        (k.lower().encode(), v.encode()) for k, v in headers.items()
    ]
    if body:
        raw_headers.append((b"content-length", str(len(body)).encode()))

    async def call() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif sink is not None and message["type"] == "http.response.body":
                sink.append(message.get("body", b""))

        await app(scope, receive, send)
        return status

    return call


async def lifespan(app: Any) -> Callable[[], Awaitable[None]]:
    """Start ``app``'s lifespan; returns the coroutine function that ends it."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    await queue.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set_result(None)
        elif message["type"] == "lifespan.startup.failed":
            started.set_exception(RuntimeError(message.get("message", "startup failed")))

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, queue.get, send)
    )
    await started

    async def stop() -> None:
        await queue.put({"type": "lifespan.shutdown"})
        await task

    return stop


async def measure(name: str, call: Call, n: int, expect: set[int]) -> float:
    """CPU milliseconds per request over ``n`` sequential calls (after a warm-up)."""
    for _ in range(max(50, n // 10)):
        status = await call()
        if status not in expect:
            raise SystemExit(f"{name}: status {status}, expected {sorted(expect)}")
    start = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - start) * 1000 / n


async def run(args: argparse.Namespace) -> None:
    with throwaway_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        key_dir = Path(tmp) / "keys"
        url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
        seeded = seed_accounts(url, key_dir, 20)
        seed_intents(db_url, IntentRows(seeded.keys, seed=1), args.intents)
        os.environ.update(
            {
                "VRM_DATABASE_URL": url,
                "VRM_KEY_DIR": str(key_dir),
                "VRM_VENDOR_READS_PER_MINUTE": "1000000",
                "VRM_VENDOR_WRITES_PER_MINUTE": "1000000",
                "VRM_TOKEN_REQUESTS_PER_MINUTE": "1000000",
                **dict(item.split("=", 1) for item in args.env),
            }
        )
        from vrm.app import create_app  # after the settings are in the environment

        vault, floor = create_app(), create_floor()
        stop = await lifespan(vault)
        market = {"Authorization": f"Bearer {seeded.market_token}"}
        targets = await _open_intents(vault, market)
        valid_until = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        offer = json.dumps(
            {
                "price": "850.00",
                "currency": "EUR",
                "message": "In stock.",
                "valid_until": valid_until,
            }
        ).encode()
        basic = base64.b64encode(f"{seeded.client_id}:{seeded.client_secret}".encode()).decode()
        rotating = iter(range(10**9))

        def offer_call() -> Awaitable[int]:
            target = targets[next(rotating) % len(targets)]
            return asgi_call(
                vault,
                "POST",
                f"/vendor/v1/intents/{target}/offers",
                {**market, "content-type": "application/json"},
                offer,
            )()

        calls: list[tuple[str, Call, set[int]]] = [
            ("floor (bare async def)", asgi_call(floor, "GET", "/", {}), {200}),
            ("GET /healthz", asgi_call(vault, "GET", "/healthz", {}), {200}),
            (
                "GET /vendor/v1/profile",
                asgi_call(
                    vault,
                    "GET",
                    "/vendor/v1/profile",
                    {"Authorization": f"Bearer {seeded.profile_token}"},
                ),
                {200},
            ),
            (
                "GET /vendor/v1/intents (20)",
                asgi_call(vault, "GET", "/vendor/v1/intents?limit=20", market),
                {200},
            ),
            ("POST /vendor/v1/intents/{id}/offers", offer_call, {200, 201}),
            (
                "POST /oauth/token (client creds)",
                asgi_call(
                    vault,
                    "POST",
                    "/oauth/token",
                    {
                        "Authorization": f"Basic {basic}",
                        "content-type": "application/x-www-form-urlencoded",
                    },
                    b"grant_type=client_credentials&scope=intents%3Aread",
                ),
                {200},
            ),
        ]
        if args.only:
            calls = [
                c for c in calls if c[0].startswith("floor") or any(o in c[0] for o in args.only)
            ]
        results = []
        for name, call, expect in calls:
            results.append((name, await measure(name, call, args.requests, expect)))
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(args.requests // 4):
                    await call()
                profiler.disable()
                slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
                profiler.dump_stats(str(args.profile / f"{slug}.prof"))
        if args.plans:
            await print_plans(vault)
        await stop()

    floor_ms = results[0][1]
    print()
    print(f"CPU ms per request, in process, {args.requests} sequential requests each (PostgreSQL,")
    print(f"{args.intents:,} intents); 'x floor': how many floor requests the same CPU serves.")
    print()
    print(f"{'request':<38} {'cpu ms':>8} {'x floor':>8}")
    print("-" * 56)
    for name, ms in results:
        print(f"{name:<38} {ms:>8.3f} {ms / floor_ms:>8.1f}")


async def print_plans(vault: Any) -> None:
    """How PostgreSQL planned each statement the event-loop connections prepared (asyncpg
    prepares each on its first run): a statement that stays on custom plans is planned again
    on every run, which can cost more than running it."""
    print()
    print(f"{'generic':>8} {'custom':>7}  statement (event-loop connections)")
    for conn in vault.state.hot_pg._idle:
        found = await conn.raw.fetch(
            "SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements"
        )
        for generic, custom, statement in found:
            text = " ".join(statement.split())
            print(f"{generic:>8} {custom:>7}  {text[:110]}")


async def _open_intents(vault: Any, market: dict[str, str]) -> list[str]:
    """Open EUR intents past the listing's first page (so its page stays free of offers)."""
    ids: list[str] = []
    cursor = ""
    while len(ids) < 300:
        body = json.loads(
            await fetch(vault, f"/vendor/v1/intents?limit=100&currency=EUR{cursor}", market)
        )
        ids += [item["id"] for item in body["data"]]
        if not body.get("next_cursor"):
            break
        cursor = f"&cursor={body['next_cursor']}"
    return ids[100:] or ids


async def fetch(app: Any, path: str, headers: dict[str, str]) -> bytes:
    """The body of a GET through ASGI."""
    chunks: list[bytes] = []
    call = asgi_call(app, "GET", path, headers, sink=chunks)
    status = await call()
    if status != 200:
        raise SystemExit(f"GET {path}: status {status}")
    return b"".join(chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per request kind (2000)")
    parser.add_argument("--intents", type=int, default=2000, help="intents seeded (2000)")
    parser.add_argument("--only", action="append", default=[], help="only requests naming TEXT")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="an extra setting"
    )
    parser.add_argument("--profile", type=Path, help="write cProfile stats per request here")
    parser.add_argument(
        "--plans",
        action="store_true",
        help="print how PostgreSQL planned each statement the event-loop connections prepared",
    )
    # uvloop, as `vrm serve` runs (uvicorn picks it when installed): the loop's own costs
    # (readers, timers, thread wake-ups) are part of a request's.
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
