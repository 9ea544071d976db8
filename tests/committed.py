"""Fixtures for running a module's tests on a database whose writes commit (the sessions bound
to an engine, as in a served vault, not to one rolled-back connection).

On PostgreSQL that is the event-loop paths (``vault.pgasync``'s connections), which the
rolled-back tests cannot reach: their connections could not see the tests' uncommitted rows.
Import the fixtures into the module (``from tests.committed import committed_engine,
committed_runtime, rt``); every test then makes its own people and apps, committed for real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from tests.conftest import test_settings as settings_for
from vault.db import make_engine
from vault.migrate import upgrade
from vault.runtime import Runtime

T = TypeVar("T")


def _engine(backend: str, new_database) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(new_database(backend, migrated=True))
    upgrade(engine)
    yield engine
    engine.dispose()


def _runtime(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    keys: Path = tmp_path_factory.mktemp("keys") / "keys"
    url = engine.url.render_as_string(hide_password=False)
    return Runtime.from_settings(settings_for(keys, url), engine=engine)


@pytest.fixture(scope="module")
def committed_engine(backend: str, new_database) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    yield from _engine(backend, new_database)


@pytest.fixture(scope="module")
def committed_runtime(
    committed_engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Runtime:
    return _runtime(committed_engine, tmp_path_factory)


@pytest.fixture
def rt(committed_runtime: Runtime) -> Runtime:
    """Every test's sessions commit for real (the tests make their own people and apps)."""
    return committed_runtime


@pytest.fixture
def fresh_engine(backend: str, new_database) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """A committing database of the test's own (a copy of the migrated template), for tests
    that see everything in it, such as a listing of every open intent."""
    yield from _engine(backend, new_database)


@pytest.fixture(name="rt")
def fresh_rt(fresh_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    """:func:`rt` on the test's own committing database: a module that imports this has it
    as its ``rt``."""
    return _runtime(fresh_engine, tmp_path_factory)


def recorded(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str, what: Callable[[Any], T]
) -> list[T]:
    """Calls to the coroutine function ``owner.name`` from now on, each recorded as
    ``what(its answer)``: which of a module's requests took an event-loop path."""
    seen: list[T] = []
    original = getattr(owner, name)

    async def spy(*args: Any, **kwargs: Any) -> Any:
        answer = await original(*args, **kwargs)
        seen.append(what(answer))
        return answer

    monkeypatch.setattr(owner, name, spy)
    return seen
