"""PostgreSQL from the event loop, for the hottest requests (the profile read, the intent
listing, offers, client-credentials tokens, the audit API's proofs).

The rest of the service is synchronous SQLAlchemy in worker threads. On these paths that costs
more than the work itself: a hop to a worker thread and back, a pooled connection checked out
and in, and SQLAlchemy's execution around a few small statements came to about half of a
read's CPU time (``bench/cpu.py`` under ``py-spy --gil``). Here they run in the event loop on
asyncpg's connections, from a small pool of their own (:class:`AsyncPostgres`); a statement
outside :meth:`Conn.transaction` is its own transaction.

asyncpg rather than psycopg's async connections, by measurement: the same prepared
three-row select cost 130 to 135 µs of the client's CPU per round trip through psycopg and 64
to 69 µs through asyncpg, on uvloop (asyncpg's protocol and its row decoding are compiled;
psycopg waits for each reply by adding and removing a reader on the event loop).

Statements are still written with SQLAlchemy Core, against the same models, and compiled once
to PostgreSQL's SQL text with numbered parameters (:func:`compiled`); only their execution is
asyncpg's, which prepares each statement once per connection and keeps it. Rows come back as
named tuples, as SQLAlchemy's and psycopg's rows read (``row.app_id``). Used only where the
runtime's sessions are bound to a PostgreSQL engine: SQLite, and tests whose sessions share one
rolled-back connection, keep the threaded path.
"""

from __future__ import annotations

import asyncio
import json
from collections import namedtuple
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

import asyncpg
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from vault.db import CONNECT_TIMEOUT, Unavailable

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]
_NOTHING: Mapping[str, Any] = {}
STATEMENT_CACHE = 512
"""Prepared statements kept per connection: the hot statements and the listing's shapes
(:func:`intents.market.listing_sql` keeps 256)."""


OUTAGES: tuple[type[Exception], ...] = (Unavailable,)
"""What this module raises when the database is away (the app answers them with a 503)."""

_DRIVER_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection closed mid-use
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shut down, terminated
    asyncpg.exceptions.ConnectionDoesNotExistError,
    # A connection the server ended while it sat idle, before the driver closed it: its
    # protocol is left mid-message and refuses the next statement.
    asyncpg.exceptions.InternalClientError,
)


@dataclass(frozen=True, slots=True)
class SQL:
    """A Core statement compiled for asyncpg: its text (bound values as ``$1``, ``$2``...),
    the name bound at each position, and the values the statement itself holds (its
    literals: ``count=1`` becomes a parameter)."""

    text: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    row: list[Any] = field(default_factory=list, compare=False)
    """The named-tuple class of its rows, made from the first row read (one per statement)."""

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The values in the text's order: ``values``, else the statement's own."""
        own = self.defaults
        return [values[name] if name in values else own[name] for name in self.names]

    def rows(self, records: Sequence[asyncpg.Record]) -> list[Any]:
        """``records`` as named tuples (attribute access, as the threaded path's rows)."""
        if not records:
            return []
        if not self.row:
            self.row.append(namedtuple("Row", records[0].keys(), rename=True))
        make = self.row[0]._make
        return [make(record) for record in records]


def compiled(statement: ClauseElement | Executable) -> SQL:
    """``statement`` compiled once for PostgreSQL through asyncpg."""
    done = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=_DIALECT))
    defaults = {
        done.bind_names[bind]: _plain(bind.effective_value)
        for bind in done.binds.values()
        if not bind.required and bind in done.bind_names
    }
    return SQL(str(done), tuple(done.positiontup or ()), defaults)


def _plain(value: Any) -> Any:
    """A string enum's member as its string, as the driver's text encoder wants it."""
    return str(value.value) if isinstance(value, str) and isinstance(value, Enum) else value


IntegrityError = asyncpg.IntegrityConstraintViolationError
"""A statement refused by a constraint (a foreign key, a unique key): the connection is fine."""


class Rollback(Exception):
    """Raised inside :meth:`Conn.transaction` to roll it back and carry on after the block."""


