"""Vendor requests over HTTP with wrk, each as a ratio to a bare FastAPI endpoint (issue 11).

    make bench [BENCH_ARGS="--intents 10000 1000000 --workers 1 2"]
    .venv/bin/python bench/http.py --help

What it does: creates a throwaway PostgreSQL database (on VRM_BENCH_DATABASE_URL's server, by
default the local one), migrates it and seeds it through the project's services: an individual
with 5 filled-in profile fields, a vendor app holding a grant for them and an access token, a
market app (``intents:read offers:write``) with a client secret and its own token, and N
intents (COPY, encrypted like the service does; ``bench/intents.py``'s generator) published by
a few individuals. The apps' rate limits are raised out of the way. For each worker count it
starts two servers the way ``vrm serve --workers N`` runs uvicorn (the options are read from
this checkout's ``vrm serve``): the vault and the floor, ``bench/floor_app.py``, one ``async
def`` endpoint returning ``{"status": "ok"}``. It then drives each request with ``wrk -t1
-c32 -d10s --latency`` after a short warm-up:

- the floor (before and after the vault's requests; the ratios use the mean);
- ``GET /healthz`` (no database);
- ``GET /vendor/v1/profile``, 5 fields (token check, grant check, decryption, access log);
- ``GET /vendor/v1/intents``, the first page of 20, newest first (titles decrypted);
- ``POST /vendor/v1/intents/{id}/offers`` rotating over a few hundred open intents (the first
  offer on an intent answers 201, the ones after it replace it and answer 200);
- ``POST /oauth/token``, client credentials with HTTP Basic (a new token row each);
- the floor and the profile read again at one connection (latency rather than throughput).

How to read it: one table, one row per request, intents size and worker count, with req/s,
p50 and p99 latency and the ratio of req/s to the floor's at the same workers and
connections, measured minutes apart in the same run. Read the ratios, not the absolute
numbers: the machine is small and shared (wrk, PostgreSQL, both servers and whatever else is
running compete for the same cores), so absolute figures move by tens of percent between runs
and the floor before/after shows how much they moved within this one. "x 1w" is the req/s
with N workers over the req/s with the fewest workers measured. "cpu ms" is the CPU time
of the vault's (or the floor's) processes per request, "db ms" that of PostgreSQL's and
Redis's processes, and "idle" the share of the whole machine's CPU left idle during the
measurement: near 0%, a second worker has no core to run on. A row marked FAILED had
responses other than 2xx/3xx or socket errors (timeouts) and measures nothing useful; the
server output that was not an ordinary access-log line is printed after the table. The
database is dropped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's own directory comes first on sys.path and its name would hide
# the standard library's ``http`` package from everything imported after this point.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

# The imports must follow the sys.path fix above.
# ruff: noqa: E402
import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import mean
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.intents import IntentRows
from bench.intents import seed as seed_intents

ADMIN_URL = os.environ.get(
    "VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROFILE_FIELDS = ["given_name", "family_name", "email", "phone", "address"]
FLOOR_APP = "bench.floor_app:create_app"
VAULT_APP = "vrm.app:serve_app"
# Starts uvicorn as ``vrm serve`` does (``vrm.server.run``: with several workers, a listening
# socket each), with the options ``vrm serve`` passes (argv: app, JSON).
LAUNCH = "import json, sys; from vrm.server import run; run(sys.argv[1], **json.loads(sys.argv[2]))"


# -- the database -----------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty database on ADMIN_URL's server; yields its URL and drops it at the end."""
    url = make_url(ADMIN_URL)
    admin = create_engine(
        url.set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    name = f"vrm_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure here means: no server we can use
        admin.dispose()
        shown = url.render_as_string(hide_password=True)
        raise SystemExit(
            f"bench/http.py needs PostgreSQL: could not create a database through {shown} "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0]}). Start PostgreSQL or "
            "point VRM_BENCH_DATABASE_URL at a server where this user may create databases."
        ) from None
    try:
        yield url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Seeded:
    profile_token: str
    """Access token of the shop app, for the individual's 5 granted fields."""
    market_token: str
    """The market app's own token (client credentials): intents:read offers:write."""
    client_id: str
    client_secret: str
    keys: dict[uuid.UUID, Any]
    """Each publishing individual's data key, for encrypting the seeded intents."""


