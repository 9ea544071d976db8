"""Vendor profile reads per second against PostgreSQL, beside a bare endpoint of the same app.

    .venv/bin/python bench/vendor_profile_reads.py [--clients 1 8 32] [--seconds 10]

Creates a throwaway PostgreSQL database (VRM_BENCH_DATABASE_URL's server, default the local
one), migrates it, creates an individual with a filled-in profile, a vendor app, a grant and an
access token through the services, starts the service with uvicorn in a subprocess, and drives
``GET /vendor/v1/profile`` (authenticated, decrypting, writing an access-log row per read) and
``GET /healthz`` (no database) with N concurrent keep-alive clients for the same duration each.
Prints requests per second, latency percentiles, and the ratio profile/bare for each N. The
machine is shared and noisy: compare the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(db_url: str, key_dir: Path) -> str:
    """Schema, one individual, one vendor app, one grant, one token. Returns the token."""
    from consent.grants.service import Decision, GrantService
    from consent.oauth.tokens import TokenService
    from consent.vendors.service import AppInput, register_app
    from vault.migrate import upgrade
    from vault.profile.service import ProfileService
    from vault.runtime import Runtime
    from vault.settings import Settings
    from vault.signup import sign_up

    settings = Settings(
        database_url=db_url,
        key_dir=key_dir,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    rt = Runtime.from_settings(settings)
    upgrade(rt.engine)
    token = "bench-" + uuid.uuid4().hex
    with rt.sessions() as db, db.begin():
        person = sign_up(db, rt, "bench@example.org", "a long bench password")
        profile = ProfileService(db, rt)
        profile.set_field(person, "given_name", "Ada")
        profile.set_field(person, "family_name", "Lovelace")
        profile.set_field(person, "phone", "+31 20 123 4567")
        profile.set_field(
            person,
            "address",
            {
                "street": "Keizersgracht 1",
                "postal_code": "1015",
                "locality": "Amsterdam",
                "country": "NL",
            },
        )
        app, _ = register_app(
            db,
            rt,
            AppInput(
                name="Bench Shop",
                homepage_url="https://shop.example",
                privacy_policy_url="https://shop.example/privacy",
                redirect_uris=["https://shop.example/cb"],
                purpose="Benchmarking reads.",
                accepted_agreements=["service-only"],
            ),
            owner_id=None,
            registered_via="cli",
        )
        fields = ["given_name", "family_name", "email", "phone", "address"]
        grant = GrantService(db, rt).decide(person.id, app, Decision(fields, "30d"), "service-only")
        TokenService(db, rt).issue(
            app,
            "openid " + " ".join(f"profile:{f}" for f in fields),
            grant=grant,
            access_token=token,
            expires_in=3600,
        )
    rt.engine.dispose()
    return token


async def drive(
    url: str, headers: dict[str, str], clients: int, seconds: float
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.get(url, headers=headers)
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return len(latencies), latencies, errors


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    admin = create_engine(
        ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"vrm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    server: subprocess.Popen[bytes] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            key_dir = Path(tmp) / "keys"
            token = prepare(db_url, key_dir)
            port = free_port()
            env = {
                **os.environ,
                "VRM_DATABASE_URL": db_url,
                "VRM_KEY_DIR": str(key_dir),
                "VRM_BASE_URL": f"http://127.0.0.1:{port}",
                # Measure throughput, not the per-app rate limit.
                "VRM_VENDOR_READS_PER_MINUTE": "1000000",
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
            auth = {"Authorization": f"Bearer {token}"}
            check = httpx.get(base + "/vendor/v1/profile", headers=auth)
            assert check.status_code == 200, check.text
            print(
                f"PostgreSQL, 1 uvicorn worker, {args.seconds:.0f} s per run, "
                f"{os.cpu_count()} cores shared with the load generator"
            )
            print(
                f"{'clients':>7}  {'endpoint':<22} {'req/s':>8} {'p50 ms':>8} "
                f"{'p95 ms':>8} {'errors':>6}"
            )
            for n in args.clients:
                results = {}
                for label, path, headers in (
                    ("GET /healthz", "/healthz", {}),
                    ("GET /vendor/v1/profile", "/vendor/v1/profile", auth),
                ):
                    count, lat, errors = asyncio.run(drive(base + path, headers, n, args.seconds))
                    rps = count / args.seconds
                    results[label] = rps
                    print(
                        f"{n:>7}  {label:<22} {rps:>8.0f} {pct(lat, 0.5):>8.1f} "
                        f"{pct(lat, 0.95):>8.1f} {errors:>6}"
                    )
                ratio = results["GET /vendor/v1/profile"] / results["GET /healthz"]
                print(f"{n:>7}  profile/bare ratio: {ratio:.2f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
