"""The database fails in the middle of a person's export: over real HTTP (uvicorn on a port of
its own) the download either answers an error before its first byte, or ends cleanly as a ZIP
that says it is incomplete. Never a broken connection, never an archive that looks whole.

The failure is real and comes at a chosen moment: when the export's read-only snapshot runs
a given query, its connection is killed (PostgreSQL: ``pg_terminate_backend`` from another
connection; SQLite: the connection closed under it), so the query fails as it would in an
outage."""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from consent.grants.access import log_access
from tests.consent.factories import connect, individual
from tests.helpers import page_csrf
from tests.intents.factories import make_intent, market_vendor
from vault.db import SNAPSHOT
from vault.portability.export import INCOMPLETE, MANIFEST, SIGNATURE
from vault.runtime import Runtime
from vrm.app import create_app


@contextmanager
def serving(rt: Runtime) -> Iterator[str]:
    """The app on a real HTTP server, in a thread of this process (so the test can reach the
    export's database connection)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(runtime=rt), port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def in_snapshot(conn: Connection) -> bool:
    options = conn.get_execution_options()
    return bool(options.get(SNAPSHOT) or options.get("postgresql_readonly"))


@contextmanager
def killed_at(rt: Runtime, when: Callable[[str, int], bool]) -> Iterator[list[str]]:
    """Kill the export snapshot's connection just before the query for which
    ``when(statement, times_this_statement_ran)`` is true; yields the statements killed at."""
    seen: dict[str, int] = {}
    killed: list[str] = []
    admin = rt.engine.dialect.name == "postgresql"

    def before(conn: Connection, cursor: Any, statement: str, *_args: Any) -> None:
        if killed or not in_snapshot(conn) or not statement.lstrip().upper().startswith("SELECT"):
            return
        seen[statement] = seen.get(statement, 0) + 1
        if not when(statement, seen[statement]):
            return
        killed.append(statement)
        dbapi = conn.connection.dbapi_connection
        if admin:
            pid = dbapi.info.backend_pid  # type: ignore[union-attr]
            with rt.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                other.commit()
        else:
            dbapi.close()  # type: ignore[union-attr]

    event.listen(rt.engine, "before_cursor_execute", before)
    try:
        yield killed
    finally:
        event.remove(rt.engine, "before_cursor_execute", before)


@pytest.fixture
def person(committed_rt: Runtime) -> Iterator[tuple[httpx.Client, Runtime]]:
    """Someone signed in over HTTP with a profile, a connection read by a vendor, and an
    intent: every section of the export has rows."""
    rt = committed_rt
    with serving(rt) as url, httpx.Client(base_url=url, follow_redirects=False) as browser:
        with rt.sessions() as db:
            owner = individual(browser, db, rt, given_name="Zephyrine")
            vendor = market_vendor(db, rt, name="Velo Shop")
            connect(db, rt, owner, vendor.app, ["email", "given_name"])
            for _ in range(3):
                log_access(db, owner.id, vendor.app, ["email", "given_name"])
            make_intent(db, rt, owner, title="Quixotic tandem bicycle")
            db.commit()
        yield browser, rt


def export(browser: httpx.Client) -> tuple[httpx.Response, bytes]:
    """The download as a browser makes it, read to its end; raises if the connection broke."""
    token = page_csrf(browser, "/account/export")
    with browser.stream("POST", "/account/export", data={"csrf_token": token}) as response:
        body = response.read()
    return response, body


def test_an_outage_after_the_first_byte_ends_the_archive_marked_incomplete(
    person: tuple[httpx.Client, Runtime],
) -> None:
    browser, rt = person
    # The profile's rows are read for data.json (sent first), then again for profile.csv:
    # that second reading comes after bytes went out.
    with killed_at(rt, lambda sql, times: "FROM profile_fields" in sql and times == 2) as killed:
        response, body = export(browser)  # a broken connection would raise here

    assert killed, "the export ran no query twice: the failure was not injected"
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None  # a whole, readable ZIP
    names = archive.namelist()
    assert INCOMPLETE in names
    assert "incomplete" in archive.read(INCOMPLETE).decode().lower()
    assert MANIFEST not in names and SIGNATURE not in names  # no importer takes it as whole


def test_an_outage_before_the_first_byte_answers_503(
    person: tuple[httpx.Client, Runtime],
) -> None:
    browser, rt = person
    with killed_at(rt, lambda _statement, times: times == 1) as killed:
        response, body = export(browser)

    assert killed
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("text/html")
    assert not body.startswith(b"PK")


def test_without_an_outage_the_archive_is_whole(person: tuple[httpx.Client, Runtime]) -> None:
    browser, _rt = person

    response, body = export(browser)

    assert response.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert INCOMPLETE not in names
    assert {MANIFEST, SIGNATURE} <= set(names)