class Conn:
    """One of the pool's connections: each method is one round trip, and the driver's
    errors that mean the database is away come out as :class:`Unavailable`."""

    __slots__ = ("_busy", "raw")

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw
        self._busy = False

    async def rows(self, sql: SQL, values: Mapping[str, Any] = _NOTHING) -> list[Any]:
        """Every row ``sql`` returns with ``values``."""
        return sql.rows(await self._call(self.raw.fetch, sql.text, *sql.args(values)))

    async def row(self, sql: SQL, values: Mapping[str, Any] = _NOTHING) -> Any | None:
        """The first row ``sql`` returns with ``values``, or None."""
        found = await self.rows(sql, values)
        return found[0] if found else None

    async def run(self, sql: SQL, values: Mapping[str, Any] = _NOTHING) -> None:
        """``sql`` run for its effect."""
        await self._call(self.raw.execute, sql.text, *sql.args(values))

    async def run_many(self, sql: SQL, many: Sequence[Mapping[str, Any]]) -> None:
        """``sql`` run once for each of ``many``, in one round trip and one transaction:
        all of them or none."""
        await self._call(self.raw.executemany, sql.text, [sql.args(values) for values in many])

    async def _call(self, method: Any, *args: Any) -> Any:
        self._busy = True  # stays so if the call is cancelled midway: then it is not reused
        try:
            result = await method(*args)
        except _DRIVER_OUTAGES as exc:
            raise Unavailable(type(exc).__name__) from exc
        except asyncpg.PostgresError:
            self._busy = False  # refused by the server (a constraint): the connection is fine
            raise
        self._busy = False
        return result

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A transaction around the block: committed when it ends, rolled back when it
        raises (and nothing more raised when it raises :class:`Rollback`)."""
        try:
            async with self.raw.transaction():
                yield
        except Rollback:
            pass
        except _DRIVER_OUTAGES as exc:
            raise Unavailable(type(exc).__name__) from exc

    @property
    def reusable(self) -> bool:
        """Idle, open and out of any transaction: not after a cancellation mid-statement."""
        return not self._busy and not self.raw.is_closed() and not self.raw.is_in_transaction()

    @property
    def backend_pid(self) -> int:
        return int(self.raw.get_server_pid())


class AsyncPostgres:
    """Async connections, kept for reuse: at most ``max_size`` in use at once (others wait
    for one, up to ``timeout`` seconds), opened on demand in the running event loop, all
    closed by :meth:`close` (the app's shutdown).

    A failed connection attempt fails the request at once (as the threaded path does), not
    after a pool's wait. As with the engine (no ping before use), a connection a database
    restart broke fails its next use: it is discarded with every idle one opened before it,
    so one failed request is the cost of a restart."""

    def __init__(self, url: str, *, max_size: int = 10, timeout: float = 5.0) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.dsn = parsed.render_as_string(hide_password=False)
        connect_timeout = parsed.query.get("connect_timeout")
        self.connect_timeout = float(
            connect_timeout if isinstance(connect_timeout, str) else CONNECT_TIMEOUT
        )
        self.max_size = max_size
        self.timeout = timeout
        self._idle: list[Conn] = []
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def for_sessions(cls, sessions: sessionmaker[Session], **kwargs: Any) -> AsyncPostgres | None:
        """Connections to the database ``sessions`` use, if that is PostgreSQL through an
        engine (not a single shared connection, as in the tests that roll back)."""
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
            return None
        return cls(bind.url.render_as_string(hide_password=False), **kwargs)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A connection; each statement outside :meth:`Conn.transaction` is its own
        transaction."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_size)
        if self._slots.locked():  # every connection in use: wait for one, for so long
            try:
                async with asyncio.timeout(self.timeout):  # no task of its own, as wait_for's
                    await self._slots.acquire()
            except TimeoutError:
                raise PoolBusy(f"no database connection free within {self.timeout:g} s") from None
        else:  # at once, without the task a timed wait creates for every call
            await self._slots.acquire()
        try:
            conn = self._reuse() or await self._connect()
            try:
                yield conn
            except Unavailable:
                # The server went away (a restart, a network cut): so did the idle ones.
                self._discard([conn, *self._idle])
                self._idle.clear()
                raise
            finally:
                # Kept when it is idle: after an answer the caller refused (an unknown token,
                # a rate limit) too, so that refusals never cost a new connection each. Not
                # after a cancellation mid-statement or a broken connection.
                if conn.reusable:
                    self._idle.append(conn)
                elif not conn.raw.is_closed():
                    self._discard([conn])
        finally:
            self._slots.release()

    def _reuse(self) -> Conn | None:
        """The idle connection used last, skipping those the driver saw closed (a server
        that ended them sends word, which the driver reads while the loop runs)."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.raw.is_closed():
                return conn
        return None

    async def _connect(self) -> Conn:
        try:
            raw = await asyncpg.connect(
                self.dsn,
                timeout=self.connect_timeout,
                statement_cache_size=STATEMENT_CACHE,
                # Timestamps come back in UTC, as the threaded path reads them.
                server_settings={"timezone": "UTC"},
            )
        except _DRIVER_OUTAGES as exc:
            raise Unavailable(type(exc).__name__) from exc
        for kind in ("json", "jsonb"):
            await raw.set_type_codec(
                kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
        return Conn(raw)

    @staticmethod
    def _discard(conns: list[Conn]) -> None:
        """Closed at once, without a goodbye the server may never read (it may be gone)."""
        for conn in conns:
            with suppress(Exception):
                conn.raw.terminate()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._slots = None
        for conn in idle:
            with suppress(Exception):
                await asyncio.wait_for(conn.raw.close(), self.timeout)


class PoolBusy(Unavailable):
    """Every connection stayed in use for the whole wait (answered with a 503)."""