def seed_accounts(db_url: str, key_dir: Path, individuals: int) -> Seeded:
    """Schema, the individuals, the two vendor apps, the grant and the tokens, via services."""
    from consent.grants.service import Decision, GrantService
    from consent.oauth.tokens import TokenService
    from consent.vendors.service import AppInput, register_app
    from vault.keystore import KeyStore
    from vault.migrate import upgrade
    from vault.profile.service import ProfileService
    from vault.runtime import Runtime
    from vault.settings import Settings
    from vault.signup import sign_up

    # Cheap Argon2: only the seeding signs people up; no measured request checks a password.
    settings = Settings(
        database_url=db_url,
        key_dir=key_dir,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    rt = Runtime.from_settings(settings)
    try:
        upgrade(rt.engine)
        profile_token = "bench-" + uuid.uuid4().hex
        market_token = "bench-" + uuid.uuid4().hex
        with rt.sessions() as db, db.begin():
            person = sign_up(db, rt, "ada@example.org", "a long bench password")  # email
            profile = ProfileService(db, rt)
            profile.set_field(person, "given_name", "Ada")
            profile.set_field(person, "family_name", "Lovelace")
            profile.set_field(person, "phone", "+31 20 123 4567")
            profile.set_field(
                person,
                "address",
                {
                    "street": "Keizersgracht 1",
                    "postal_code": "1015 CJ",
                    "locality": "Amsterdam",
                    "country": "NL",
                },
            )
            shop, _ = register_app(
                db,
                rt,
                AppInput(
                    name="Bench Shop",
                    homepage_url="https://shop.example",
                    privacy_policy_url="https://shop.example/privacy",
                    redirect_uris=["https://shop.example/cb"],
                    purpose="Deliver orders to the address you choose.",
                    accepted_agreements=["service-only"],
                ),
                owner_id=None,
                registered_via="cli",
            )
            grant = GrantService(db, rt).decide(
                person.id, shop, Decision(PROFILE_FIELDS, "30d"), "service-only"
            )
            TokenService(db, rt).issue(
                shop,
                "openid " + " ".join(f"profile:{f}" for f in PROFILE_FIELDS),
                grant=grant,
                access_token=profile_token,
                expires_in=86400,
            )
            market, secret = register_app(
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
                with_secret=True,
            )
            assert secret is not None
            TokenService(db, rt).issue(
                market,
                "intents:read offers:write",
                grant=None,
                access_token=market_token,
                expires_in=86400,
            )
            store = KeyStore(db, rt.keys)
            keys = {}
            for n in range(individuals):
                publisher = sign_up(db, rt, f"buyer-{n}@example.org", "a long bench password")
                keys[publisher.id] = store.for_owner(publisher.id)
            return Seeded(profile_token, market_token, market.client_id, secret, keys)
    finally:
        rt.engine.dispose()


# -- the servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vrm_serve_options(env: dict[str, str]) -> dict[str, Any]:
    """The keyword arguments ``vrm serve`` (vrm/cli/serve.py) passes to ``vrm.server.run``.

    Calls the command with ``vrm.server.run`` replaced, so the floor and the vault are served
    exactly as this checkout's ``vrm serve`` would serve the vault.
    """
    from vault.settings import get_settings
    from vrm import server
    from vrm.cli.serve import serve

    captured: dict[str, Any] = {}
    saved = dict(os.environ)
    real_run = server.run
    os.environ.update(env)
    get_settings.cache_clear()
    server.run = lambda app, **options: captured.update(app=app, **options)
    try:
        serve(host="127.0.0.1", port=8000, workers=1, reload=False)
    finally:
        server.run = real_run
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    if captured.pop("app", None) != VAULT_APP:
        raise SystemExit(
            "vrm serve no longer starts vrm.server.run('vrm.app:serve_app', ...); "
            "teach bench/http.py how it serves the vault now."
        )
    for key in ("host", "port", "workers", "reload"):
        captured.pop(key, None)
    return captured


LIFECYCLE = re.compile(
    r"^INFO:\s+(Started server process|Started parent process|Waiting for application|"
    r"Application (startup|shutdown) complete|Uvicorn running on|Shutting down|"
    r"Finished server process|Stopping parent process|Waiting for child process|"
    r"Waiting for connections to close|Received SIGTERM|Terminated child process)"
)
ACCESS = re.compile(r'"[A-Z]+ \S+ HTTP/[\d.]+" (\d{3})')


class Server:
    """One uvicorn (a parent and N workers) in a session of its own, output to a log file."""

    def __init__(
        self,
        name: str,
        app: str,
        workers: int,
        options: dict[str, Any],
        env: dict[str, str],
        log_path: Path,
    ) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._read = 0
        options = {**options, "host": "127.0.0.1", "port": self.port, "workers": workers}
        self.proc = subprocess.Popen(  # noqa: S603 (our own interpreter, our own code)
            [sys.executable, "-c", LAUNCH, app, json.dumps(options)],
            env={**os.environ, **env, "VRM_BASE_URL": self.base},
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str, timeout: float = 90) -> None:
        """Until ``path`` answers 200 and every worker has logged that it started."""
        deadline = time.monotonic() + timeout
        answered = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"the {self.name} server exited ({self.proc.returncode}) while starting:\n"
                    + self.tail()
                )
            if not answered:
                with contextlib.suppress(httpx.HTTPError):
                    answered = httpx.get(self.base + path, timeout=5).status_code == 200
            started = self.log_path.read_text(errors="replace").count("Application startup comp")
            if answered and started >= self.workers:
                return
            time.sleep(0.2)
        if not answered:
            raise SystemExit(f"the {self.name} server did not answer {path}:\n" + self.tail())
        # Answering, but fewer startup lines than workers (say, a lower log level): go on.

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def new_output(self) -> tuple[Counter[str], list[str]]:
        """Since the last call: status codes in access-log lines, and every other line."""
        with self.log_path.open("rb") as f:
            f.seek(self._read)
            chunk = f.read()
        # Only whole lines; a partial last line is read next time.
        end = chunk.rfind(b"\n") + 1
        self._read += end
        statuses: Counter[str] = Counter()
        other: list[str] = []
        for line in chunk[:end].decode(errors="replace").splitlines():
            if m := ACCESS.search(line):
                statuses[m.group(1)] += 1
            elif line.strip() and not LIFECYCLE.match(line):
                other.append(line)
        return statuses, other

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session: parent and workers
                self.proc.wait()
        self._log.close()


