"""Scheduled work of erasure: on SQLite, keep the write-ahead log short, so that erased rows'
old page images do not linger on disk (a no-op on PostgreSQL)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vault.jobs import Job
from vault.portability.erasure import compact
from vault.runtime import Runtime


def _compact(_db: Session, rt: Runtime) -> None:
    compact(rt, attempts=1)  # never touches the job's session: it takes no lock there


COMPACT_LOG = Job("truncate the write-ahead log", _compact)
