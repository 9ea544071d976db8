"""The published checkpoint's lookup with a witness quorum, at many checkpoints.

    .venv/bin/python bench/quorum_lookup.py [--checkpoints 100000]

Creates a throwaway PostgreSQL database (VRM_BENCH_DATABASE_URL's server, default the local
one) holding only ``ledger_checkpoints`` and ``ledger_cosignatures``: ``--checkpoints``
checkpoints, every one but the newest cosigned by two witnesses. Times the lookup the audit
API and the tiles make on every request (the latest checkpoint a quorum of 2 cosigned) as
``consent.ledger.witnessing`` builds it, beside the aggregate over every cosignature it
replaced (a GROUP BY ... HAVING, kept here for the comparison).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

# ruff: noqa: E402
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from consent.ledger.models import LedgerCheckpoint, LedgerCosignature
from consent.ledger.witnessing import _cosigned_by_quorum

ADMIN_URL = os.environ.get("VRM_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
KEYS = ["auditor.example/w1+00000001+AA", "auditor.example/w2+00000002+AA"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    url = make_url(ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"vrm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = create_engine(url.set(database=name))
        LedgerCheckpoint.__table__.create(engine)  # type: ignore[attr-defined]
        LedgerCosignature.__table__.create(engine)  # type: ignore[attr-defined]
        n = args.checkpoints
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO ledger_checkpoints (size, root, note, created_at) "
                    "SELECT g, '\\x00', 'note', now() FROM generate_series(1, :n) g"
                ),
                {"n": n},
            )
            conn.execute(
                text(
                    "INSERT INTO ledger_cosignatures (checkpoint_size, witness, line, timestamp) "
                    "SELECT g, w, 'line', 0 FROM generate_series(1, :n) g, "
                    "unnest(CAST(:keys AS text[])) w WHERE g < :n"
                ),
                {"n": n, "keys": KEYS},
            )
            conn.execute(text("ANALYZE"))
        aggregate = (
            select(LedgerCosignature.checkpoint_size)
            .where(LedgerCosignature.witness.in_(KEYS))
            .group_by(LedgerCosignature.checkpoint_size)
            .having(func.count() >= 2)
        )
        queries = {
            "aggregate over every cosignature (before)": select(LedgerCheckpoint.size)
            .where(LedgerCheckpoint.size.in_(aggregate))
            .order_by(LedgerCheckpoint.size.desc())
            .limit(1),
            "newest first, stop at the first quorum (now)": select(LedgerCheckpoint.size)
            .where(_cosigned_by_quorum(KEYS, 2))
            .order_by(LedgerCheckpoint.size.desc())
            .limit(1),
        }
        print(f"{n:,} checkpoints, 2 witnesses, quorum 2; ms per lookup:")
        with engine.connect() as conn:
            for label, query in queries.items():
                assert conn.execute(query).scalar() == n - 1
                start = time.perf_counter()
                for _ in range(args.repeat):
                    conn.execute(query).scalar()
                print(f"  {label}: {(time.perf_counter() - start) * 1000 / args.repeat:.2f}")
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