# -- wrk --------------------------------------------------------------------------------------


@dataclass
class Request:
    label: str
    server: str
    """"floor" or "vault"."""
    path: str
    """The URL path wrk is given (an offer script sets its own paths)."""
    kind: str = "get"
    """How ``check`` sends one by hand: "get", "offer" or "token"."""
    headers: dict[str, str] = field(default_factory=dict)
    lua: str | None = None
    """A wrk script (for POSTs); it sets the method, headers and body itself."""


@dataclass
class Result:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx_3xx: int
    socket_errors: dict[str, int]
    problems: list[str] = field(default_factory=list)
    cpu_ms: float = float("nan")
    """CPU time the server's processes spent per request (user + system, parent and
    workers): unlike req/s, hardly moved by what else the machine runs."""
    db_ms: float = float("nan")
    """CPU time PostgreSQL's and Redis's processes spent per request (every one of them on
    this machine: nothing else should run during a benchmark)."""
    split: str = ""
    """With several workers, each one's share of their CPU (%): how evenly they served."""
    idle: float = float("nan")
    """The share of the machine's CPU time left idle during the measurement (all cores): near
    0, more workers have nothing to run on."""


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(out: str, percentile: str) -> float:
    m = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> Result:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if rps is None or total is None:
        raise SystemExit("could not read wrk's output:\n" + out)
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
        if sock
        else {}
    )
    return Result(
        requests=int(total.group(1)),
        rps=float(rps.group(1)),
        p50_ms=_ms(out, "50"),
        p99_ms=_ms(out, "99"),
        non_2xx_3xx=int(non.group(1)) if non else 0,
        socket_errors={k: v for k, v in errors.items() if v},
    )


