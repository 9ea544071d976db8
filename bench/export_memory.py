"""Export memory by access-log size: the archive grows with the rows, the memory does not.

    .venv/bin/python bench/export_memory.py [--rows 1000 10000 100000]
                                            [--database sqlite|postgresql]

Creates a throwaway database (SQLite: a file in a temporary directory; PostgreSQL: a new
database on VRM_BENCH_DATABASE_URL's server, default the local one, dropped at the end) and
migrates it. For each N it creates one individual with a filled-in profile and a grant to a
vendor app through the services, inserts N access-log rows for that grant in bulk, and then
exports the individual as the portal and ``vrm export`` do: ``export.prepare`` in a committed
transaction, then ``export.stream`` from its read-only snapshot, each chunk written to a file
in the temporary directory (as a socket would take it, so the archive is never held whole).

Each export runs twice, each time in a fresh process (this script with ``--child``), so
neither the setup's bulk inserts nor an earlier, smaller export leave memory behind that the
next one reuses unseen; in each, a warm-up export of an empty individual comes first, so
imports, caches and the connection pool are not counted. The first run measures the time
and the peak resident set growth: the kernel's high-water mark (VmHWM) is reset through
/proc/self/clear_refs just before the export and read after it, minus the resident size
before (without /proc, ru_maxrss, which cannot be reset). The second run measures the peak
Python heap with tracemalloc (which slows it down, so it is not timed). Each archive is then
opened and its access_log.csv counted, so a short archive cannot pass as a small one.

Prints per N: rows, archive MB, the page's progress estimate (X-Export-Estimate) in MB, peak
traced MB, RSS growth MB, seconds, and the ratio of peak traced memory to the archive size.
The machine is shared and noisy: read the memory columns and the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consent.grants.models import AccessLogEntry  # noqa: E402
from consent.grants.service import Decision, GrantService  # noqa: E402
from consent.vendors.service import AppInput, register_app  # noqa: E402
from vault.migrate import upgrade  # noqa: E402
from vault.portability import export  # noqa: E402
from vault.profile.service import ProfileService  # noqa: E402
from vault.runtime import Runtime  # noqa: E402
from vault.settings import Settings  # noqa: E402
from vault.signup import sign_up  # noqa: E402
from vrm.wiring import portability  # noqa: E402

ADMIN_URL = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
FIELDS = ["given_name", "family_name", "email", "phone", "address"]
INSERT_BATCH = 10_000
MB = 1024 * 1024


@dataclass
class Run:
    rows: int
    archive_bytes: int
    estimate_bytes: int
    peak_traced: int
    rss_growth: int
    seconds: float


def individual(rt: Runtime, rows: int) -> uuid.UUID:
    """One person with a profile and a grant to a vendor, read ``rows`` times by it."""
    with rt.sessions() as db, db.begin():
        person = sign_up(
            db, rt, f"bench-{uuid.uuid4().hex[:8]}@example.org", "a long bench password"
        )
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
                purpose="Benchmarking exports.",
                accepted_agreements=["service-only"],
            ),
            owner_id=None,
            registered_via="cli",
        )
        GrantService(db, rt).decide(person.id, app, Decision(FIELDS, "30d"), "service-only")
        person_id, app_id, app_name = person.id, app.id, app.name
    # Reads as the vendor API logs them: all the granted fields, at irregular moments.
    rng = random.Random(rows)
    moment = datetime.now(UTC) - timedelta(days=365)
    for first in range(0, rows, INSERT_BATCH):
        batch = []
        for _ in range(min(INSERT_BATCH, rows - first)):
            moment += timedelta(seconds=rng.expovariate(1 / 300))
            batch.append(
                {
                    "id": uuid.uuid4(),
                    "individual_id": person_id,
                    "app_id": app_id,
                    "app_name": app_name,
                    "fields": FIELDS,
                    "accessed_at": moment,
                }
            )
        with rt.sessions() as db, db.begin():
            db.execute(insert(AccessLogEntry), batch)
    return person_id


def export_to(rt: Runtime, owner_id: uuid.UUID, path: Path) -> tuple[int, int]:
    """Export as `vrm export` does; returns the archive's size and the page's estimate."""
    parts = portability(rt)
    with rt.sessions() as db, db.begin():
        estimate = export.prepare(db, rt, parts, owner_id)
    size = 0
    with path.open("wb") as out:
        for chunk in export.stream(rt, parts, owner_id):
            out.write(chunk)
            size += len(chunk)
    return size, estimate


def _status_kib(name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextmanager
def rss_growth() -> Iterator[Callable[[], int]]:
    """Yields a function giving the peak RSS growth (bytes) inside the block, once it ends."""
    gc.collect()
    resettable = _reset_peak()
    before = _status_kib("VmRSS")
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = [0]
    yield lambda: result[0]
    peak = _status_kib("VmHWM")
    if resettable and peak is not None and before is not None:
        result[0] = (peak - before) * 1024
    else:
        result[0] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max_before) * 1024


def child(settings: Settings, warm_up: uuid.UUID, owner_id: uuid.UUID, out: Path) -> None:
    """One measured export in a fresh process, after a warm-up export; prints JSON."""
    rt = Runtime.from_settings(settings)
    try:
        export_to(rt, warm_up, out)  # imports, caches, the connection pool
        if os.environ.get("BENCH_TRACE"):
            gc.collect()
            tracemalloc.start()
            size, estimate = export_to(rt, owner_id, out)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(json.dumps({"size": size, "estimate": estimate, "peak_traced": peak}))
            return
        with rss_growth() as growth:
            start = time.perf_counter()
            size, estimate = export_to(rt, owner_id, out)
            seconds = time.perf_counter() - start
        print(json.dumps({"size": size, "seconds": seconds, "rss_growth": growth()}))
    finally:
        rt.engine.dispose()


def in_child(
    settings: Settings, warm_up: uuid.UUID, owner_id: uuid.UUID, out: Path, *, trace: bool
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_SETTINGS": settings.model_dump_json()}
    if trace:
        env["BENCH_TRACE"] = "1"
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, __file__, "--child", str(warm_up), str(owner_id), str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the measured export failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def access_rows_in(path: Path) -> int:
    with zipfile.ZipFile(path) as zf, zf.open("access_log.csv") as fh:
        return sum(1 for _ in csv.reader(io.TextIOWrapper(fh, encoding="utf-8"))) - 1


def measure(rt: Runtime, settings: Settings, warm_up: uuid.UUID, rows: int, tmp: Path) -> Run:
    owner_id = individual(rt, rows)
    out = tmp / f"export-{rows}.zip"
    timed = in_child(settings, warm_up, owner_id, out, trace=False)
    found = access_rows_in(out)
    assert found == rows, f"the archive holds {found} access-log rows, not {rows}"
    traced = in_child(settings, warm_up, owner_id, out, trace=True)
    out.unlink()
    return Run(
        rows,
        timed["size"],
        traced["estimate"],
        traced["peak_traced"],
        timed["rss_growth"],
        timed["seconds"],
    )


def report(runs: list[Run], backend: str) -> None:
    print(
        f"{backend}, Python {platform.python_version()}, {os.cpu_count()} cores (shared); "
        "each export in a fresh process, streamed to a file"
    )
    header = (
        f"{'rows':>8} {'archive MB':>11} {'estimate MB':>12} {'peak traced MB':>15} "
        f"{'RSS growth MB':>14} {'seconds':>8} {'traced/archive':>15}"
    )
    print(header)
    for run in runs:
        print(
            f"{run.rows:>8,} {run.archive_bytes / MB:>11.2f} {run.estimate_bytes / MB:>12.2f} "
            f"{run.peak_traced / MB:>15.2f} {run.rss_growth / MB:>14.1f} {run.seconds:>8.2f} "
            f"{run.peak_traced / run.archive_bytes:>15.3f}"
        )
    if len(runs) > 1:
        first, last = runs[0], runs[-1]
        print(
            f"from {first.rows:,} to {last.rows:,} rows: archive x"
            f"{last.archive_bytes / first.archive_bytes:.0f}, peak traced memory x"
            f"{last.peak_traced / first.peak_traced:.1f}, RSS growth "
            f"{first.rss_growth / MB:.1f} -> {last.rss_growth / MB:.1f} MB"
        )


def run_all(db_url: str, rows: list[int], tmp: Path) -> list[Run]:
    settings = Settings(
        database_url=db_url,
        key_dir=tmp / "keys",
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
    )
    rt = Runtime.from_settings(settings)
    try:
        upgrade(rt.engine)
        warm_up = individual(rt, 0)
        return [measure(rt, settings, warm_up, n, tmp) for n in rows]
    finally:
        rt.engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        warm_up, owner_id, out = sys.argv[2:5]
        settings = Settings.model_validate_json(os.environ["BENCH_SETTINGS"])
        child(settings, uuid.UUID(warm_up), uuid.UUID(owner_id), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    rows = sorted(args.rows)

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.database == "sqlite":
            runs = run_all(f"sqlite:///{tmp / 'bench.db'}", rows, tmp)
            report(runs, "SQLite (WAL)")
            return
        admin = create_engine(
            ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
        )
        database = f"vrm_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        try:
            db_url = make_url(ADMIN_URL).set(database=database)
            runs = run_all(db_url.render_as_string(hide_password=False), rows, tmp)
            with admin.connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
            report(runs, f"PostgreSQL {version}")
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
