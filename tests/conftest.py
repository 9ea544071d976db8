"""Test databases: every database test runs on SQLite and on PostgreSQL.

Each xdist worker gets its own SQLite file and its own PostgreSQL database (created from
``VRM_TEST_DATABASE_URL``, default ``postgresql://postgres@127.0.0.1:5432/test``, and dropped
at the end), both copies of a template this worker upgraded to the Alembic head once. Each
test runs inside a transaction that is rolled back; the app's sessions join it through
savepoints.

PostgreSQL unreachable: the PostgreSQL half is skipped with one line saying so, unless
``VRM_REQUIRE_POSTGRES=1``, which fails the run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from consent.ledger.service import ledger_key
from vault.db import make_engine, normalise_url
from vault.migrate import upgrade
from vault.runtime import Runtime
from vault.settings import Settings
from vrm.app import create_app

pytest_plugins = ["tests.webhook_receiver", "tests.mail"]

PG_ADMIN_URL = os.environ.get("VRM_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("VRM_REQUIRE_POSTGRES") == "1"
RUN_ID = os.environ.get("VRM_TEST_RUN_ID") or uuid.uuid4().hex[:8]
os.environ["VRM_TEST_RUN_ID"] = RUN_ID  # shared with xdist workers

_pg_problem: str | None = None


def _probe_postgres() -> str | None:
    try:
        engine = create_engine(normalise_url(PG_ADMIN_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "unreachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    global _pg_problem
    _pg_problem = _probe_postgres()
    if _pg_problem and REQUIRE_PG:
        raise pytest.UsageError(
            f"VRM_REQUIRE_POSTGRES=1 but PostgreSQL at {PG_ADMIN_URL} is unreachable "
            f"({_pg_problem})."
        )


REDIS_URL = os.environ.get("VRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis the tests may write to (keys are per app, so tests never share one); CI, which
    sets VRM_REQUIRE_POSTGRES=1 for the services it runs, fails rather than skip without it."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        if REQUIRE_PG:
            pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc}).")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}).")
    return REDIS_URL


def backends() -> list[str]:
    return ["sqlite"] if _pg_problem else ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes ``backend`` runs on each; a module whose subject is one
    backend's alone says which with ``BACKENDS = ["postgresql"]``."""
    if "backend" in metafunc.fixturenames:
        only = getattr(metafunc.module, "BACKENDS", None)
        chosen = [b for b in backends() if only is None or b in only]
        metafunc.parametrize("backend", chosen, scope="session")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_problem and not REQUIRE_PG:
        terminalreporter.write_line(
            f"PostgreSQL half SKIPPED: {PG_ADMIN_URL} unreachable ({_pg_problem}); "
            "set VRM_REQUIRE_POSTGRES=1 to make this a failure.",
            yellow=True,
            bold=True,
        )


def _worker(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


def test_settings(key_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "development",
        "database_url": database_url,
        "key_dir": key_dir,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        # No sweeping thread: most tests share one connection between their sessions.
        "key_cache_sweep_seconds": 0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


class PostgresDatabases:
    """Creates and drops this run's PostgreSQL databases."""

    def __init__(self) -> None:
        self.admin = create_engine(
            normalise_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT", pool_size=8
        )
        self.created: list[str] = []

    def create(self, name: str, *, template: str | None = None) -> str:
        """An empty database, or a copy of ``template`` (a database no one is connected to)."""
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        self.created.append(name)
        return (
            make_url(normalise_url(PG_ADMIN_URL))
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def drop_all(self) -> None:
        """Drop them several at a time: each drop waits for a checkpoint, and drops waiting
        at once share one."""

        def drop(name: str) -> None:
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(drop, self.created))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def new_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: PostgresDatabases,
):  # type: ignore[no-untyped-def]
    """Factory: a fresh database URL on the given backend, empty, or with ``migrated=True``
    already at the Alembic head: a copy of a template this worker migrated once (a
    migration run costs seconds on PostgreSQL; a copy, a fraction of one)."""
    counter = iter(range(1_000_000))
    templates: dict[str, str] = {}

    def template(backend: str) -> str:
        if backend not in templates:
            if backend == "sqlite":
                path = tmp_path_factory.mktemp("db") / "template.db"
                url = f"sqlite:///{path}"
                templates[backend] = str(path)
            else:
                name = f"vrm_test_{RUN_ID}_{_worker(request)}_template"
                url = pg_databases.create(name)
                templates[backend] = name
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()  # no one may be connected to a template being copied
        return templates[backend]

    def make(backend: str, *, migrated: bool = False) -> str:
        n = next(counter)
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("db") / f"vrm-{n}.db"
            if migrated:
                shutil.copyfile(template(backend), path)
            return f"sqlite:///{path}"
        name = f"vrm_test_{RUN_ID}_{_worker(request)}_{n}"
        return pg_databases.create(name, template=template(backend) if migrated else None)

    return make


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys") / "keys"


@pytest.fixture(scope="session")
def engine(backend: str, new_database) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(new_database(backend, migrated=True))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def base_runtime(engine: Engine, key_dir: Path) -> Runtime:
    settings = test_settings(key_dir, engine.url.render_as_string(hide_password=False))
    runtime = Runtime.from_settings(settings, engine=engine)
    # The ledger key (and so the log's origin) is made now, under these settings, not by
    # whichever test first signs, which may run an app with another base URL.
    ledger_key(runtime)
    return runtime


@pytest.fixture
def committed_rt(backend: str, new_database, tmp_path: Path) -> Iterator[Runtime]:  # type: ignore[no-untyped-def]
    """A runtime on a fresh, migrated database whose writes are committed for real: for what
    several threads or processes must see of each other's work."""
    engine = make_engine(new_database(backend, migrated=True))
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    yield Runtime.from_settings(test_settings(tmp_path / "keys", url), engine=engine)
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[object]:
    with engine.connect() as conn:
        trans = conn.begin()
        yield conn
        trans.rollback()


@pytest.fixture
def rt(base_runtime: Runtime, connection) -> Runtime:  # type: ignore[no-untyped-def]
    """The runtime with sessions that join this test's rolled-back transaction."""
    factory = sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    return dataclasses.replace(base_runtime, sessions=factory)


@pytest.fixture
def db(rt: Runtime) -> Iterator[Session]:
    with rt.sessions() as session:
        yield session


@pytest.fixture
def app(rt: Runtime) -> FastAPI:
    return create_app(runtime=rt)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c
