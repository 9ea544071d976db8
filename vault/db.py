"""Database engine and the request-scoped unit of work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import update_wrapper
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import redis
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from vault.resp import RedisUnavailable


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so that
    # SAVEPOINT works (see SQLAlchemy's "Serializable isolation / Savepoints" notes for pysqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Deleted rows are overwritten with zeros, not left in free pages (erasure means gone).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


SNAPSHOT = "vrm_snapshot"
"""Execution option of a read-only snapshot transaction (see :func:`read_snapshot`)."""


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout instead of
    # one failing when a read transaction tries to become a write transaction. A read-only
    # snapshot (a long export) begins DEFERRED: in WAL mode it sees one moment and blocks no
    # writer.
    if conn.get_execution_options().get(SNAPSHOT):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


CONNECT_TIMEOUT = 5
"""Seconds to wait for a PostgreSQL connection (unless the URL names ``connect_timeout``)."""


class Unavailable(Exception):
    """The database is away (it refused, dropped or shut down a connection), as the event
    loop's connections (:mod:`vault.pgasync`) say it in place of their driver's errors."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database (or Redis, which counts the rate limits) is
    unreachable or not answering (down, restarting, refusing connections, its file gone, the
    pool exhausted), as opposed to a bug or a constraint: a condition worth a 503 and a retry,
    not a 500."""
    if isinstance(exc, PoolTimeout | OperationalError | InterfaceError):
        return True
    if isinstance(exc, Unavailable | RedisUnavailable):  # the event loop's connections
        return True
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):  # the threads' Redis
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def ping(engine: Engine, *, timeout: float = 2.0) -> None:
    """``SELECT 1`` on a pooled connection, bounded by ``timeout`` seconds on PostgreSQL (a
    statement timeout); raises what the driver raises when the database is away."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            with conn.begin():
                conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout * 1000)}"))
                conn.execute(text("SELECT 1"))
        else:  # a deferred (read) transaction: no wait for a writer's lock
            conn.execution_options(**{SNAPSHOT: True}).execute(text("SELECT 1"))
            conn.rollback()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # A database that does not answer the connection fails the request in seconds, not
    # after the operating system's TCP timeout (minutes).
    if "connect_timeout" not in parsed.query:
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
    # No ping before each checkout (a round trip on every request): a connection that a
    # database restart broke fails its first use, and SQLAlchemy then discards every pooled
    # connection made before the failure, so the service recovers after one failed request.
    kwargs.setdefault("pool_pre_ping", False)
    # Enough pooled connections for the requests one process serves at once: connections
    # beyond the pool are opened and closed per use, which costs more than the request.
    kwargs.setdefault("pool_size", 30)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def read_snapshot(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one read-only transaction that sees a single moment throughout:
    REPEATABLE READ READ ONLY on PostgreSQL, a deferred transaction on SQLite (WAL). Nothing
    it does is committed. A session already bound to a connection (tests) is used as is."""
    with factory() as session:
        bind = session.get_bind()
        if isinstance(bind, Engine):
            if bind.dialect.name == "postgresql":
                options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            else:
                options = {SNAPSHOT: True}
            session.connection(execution_options=options)
        try:
            yield session
        finally:
            session.rollback()


def unit_of_work(
    factory: sessionmaker[Session], on_open: Callable[[Session | None], None] = lambda _: None
) -> Iterator[Session]:
    """One session per request: commit on success, roll back on any error. ``on_open`` is
    told the session when it opens and None once it is closed."""
    session = factory()
    on_open(session)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        on_open(None)
        session.close()


class _HasSession(Protocol):
    db: Session


_S = TypeVar("_S", bound=_HasSession)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def atomic(method: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """Make a service method all or nothing within the request's unit of work: it runs in a
    savepoint of ``self.db``, rolled back when it raises. A handler that catches the error to
    show a page then commits nothing of the refused change, without a rollback of its own."""

    def run(service: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with service.db.begin_nested():
            return method(service, *args, **kwargs)

    update_wrapper(run, method)
    return run


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A Core connection in a transaction of its own, committed when the block ends (rolled
    back when it raises): for hot paths that need neither the ORM nor a session's
    bookkeeping. Where the sessions are bound to one connection (tests), a savepoint on it."""
    bind = factory.kw.get("bind")
    if isinstance(bind, Connection):
        with bind.begin_nested():
            yield bind
        return
    if not isinstance(bind, Engine):
        raise TypeError("the session factory is bound to neither an engine nor a connection")
    with bind.begin() as conn:
        yield conn


@contextmanager
def autocommit(factory: sessionmaker[Session]) -> Iterator[Connection]:
    """A Core connection where each statement is its own transaction: no ``BEGIN`` and
    ``COMMIT`` round trips around a path whose every step is one statement (a read that
    fetches what it checks in one query, then one insert). PostgreSQL only: SQLite has no
    round trips to save, and pysqlite's autocommit switch would undo how this project begins
    its transactions (``_sqlite_begin``), so there it is one transaction. Where the sessions
    are bound to one connection (tests), a savepoint on it."""
    bind = factory.kw.get("bind")
    if isinstance(bind, Connection):
        with bind.begin_nested():
            yield bind
        return
    if not isinstance(bind, Engine):
        raise TypeError("the session factory is bound to neither an engine nor a connection")
    if bind.dialect.name != "postgresql":
        with bind.begin() as conn:
            yield conn
        return
    with bind.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")
