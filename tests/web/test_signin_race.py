"""Parallel guesses cannot beat the sign-in limit: each attempt is counted before its password
is checked, atomically, on a database whose writes commit for real (SQLite file or PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.conftest import test_settings as make_settings
from tests.helpers import PASSWORD, page_csrf, sign_up
from vault.db import make_engine
from vault.migrate import upgrade
from vault.runtime import Runtime
from vrm.app import create_app

BASE = "http://testserver"
PARALLEL = 30
LIMIT = 5


class SlowCountingHasher(PasswordHasher):
    """Argon2id that takes a while to verify (as the production cost does) and counts how
    many passwords were checked, from any thread."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
        self.lock = threading.Lock()
        self.checked = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self.lock:
            self.checked += 1
        threading.Event().wait(0.05)  # the window a check-then-record race needs
        return super().verify(hash, password)


@pytest.fixture
def hasher() -> SlowCountingHasher:
    return SlowCountingHasher()


@pytest.fixture
def committed_app(
    backend: str, new_database: Any, tmp_path: Path, hasher: SlowCountingHasher
) -> Iterator[FastAPI]:
    engine = make_engine(new_database(backend, migrated=True))
    upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    settings = make_settings(
        tmp_path / "keys",
        url,
        signin_max_failures_per_account=LIMIT,
        signin_max_failures_per_address=1000,
    )
    rt = dataclasses.replace(Runtime.from_settings(settings, engine=engine), passwords=hasher)
    yield create_app(runtime=rt)
    engine.dispose()


def all_at_once(app: FastAPI, path: str, form: dict[str, str]) -> list[int]:
    """POST ``form`` from PARALLEL browsers at once (each with its own CSRF token)."""
    browsers = [TestClient(app, base_url=BASE, follow_redirects=False) for _ in range(PARALLEL)]
    tokens = [page_csrf(browser, path) for browser in browsers]
    barrier = threading.Barrier(PARALLEL)

    def one(i: int) -> int:
        barrier.wait(timeout=30)
        return browsers[i].post(path, data={**form, "csrf_token": tokens[i]}).status_code

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(one, range(PARALLEL)))


def test_parallel_wrong_passwords_check_no_more_than_the_limit(
    committed_app: FastAPI, hasher: SlowCountingHasher
) -> None:
    with TestClient(committed_app, base_url=BASE, follow_redirects=False) as person:
        email = sign_up(person)
    hasher.checked = 0

    statuses = all_at_once(committed_app, "/signin", {"email": email, "password": "wrong" * 3})

    assert sorted(statuses) == [401] * LIMIT + [429] * (PARALLEL - LIMIT)
    assert hasher.checked == LIMIT
    # And the right password is refused too until the window ends.
    with TestClient(committed_app, base_url=BASE, follow_redirects=False) as person:
        token = page_csrf(person, "/signin")
        late = person.post(
            "/signin", data={"email": email, "password": PASSWORD, "csrf_token": token}
        )
    assert late.status_code == 429


def test_a_right_password_gives_its_attempt_back(
    committed_app: FastAPI, hasher: SlowCountingHasher
) -> None:
    """An attempt counts while its password is being checked; a right one is then forgotten,
    so a person who mistypes now and then is never locked out."""
    with TestClient(committed_app, base_url=BASE, follow_redirects=False) as person:
        email = sign_up(person)
    for _ in range(3):
        for password in ["wrong" * 3] * (LIMIT - 1) + [PASSWORD]:
            with TestClient(committed_app, base_url=BASE, follow_redirects=False) as browser:
                token = page_csrf(browser, "/signin")
                form = {"email": email, "password": password, "csrf_token": token}
                expected = 303 if password == PASSWORD else 401
                assert browser.post("/signin", data=form).status_code == expected


def test_a_bucket_emptied_by_a_parallel_success_does_not_throttle_the_next_attempt(
    committed_app: FastAPI,
) -> None:
    """A right password clears the account's count while another attempt is between making
    sure its row exists and counting on it: that attempt is counted, not refused."""
    with TestClient(committed_app, base_url=BASE, follow_redirects=False) as person:
        email = sign_up(person)
    rt = committed_app.state.runtime
    vanished = []

    def the_row_goes_away(conn: Any, clauseelement: Any, *_: Any) -> None:
        table = getattr(clauseelement, "table", None)
        first = not vanished and getattr(clauseelement, "is_insert", False)
        if first and table is not None and table.name == "signin_throttle":
            vanished.append(True)
            conn.exec_driver_sql("DELETE FROM signin_throttle")

    event.listen(rt.engine, "after_execute", the_row_goes_away)
    try:
        with TestClient(committed_app, base_url=BASE, follow_redirects=False) as browser:
            token = page_csrf(browser, "/signin")
            form = {"email": email, "password": PASSWORD, "csrf_token": token}
            assert browser.post("/signin", data=form).status_code == 303
    finally:
        event.remove(rt.engine, "after_execute", the_row_goes_away)
    assert vanished == [True]
