"""PostgreSQL from the event loop, for the hottest read (``GET /vendor/v1/profile``).

The rest of the service is synchronous SQLAlchemy in worker threads. The profile read is the
one path where that costs more than the work itself: a hop to a worker thread and back, a
pooled connection checked out and in, and SQLAlchemy's execution around three small
statements came to about half of the read's CPU time (``bench/cpu.py`` under ``py-spy
--gil``). Here it runs in the event loop on psycopg's own async connections, from a small
pool of their own (:class:`AsyncPostgres`), each statement its own transaction (autocommit, as
:func:`vault.db.autocommit` does for the threaded path).

Statements are still written with SQLAlchemy Core, against the same models, and compiled once
to PostgreSQL's SQL text (:func:`compiled`); only their execution is psycopg's. Used only where
the runtime's sessions are bound to a PostgreSQL engine: SQLite, and tests whose sessions share
one rolled-back connection, keep the threaded path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from vault.db import CONNECT_TIMEOUT

_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]

OUTAGES: tuple[type[Exception], ...] = (psycopg.OperationalError,)
"""What this module raises when the database is away (the app answers them with a 503)."""


@dataclass(frozen=True, slots=True)
class SQL:
    """A Core statement compiled for psycopg: its text (bound values as ``%(name)s``) and the
    values the statement itself holds (its literals: ``count=1`` becomes a parameter)."""

    text: str
    defaults: dict[str, Any]

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter the text names: the statement's own values and ``values``."""
        return {**self.defaults, **values}


def compiled(statement: ClauseElement | Executable) -> SQL:
    """``statement`` compiled once for PostgreSQL through psycopg."""
    done = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=_DIALECT))
    defaults = {
        done.bind_names[bind]: _plain(bind.effective_value)
        for bind in done.binds.values()
        if not bind.required and bind in done.bind_names
    }
    return SQL(str(done), defaults)


def _plain(value: Any) -> Any:
    """A string enum's member as its string: the driver finds the adapter of ``str`` at once,
    where a member's costs a search through its class's bases on every statement."""
    return str(value.value) if isinstance(value, str) and isinstance(value, Enum) else value


class AsyncPostgres:
    """Async connections in autocommit mode, kept for reuse: at most ``max_size`` in use at
    once (others wait for one, up to ``timeout`` seconds), opened on demand in the running
    event loop, all closed by :meth:`close` (the app's shutdown).

    A failed connection attempt fails the request at once (as the threaded path does), not
    after a pool's wait. As with the engine (no ping before use), a connection a database
    restart broke fails its next use: it is discarded with every idle one opened before it,
    so one failed request is the cost of a restart."""

    def __init__(self, url: str, *, max_size: int = 10, timeout: float = 5.0) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        self.conninfo = parsed.render_as_string(hide_password=False)
        self.options: dict[str, Any] = {
            "autocommit": True,
            "row_factory": namedtuple_row,
            # Timestamps come back in UTC, as the threaded path reads them.
            "options": "-c timezone=UTC",
        }
        if "connect_timeout" not in parsed.query:
            self.options["connect_timeout"] = int(CONNECT_TIMEOUT)
        self.max_size = max_size
        self.timeout = timeout
        self._idle: list[psycopg.AsyncConnection[Any]] = []
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
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection in autocommit mode: each statement is its own transaction."""
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
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            except psycopg.OperationalError:
                # The server went away (a restart, a network cut): so did the idle ones.
                await self._discard([conn, *self._idle])
                self._idle.clear()
                raise
            finally:
                # Kept when it is idle: after an answer the caller refused (an unknown token,
                # a rate limit) too, so that refusals never cost a new connection each. Not
                # after a cancellation mid-statement or a broken connection.
                if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
                    self._idle.append(conn)
                else:
                    await self._discard([conn])
        finally:
            self._slots.release()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.conninfo, **self.options)

    @staticmethod
    async def _discard(conns: list[psycopg.AsyncConnection[Any]]) -> None:
        for conn in conns:
            with suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._slots = None
        await self._discard(idle)


class PoolBusy(psycopg.OperationalError):
    """Every connection stayed in use for the whole wait (answered with a 503)."""
