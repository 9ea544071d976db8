"""Rate limits per vendor app: a fixed one-minute window per app and bucket, shared by every
process that serves the vault.

Buckets count separately: the vendor API's reads (GET) and writes (POST, PATCH, DELETE), and
the token endpoint's requests (``POST /oauth/token``, counted once the client has
authenticated). A request counts when it arrives, before its own work, so one that fails
later (a 400, say) still counts. The counters live here, beside the vendor apps they count,
because both the authorization server (``consent.oauth``) and the vendor API use them.

- With ``VRM_REDIS_URL``: one key per app, bucket and minute: an ``INCR``, and the window's
  first also an ``EXPIRE`` (:class:`RedisLimiter`; from the event loop on
  :class:`vault.resp.Pipe`).
- Without: in the database, spread over :data:`SHARDS` rows per app and bucket, each request
  bumping one at random and reading the window's sum in the same statement
  (:class:`DatabaseLimiter`), so no one row is what every request of an app updates and
  waits on. The count may lose its last increments in a crash (no WAL flush per call). Every
  request is counted, but one sees only the requests committed before it: requests of an app
  in flight at the same moment may not see each other, so an app can pass its limit by at most
  the number of its requests in flight at once (Redis's ``INCR`` has no such slack).
"""

from __future__ import annotations

import functools
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import redis
from sqlalchemy import Connection, Engine, Executable, bindparam, case, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from consent.vendors.models import RateLimitWindow
from vault.base import utcnow
from vault.pgasync import Conn, compiled
from vault.resp import Pipe
from vault.settings import Settings

WINDOW = timedelta(minutes=1)
_KEY_TTL = int(WINDOW.total_seconds()) + 60
"""A Redis counter's lifetime: it goes once its window has gone."""
READ = "read"
WRITE = "write"
OAUTH = "oauth"  # POST /oauth/token


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
    if bucket == OAUTH:
        return settings.token_requests_per_minute
    return settings.vendor_reads_per_minute if bucket == READ else settings.vendor_writes_per_minute


