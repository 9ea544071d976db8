"""Fixtures for the portal and JSON API tests: row counts, extra browsers, other settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vault.runtime import Runtime
from vrm.app import create_app

Count = Callable[[type[Any]], int]
MakeClient = Callable[..., TestClient]


@pytest.fixture
def count(db: Session) -> Count:
    """Rows in a model's table, as the database has them now."""

    def count(model: type[Any]) -> int:
        db.expire_all()
        return int(db.scalar(select(func.count()).select_from(model)) or 0)

    return count


@pytest.fixture
def browsers() -> Iterator[Callable[[FastAPI], TestClient]]:
    """Factory: another browser (its own cookie jar) on a given app."""
    with ExitStack() as stack:

        def open_browser(app: FastAPI, base_url: str = "http://testserver") -> TestClient:
            client = TestClient(app, base_url=base_url, follow_redirects=False)
            return stack.enter_context(client)

        yield open_browser


@pytest.fixture
def second_client(app: FastAPI, browsers: Callable[[FastAPI], TestClient]) -> TestClient:
    """A second browser on the same app as ``client``."""
    return browsers(app)


def runtime_with(rt: Runtime, **settings: Any) -> Runtime:
    return dataclasses.replace(rt, settings=rt.settings.model_copy(update=settings))


@pytest.fixture
def client_with(rt: Runtime, browsers: Callable[..., TestClient]) -> MakeClient:
    """Factory: a browser on an app whose settings differ (``client_with(base_url=...)``)."""

    def make(**settings: Any) -> TestClient:
        runtime = runtime_with(rt, **settings)
        base_url = settings.get("base_url", "http://testserver")
        return browsers(create_app(runtime=runtime), base_url)

    return make


class CountingHasher(PasswordHasher):
    """The test Argon2id hasher, counting verifications."""

    def __init__(self, rt: Runtime) -> None:
        s = rt.settings
        super().__init__(
            time_cost=s.argon2_time_cost,
            memory_cost=s.argon2_memory_kib,
            parallelism=s.argon2_parallelism,
            type=Type.ID,
        )
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(rt: Runtime) -> CountingHasher:
    return CountingHasher(rt)


@pytest.fixture
def counted_client(
    rt: Runtime, hasher: CountingHasher, browsers: Callable[[FastAPI], TestClient]
) -> TestClient:
    """A browser on an app whose password hasher counts Argon2 verifications."""
    return browsers(create_app(runtime=dataclasses.replace(rt, passwords=hasher)))