def run_wrk(
    wrk: str,
    base: str,
    request: Request,
    connections: int,
    seconds: float,
    timeout: float,
    scripts: Path,
) -> Result:
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout))}s",
        "--latency",
    ]
    for name, value in request.headers.items():
        command += ["-H", f"{name}: {value}"]
    if request.lua is not None:
        script = scripts / (re.sub(r"\W+", "-", request.label).strip("-") + ".lua")
        script.write_text(request.lua)
        command += ["-s", str(script)]
    command.append(base + request.path)
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def offer_script(token: str, intent_ids: list[str]) -> str:
    valid_until = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps(
        {
            "price": "850.00",
            "currency": "EUR",
            "message": "In stock; delivered within three working days.",
            "valid_until": valid_until,
        }
    )
    ids = ", ".join(_lua_string(i) for i in intent_ids)
    return f"""
local ids = {{{ids}}}
local body = {_lua_string(body)}
local headers = {{
  ["Authorization"] = {_lua_string("Bearer " + token)},
  ["Content-Type"] = "application/json",
}}
local n = 0
request = function()
  n = n % #ids + 1
  return wrk.format("POST", "/vendor/v1/intents/" .. ids[n] .. "/offers", headers, body)
end
"""


def token_script(client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return f"""
wrk.method = "POST"
wrk.body = "grant_type=client_credentials&scope=intents%3Aread"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = {_lua_string("Basic " + basic)}
"""


# -- checks before measuring ------------------------------------------------------------------


def settle(db_url: str) -> None:
    """``VACUUM ANALYZE``, before each worker count: every measurement starts from a database
    whose statistics know what the earlier ones wrote. Without it the two-worker listing ran
    after the one-worker offers (thousands of offer rows and their dead versions) on plans made
    when the offers table was empty: its database CPU per listing doubled."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def analyze(db_url: str) -> None:
    """``ANALYZE``, before each measurement. The token row writes some 20,000 tokens in a few
    seconds into a table that held a handful; statements the server prepared while it was
    that small keep their generic plans (on a handful of rows a sequential scan is the
    cheapest) until the table's statistics change, which autovacuum's analyze does in a
    running vault within about a minute (after 50 rows and a tenth of the table changed,
    looked at every minute). Without it the one-connection profile read after the token row
    took 1.92 ms of the database's CPU per read (323 reads/s), 0.3 ms with it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def offer_targets(base: str, token: str, wanted: int) -> list[str]:
    """Open EUR intents to offer on, skipping the 100 newest (the listing's first page stays
    free of this app's offers, so it reads the same before and after the offer runs)."""
    found: list[str] = []
    cursor = None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        while len(found) < wanted + 100:
            params = {"currency": "EUR", "limit": "100"} | ({"cursor": cursor} if cursor else {})
            page = client.get("/vendor/v1/intents", params=params)
            page.raise_for_status()
            body = page.json()
            found += [item["id"] for item in body["data"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
    if len(found) < wanted + 100:
        raise SystemExit(f"only {len(found)} open EUR intents to offer on; seed more intents")
    return found[100 : 100 + wanted]


def check(base: str, request: Request, seeded: Seeded, offer_on: str) -> None:
    """One request of each kind, sent by hand, must answer as the measurement expects."""
    with httpx.Client(base_url=base, timeout=60) as client:
        if request.kind == "offer":
            response = client.post(
                f"/vendor/v1/intents/{offer_on}/offers",
                headers={"Authorization": f"Bearer {seeded.market_token}"},
                json={
                    "price": "850.00",
                    "currency": "EUR",
                    "valid_until": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
                },
            )
        elif request.kind == "token":
            response = client.post(
                request.path,
                auth=(seeded.client_id, seeded.client_secret),
                data={"grant_type": "client_credentials", "scope": "intents:read"},
            )
        else:
            response = client.get(request.path, headers=request.headers)
    problem = None
    if response.status_code not in (200, 201):
        problem = f"answered {response.status_code}: {response.text[:300]}"
    elif request.path == "/vendor/v1/profile" and len(response.json()["fields"]) != 5:
        problem = f"returned the fields {sorted(response.json()['fields'])}, not 5"
    elif request.path.startswith("/vendor/v1/intents?") and len(response.json()["data"]) != 20:
        problem = f"returned {len(response.json()['data'])} intents, not 20"
    if problem:
        raise SystemExit(f"{request.label} {problem}")


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Row:
    intents: int
    workers: int
    label: str
    connections: int
    result: Result
    floor_rps: float = float("nan")
    note: str = ""


@dataclass
class Options:
    wrk: str
    connections: int
    seconds: float
    warmup: float
    timeout: float
    offer_intents: int
    only: list[str] = field(default_factory=list)
    py_spy: Path | None = None


def requests_of(seeded: Seeded, offer_on: list[str]) -> tuple[Request, list[Request]]:
    """The floor and the vault's requests."""
    profile_auth = {"Authorization": f"Bearer {seeded.profile_token}"}
    market_auth = {"Authorization": f"Bearer {seeded.market_token}"}
    floor = Request("floor (bare async def)", "floor", "/")
    vault = [
        Request("GET /healthz", "vault", "/healthz"),
        Request("GET /vendor/v1/profile", "vault", "/vendor/v1/profile", headers=profile_auth),
        Request(
            "GET /vendor/v1/intents (20)",
            "vault",
            "/vendor/v1/intents?limit=20",
            headers=market_auth,
        ),
        Request(
            "POST /vendor/v1/intents/{id}/offers",
            "vault",
            "/vendor/v1/intents",
            kind="offer",
            lua=offer_script(seeded.market_token, offer_on),
        ),
        Request(
            "POST /oauth/token (client creds)",
            "vault",
            "/oauth/token",
            kind="token",
            lua=token_script(seeded.client_id, seeded.client_secret),
        ),
    ]
    return floor, vault


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and its descendants (Linux /proc)."""
    return sum(tree_cpu_seconds(root).values())


@dataclass(frozen=True)
class ProcessCpu:
    pid: int
    parent: int
    name: str
    seconds: float
    """User + system CPU seconds so far."""


def processes() -> Iterator[ProcessCpu]:
    """Every process on the machine, from ``/proc/<pid>/stat`` (Linux)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        seconds = (int(fields[11]) + int(fields[12])) / _TICK
        yield ProcessCpu(int(entry.name), int(fields[1]), name, seconds)


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """User + system CPU seconds of process ``root`` and of each of its descendants."""
    every = {p.pid: p for p in processes()}
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, process in every.items():
            if process.parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: every[pid].seconds if pid in every else 0.0 for pid in tree}


def worker_split(before: dict[int, float], after: dict[int, float]) -> str:
    """How the CPU the processes used was shared among the busiest (the workers), as
    percentages: far from even, one worker holds most of wrk's connections and the other idles
    (uvicorn's workers accept from one shared socket)."""
    used = sorted((after[pid] - before.get(pid, 0.0) for pid in after), reverse=True)
    busy = [u for u in used if u > 0.05 * used[0]] if used and used[0] > 0 else []
    total = sum(busy)
    return "/".join(f"{100 * u / total:.0f}" for u in busy) if len(busy) > 1 else ""


DATABASES = ("postgres", "redis-server")
"""The processes whose CPU ``db ms`` counts (by their command name)."""


def named_cpu_seconds(names: tuple[str, ...] = DATABASES) -> float:
    """User + system CPU seconds of every process whose command name is one of ``names``."""
    return sum(p.seconds for p in processes() if p.name in names)


def machine_ticks() -> tuple[int, int]:
    """(idle, all) CPU ticks of the whole machine so far (``/proc/stat``; iowait is idle)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks[:8])


def combine(results: list[Result]) -> Result:
    """Several runs of one request as one: mean req/s and p50, worst p99, every problem."""
    return Result(
        requests=sum(r.requests for r in results),
        rps=mean(r.rps for r in results),
        p50_ms=mean(r.p50_ms for r in results),
        p99_ms=max(r.p99_ms for r in results),
        non_2xx_3xx=sum(r.non_2xx_3xx for r in results),
        socket_errors={},
        problems=[p for r in results for p in r.problems],
        cpu_ms=mean(r.cpu_ms for r in results),
        db_ms=mean(r.db_ms for r in results),
        idle=mean(r.idle for r in results),
        split=" ".join(r.split for r in results if r.split),
    )


def _py_spy(
    opts: Options, server: Server, request: Request, connections: int, workers: int
) -> subprocess.Popen[bytes] | None:
    """With ``--py-spy DIR``: sample the vault's processes (``--gil``: where the Python time
    goes) while wrk drives one request, as collapsed stacks for flame graphs or counting."""
    if opts.py_spy is None or server.name != "vault":
        return None
    name = re.sub(r"[^a-z0-9]+", "-", request.label.lower()).strip("-")
    out = opts.py_spy / f"{name}-{connections}c-{workers}w.txt"
    return py_spy_record(server, opts.seconds, out)


def py_spy_record(server: Server, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``server``'s processes (``--gil``) for ``seconds``, collapsed stacks
    written to ``out`` (count them with ``bench/stacks.py``)."""
    return subprocess.Popen(  # noqa: S603 (a tool of this environment, on our own server)
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--gil",
            "--subprocesses",
            "--format",
            "raw",
            "--duration",
            str(int(seconds)),
            "--pid",
            str(server.proc.pid),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(
    opts: Options,
    servers: dict[str, Server],
    intents: int,
    workers: int,
    seeded: Seeded,
    scripts: Path,
    server_output: Counter[str],
    db_url: str,
) -> list[Row]:
    """Every request against servers with ``workers`` workers; one row each (one per floor)."""
    vault = servers["vault"]
    targets = offer_targets(vault.base, seeded.market_token, opts.offer_intents)
    floor, requests = requests_of(seeded, targets)
    for request in requests:
        check(vault.base, request, seeded, offer_on=targets[0])
    profile = requests[1]
    many = opts.connections
    plan = [(floor, many), *((r, many) for r in requests), (floor, many), (floor, 1), (profile, 1)]
    if opts.only:
        plan = [(r, c) for r, c in plan if r is floor or any(o in r.label for o in opts.only)]

    measured: list[tuple[Request, int, Result]] = []
    for request, connections in plan:
        server = servers[request.server]
        print(f"  {workers} worker(s): {request.label}, {connections} conn", flush=True)
        analyze(db_url)
        if opts.warmup > 0:
            run_wrk(opts.wrk, server.base, request, connections, opts.warmup, opts.timeout, scripts)
        server.new_output()  # the checks' and the warm-up's lines are not this measurement's
        spy = _py_spy(opts, server, request, connections, workers)
        cpu_before, db_before = tree_cpu_seconds(server.proc.pid), named_cpu_seconds()
        idle_before, all_before = machine_ticks()
        result = run_wrk(
            opts.wrk, server.base, request, connections, opts.seconds, opts.timeout, scripts
        )
        cpu_after = tree_cpu_seconds(server.proc.pid)
        if workers > 1:
            result.split = worker_split(cpu_before, cpu_after)
        if result.requests:
            used = sum(cpu_after.values()) - sum(cpu_before.values())
            result.cpu_ms = used * 1000 / result.requests
            result.db_ms = (named_cpu_seconds() - db_before) * 1000 / result.requests
        idle_after, all_after = machine_ticks()
        result.idle = (idle_after - idle_before) / max(1, all_after - all_before)
        if spy is not None:
            spy.wait(timeout=opts.seconds + 30)
        statuses, other = server.new_output()
        if result.non_2xx_3xx:
            result.problems.append(f"{result.non_2xx_3xx} non-2xx/3xx")
        if result.socket_errors:
            errors = ", ".join(f"{k} {v}" for k, v in result.socket_errors.items())
            result.problems.append(f"socket errors {errors}")
        bad = {s: n for s, n in statuses.items() if not s.startswith("2")}
        if bad:
            logged = ", ".join(f"{n} x {s}" for s, n in sorted(bad.items()))
            result.problems.append(f"server logged {logged}")
        if other:
            result.problems.append(f"{len(other)} other server log lines")
            server_output.update(f"[{server.name}] {line[:240]}" for line in other)
        measured.append((request, connections, result))

    rows: list[Row] = []
    for request, connections, result in measured:
        floors = [r for q, c, r in measured if q is floor and c == connections]
        if request is floor:
            if result is not floors[0]:
                continue  # folded into the first floor row
            row = Row(intents, workers, floor.label, connections, combine(floors))
            if len(floors) > 1:
                row.note = "floor before/after " + " / ".join(f"{r.rps:,.0f}" for r in floors)
        else:
            row = Row(intents, workers, request.label, connections, result)
        row.floor_rps = mean(r.rps for r in floors)
        rows.append(row)
    return rows


def print_table(rows: list[Row], opts: Options, server_options: dict[str, Any]) -> None:
    fewest = min(r.workers for r in rows)
    base = {(r.intents, r.label, r.connections): r.result.rps for r in rows if r.workers == fewest}
    print()
    print(
        f"wrk -t1 -c{opts.connections} -d{opts.seconds:.0f}s --latency (after {opts.warmup:.0f} s "
        f"of warm-up) on {os.cpu_count()} cores shared by wrk, PostgreSQL and the servers; "
        "vrm.server.run (uvicorn) options from vrm serve: "
        f"{json.dumps(server_options, sort_keys=True)}"
    )
    print("ratio: req/s over the floor's req/s, same run, same workers and connections.")
    print(
        "cpu ms: CPU time (user + system) of the server's processes per request; PostgreSQL's "
        "and wrk's are not in it."
    )
    print(
        "db ms: CPU time of PostgreSQL's and Redis's processes per request. idle: the share of "
        "the machine's CPU left idle meanwhile (all cores)."
    )
    print()
    header = (
        f"{'intents':>9}  {'workers':>7}  {'request':<35} {'conns':>5}  {'req/s':>8}  "
        f"{'p50 ms':>8}  {'p99 ms':>8}  {'ratio':>6}  {'x 1w':>5}  {'cpu ms':>6}  {'db ms':>5}  "
        f"{'idle':>4}  note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        res = r.result
        ratio = res.rps / r.floor_rps if r.floor_rps else float("nan")
        scale = ""
        if r.workers != fewest and (r.intents, r.label, r.connections) in base:
            scale = f"{res.rps / base[(r.intents, r.label, r.connections)]:.2f}"
        notes = [r.note] if r.note else []
        if res.split:
            notes.append(f"workers' CPU {res.split}%")
        if res.problems:
            notes.insert(0, "FAILED: " + "; ".join(res.problems))
        print(
            f"{r.intents:>9,}  {r.workers:>7}  {r.label:<35} {r.connections:>5}  "
            f"{res.rps:>8,.0f}  {res.p50_ms:>8.2f}  {res.p99_ms:>8.2f}  {ratio:>6.3f}  "
            f"{scale:>5}  {res.cpu_ms:>6.2f}  {res.db_ms:>5.2f}  {res.idle:>4.0%}  "
            f"{'; '.join(notes)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="The module docstring (bench/http.py) says how to read the table.",
    )
    parser.add_argument(
        "--intents",
        type=int,
        nargs="+",
        default=[10_000],
        help="intents in the database; several sizes are seeded in stages and everything is "
        "measured at each (e.g. 10000 1000000). Default 10000.",
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="uvicorn worker processes (1 2)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement (10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before each (2)")
    parser.add_argument(
        "--timeout", type=float, default=10, help="wrk's per-request timeout in seconds (10)"
    )
    parser.add_argument(
        "--individuals", type=int, default=100, help="individuals publishing the intents (100)"
    )
    parser.add_argument(
        "--offer-intents",
        type=int,
        default=500,
        help="open intents the offer POSTs rotate over (500); offers on one intent would "
        "queue on its row lock",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for the vault's processes, e.g. VRM_REDIS_URL=redis://"
        "127.0.0.1:6379/0 (repeatable)",
    )
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="override one uvicorn.run option for both servers, e.g. http='\"httptools\"' or "
        "access_log=false (repeatable; to compare servers before changing vrm serve)",
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="measure only the requests whose label contains TEXT (and the floor; repeatable)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample the vault with py-spy (--gil) during each measurement, collapsed stacks "
        "written to DIR (count them with bench/stacks.py)",
    )
    parser.add_argument(
        "--logs", type=Path, help="keep the servers' output in this directory (default: dropped)"
    )
    args = parser.parse_args()
    if shutil.which(args.wrk) is None:
        raise SystemExit(f"wrk not found ({args.wrk}); `make bench` installs Debian's wrk")
    opts = Options(
        args.wrk,
        args.connections,
        args.duration,
        args.warmup,
        args.timeout,
        args.offer_intents,
        args.only,
        args.py_spy,
    )
    if opts.py_spy is not None:
        opts.py_spy.mkdir(parents=True, exist_ok=True)
    extra_env = dict(item.split("=", 1) for item in args.env)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.server_option)}
    sizes = sorted(set(args.intents))
    started = time.monotonic()

    with throwaway_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        logs = args.logs or work
        logs.mkdir(parents=True, exist_ok=True)
        key_dir = work / "keys"
        sqlalchemy_url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
        seeded = seed_accounts(sqlalchemy_url, key_dir, args.individuals)
        print(
            f"seeded an individual with {len(PROFILE_FIELDS)} fields, 2 vendor apps and "
            f"{args.individuals} publishing individuals in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        env = {
            "VRM_DATABASE_URL": sqlalchemy_url,
            "VRM_KEY_DIR": str(key_dir),
            # Measure the work of a request, not the per-app rate limits.
            "VRM_VENDOR_READS_PER_MINUTE": "1000000",
            "VRM_VENDOR_WRITES_PER_MINUTE": "1000000",
            "VRM_TOKEN_REQUESTS_PER_MINUTE": "1000000",
            **extra_env,
        }
        server_options = vrm_serve_options(env) | overrides
        generator = IntentRows(seeded.keys, seed=1)
        rows: list[Row] = []
        server_output: Counter[str] = Counter()
        seeded_intents = 0
        seed_seconds = 0.0
        for size in sizes:
            seconds = seed_intents(db_url, generator, size - seeded_intents)
            seed_seconds += seconds
            print(
                f"seeded {size - seeded_intents:,} intents (total {size:,}) in {seconds:.1f} s",
                flush=True,
            )
            seeded_intents = size
            for workers in args.workers:
                settle(db_url)
                servers = {
                    "floor": Server(
                        "floor",
                        FLOOR_APP,
                        workers,
                        server_options,
                        {},
                        logs / f"floor-{size}-{workers}w.log",
                    ),
                    "vault": Server(
                        "vault",
                        VAULT_APP,
                        workers,
                        server_options,
                        env,
                        logs / f"vault-{size}-{workers}w.log",
                    ),
                }
                try:
                    servers["floor"].wait_ready("/")
                    servers["vault"].wait_ready("/healthz")
                    rows += measure(
                        opts, servers, size, workers, seeded, work, server_output, db_url
                    )
                finally:
                    for server in servers.values():
                        server.stop()
                for server in servers.values():  # what they said while shutting down
                    _, other = server.new_output()
                    server_output.update(f"[{server.name}] {line[:240]}" for line in other)

        print_table(rows, opts, server_options)
        if server_output:
            print()
            print("Server output other than access-log and start/stop lines (count x line):")
            for line, count in server_output.most_common(40):
                print(f"  {count:>6} x {line}")
        print()
        print(
            f"whole run {time.monotonic() - started:.0f} s, of which seeding intents "
            f"{seed_seconds:.0f} s"
        )
        if args.logs:
            print(f"server logs kept in {args.logs}")


if __name__ == "__main__":
    main()
