"""Rate limits per vendor app: a fixed one-minute window per app and bucket, in the database.

Reads (GET) and writes (POST, PATCH, DELETE) count separately. The counter is one row per app
and bucket, bumped by a single ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` in its own
short transaction, so every app process behind a proxy shares the same count, and a request
that fails later (a 400, say) still counts.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vault.base import utcnow
from vault.settings import Settings
from vendor_api.models import RateLimitWindow

WINDOW = timedelta(minutes=1)
READ = "read"
WRITE = "write"


@dataclass(frozen=True, slots=True)
class Usage:
    limit: int
    count: int
    reset_at: datetime

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(self.limit - self.count, 0)

    def reset_seconds(self, now: datetime | None = None) -> int:
        """Whole seconds until the window ends (at least 1): the ``Retry-After`` value."""
        left = (self.reset_at - (now or utcnow())).total_seconds()
        return max(1, math.ceil(left))

    def headers(self, now: datetime | None = None) -> dict[str, str]:
        """The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds(now)),
        }


def bucket_for(method: str) -> str:
    return READ if method.upper() in ("GET", "HEAD", "OPTIONS") else WRITE


def limit_for(settings: Settings, bucket: str) -> int:
    return settings.vendor_reads_per_minute if bucket == READ else settings.vendor_writes_per_minute


def window_start(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def hit(
    db: Session, app_id: uuid.UUID, bucket: str, limit: int, *, now: datetime | None = None
) -> Usage:
    """Count one request of ``app_id`` in ``bucket``; returns the usage of this window."""
    now = now or utcnow()
    start = window_start(now)
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    row = RateLimitWindow
    values = insert(row).values(app_id=app_id, bucket=bucket, window_start=start, count=1)
    statement = values.on_conflict_do_update(
        index_elements=[row.app_id, row.bucket],
        set_={
            "count": case(
                (row.window_start == values.excluded.window_start, row.count + 1),
                else_=1,
            ),
            "window_start": values.excluded.window_start,
        },
    ).returning(row.count)
    if db.get_bind().dialect.name == "postgresql":
        # A counter may lose its last increments in a crash; not worth a WAL flush per call.
        db.execute(text("SET LOCAL synchronous_commit TO OFF"))
    count = int(db.execute(statement).scalar_one())
    return Usage(limit=limit, count=count, reset_at=start + WINDOW)