def window_start(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


SHARDS = 8
"""Counter rows per app and bucket in the database: parallel requests rarely meet on one."""


class Limiter(Protocol):
    def hit(
        self,
        app_id: uuid.UUID,
        bucket: str,
        limit: int,
        *,
        now: datetime | None = None,
        conn: Connection | None = None,
    ) -> Usage:
        """Count one request of ``app_id`` in ``bucket``; the usage of the current window.

        ``conn``: the caller's open transaction, which a database limiter counts in (on
        SQLite a second writer would wait for it); others ignore it."""
        ...

    async def ahit(
        self,
        app_id: uuid.UUID,
        bucket: str,
        limit: int,
        *,
        now: datetime | None = None,
        conn: Conn,
    ) -> Usage:
        """:meth:`hit` from the event loop; ``conn`` is an autocommit async connection to
        PostgreSQL (:mod:`vault.pgasync`), which a database limiter counts on."""
        ...

    async def aclose(self) -> None:
        """Close what :meth:`ahit` opened in the running event loop (the app's shutdown)."""
        ...


_REDIS_TIMEOUT = 2.0
"""Seconds to connect to Redis and for each reply, from threads and the event loop alike."""


def _redis_key(app_id: uuid.UUID, bucket: str, start: datetime) -> str:
    return f"vrm:rl:{app_id}:{bucket}:{int(start.timestamp())}"


class RedisLimiter:
    """Counters in Redis: ``vrm:rl:<app>:<bucket>:<minute>``, expiring after the window."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
        )
        self.pipe = Pipe(url, timeout=_REDIS_TIMEOUT)  # the event loop's (vault.resp)

    def hit(
        self,
        app_id: uuid.UUID,
        bucket: str,
        limit: int,
        *,
        now: datetime | None = None,
        conn: Connection | None = None,
    ) -> Usage:
        now = now or utcnow()
        start = window_start(now)
        key = _redis_key(app_id, bucket, start)
        count = int(self.redis.incr(key))
        if count == 1:  # the window's first request: the key goes when the window has gone
            self.redis.expire(key, _KEY_TTL)
        return Usage(limit=limit, count=count, reset_at=start + WINDOW)

    async def ahit(
        self,
        app_id: uuid.UUID,
        bucket: str,
        limit: int,
        *,
        now: datetime | None = None,
        conn: Conn,
    ) -> Usage:
        start = window_start(now or utcnow())
        key = _redis_key(app_id, bucket, start)
        count = int(await self.pipe.call("INCR", key))
        if count == 1:
            await self.pipe.call("EXPIRE", key, _KEY_TTL)
        return Usage(limit=limit, count=count, reset_at=start + WINDOW)

    async def aclose(self) -> None:
        await self.pipe.close()


class DatabaseLimiter:
    """Counters in the database, in a short transaction of their own on ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hit(
        self,
        app_id: uuid.UUID,
        bucket: str,
        limit: int,
        *,
        now: datetime | None = None,
        conn: Connection | None = None,
    ) -> Usage:
        if conn is not None:  # the caller's transaction: its commit is this count's
            return hit(conn, app_id, bucket, limit, now=now, durable=True)
        with self.engine.begin() as own:
            return hit(own, app_id, bucket, limit, now=now)

    async def ahit(
        self,
        app_id: uuid.UUID,
        bucket: str,
        limit: int,
        *,
        now: datetime | None = None,
        conn: Conn,
    ) -> Usage:
        start = window_start(now or utcnow())
        params = _count_params(app_id, bucket, start, secrets.randbelow(SHARDS))
        row = await conn.row(PG_COUNT_SQL, params)
        assert row is not None
        return Usage(limit=limit, count=int(row[0]), reset_at=start + WINDOW)

    async def aclose(self) -> None:
        return None


@functools.cache
def _count_statements(postgres: bool) -> tuple[Executable, ...]:
    """The count's statements for one dialect, built once; each call binds ``p_app``,
    ``p_bucket``, ``p_shard`` and ``p_start``. On PostgreSQL one statement (the bump in a CTE
    and the other shards' sum); on SQLite the bump, then the sum."""
    insert = postgresql.insert if postgres else sqlite.insert
    row = RateLimitWindow
    values = insert(row).values(
        app_id=bindparam("p_app"),
        bucket=bindparam("p_bucket"),
        shard=bindparam("p_shard"),
        window_start=bindparam("p_start"),
        count=1,
    )
    bump = values.on_conflict_do_update(
        index_elements=[row.app_id, row.bucket, row.shard],
        set_={
            "count": case(
                (row.window_start == values.excluded.window_start, row.count + 1),
                else_=1,
            ),
            "window_start": values.excluded.window_start,
        },
    ).returning(row.count)
    others = select(func.coalesce(func.sum(row.count), 0)).where(
        row.app_id == bindparam("p_app"),
        row.bucket == bindparam("p_bucket"),
        row.window_start == bindparam("p_start"),
        row.shard != bindparam("p_shard"),
    )
    if postgres:
        mine = bump.cte("bumped")
        return (select(others.scalar_subquery() + select(mine.c.count).scalar_subquery()),)
    return bump, others


PG_COUNT_SQL = compiled(_count_statements(True)[0])
"""The PostgreSQL count as SQL text, for :meth:`DatabaseLimiter.ahit` on an async connection."""


def _count_params(app_id: uuid.UUID, bucket: str, start: datetime, shard: int) -> dict[str, object]:
    return {"p_app": app_id, "p_bucket": bucket, "p_shard": shard, "p_start": start}


def hit(
    conn: Connection | Session,
    app_id: uuid.UUID,
    bucket: str,
    limit: int,
    *,
    now: datetime | None = None,
    shard: int | None = None,
    durable: bool = False,
) -> Usage:
    """Count one request in the database (in the caller's transaction) and return the usage.

    One shard row is bumped (``INSERT ... ON CONFLICT DO UPDATE``, starting over when its
    window is an older one); the window's count is that shard's new value plus the others'.
    Unless ``durable`` (the transaction commits more than this count), PostgreSQL is told not
    to wait for the WAL flush at commit.
    """
    now = now or utcnow()
    start = window_start(now)
    shard = secrets.randbelow(SHARDS) if shard is None else shard
    postgres = (
        conn.get_bind().dialect.name == "postgresql"
        if isinstance(conn, Session)
        else (conn.dialect.name == "postgresql")
    )
    params = _count_params(app_id, bucket, start, shard)
    if postgres and not durable:
        # A counter may lose its last increments in a crash; not worth a WAL flush per call.
        conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
    total = sum(
        int(conn.execute(stmt, params).scalar_one()) for stmt in _count_statements(postgres)
    )
    return Usage(limit=limit, count=total, reset_at=start + WINDOW)


def limiter_for(settings: Settings, engine: Engine) -> Limiter:
    """Redis when it is configured, else the database."""
    if settings.redis_url:
        return RedisLimiter(settings.redis_url)
    return DatabaseLimiter(engine)
