"""Profile reads in the access log when an operator batches its writes
(``VRM_ACCESS_LOG_BATCH_MS``): every read still arrives, a clean stop loses none, and a
person who erased their vault meanwhile takes their rows with them.

By default each read is written in its own transaction; the other profile tests cover that.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from consent.grants.models import AccessLogEntry
from consent.grants.recorder import AccessRecorder
from consent.grants.service import delete_app
from consent.vendors.models import VendorApp
from tests.consent.factories import bearer, connect, individual, make_app
from tests.helpers import PASSWORD, unique_email
from tests.served import served, vault
from vault.accounts.models import Account
from vault.base import utcnow
from vault.db import transaction
from vault.runtime import Runtime
from vault.signup import sign_up

PROFILE = "/vendor/v1/profile"


@pytest.fixture
def database(backend: str, new_database) -> str:  # type: ignore[no-untyped-def]
    return str(new_database(backend, migrated=True))


@pytest.fixture
def setup(database: str, tmp_path: Path) -> Iterator[Runtime]:
    with vault(database, tmp_path / "keys") as rt:
        yield rt


def logged(rt: Runtime) -> int:
    with rt.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(AccessLogEntry)) or 0)


def a_reader(rt: Runtime, url: str) -> dict[str, str]:
    """A person with a filled-in profile who granted an app two fields; the app's headers."""
    with httpx.Client(base_url=url) as browser, rt.sessions() as db:
        person = individual(browser, db, rt, given_name="Ada", email="ada@example.org")
        app = make_app(db)
        grant = connect(db, rt, person, app, ["given_name", "email"])
        return bearer(db, rt, app, grant)


def test_a_clean_stop_writes_every_queued_read(
    setup: Runtime, database: str, tmp_path: Path
) -> None:
    # An interval far longer than the test: only the stop can have written them.
    with served(database, tmp_path / "keys", access_log_batch_ms=10_000) as server:
        headers = a_reader(setup, server.url)
        for _ in range(5):
            response = httpx.get(server.url + PROFILE, headers=headers)
            assert response.status_code == 200, response.text
        assert logged(setup) == 0  # queued, not yet written
        output = server.stop()
    assert logged(setup) == 5, output


def test_queued_reads_are_written_every_interval(
    setup: Runtime, database: str, tmp_path: Path
) -> None:
    with served(database, tmp_path / "keys", access_log_batch_ms=100) as server:
        headers = a_reader(setup, server.url)
        for _ in range(3):
            assert httpx.get(server.url + PROFILE, headers=headers).status_code == 200
        deadline = time.monotonic() + 10
        while logged(setup) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert logged(setup) == 3  # while the process still runs


def test_reads_of_an_erased_vault_are_dropped_and_the_rest_written(rt: Runtime) -> None:
    """A batch that names someone erased since (their rows cascade away) still writes the
    other reads of the batch."""
    with rt.sessions() as db:
        app_id = make_app(db).id
        kept, erased = (_account(db, rt) for _ in range(2))
    recorder = AccessRecorder(rt.sessions, interval=3600)
    recorder.start()
    try:
        with transaction(rt.sessions) as conn:
            for person in (kept, erased, kept):
                recorder.record(conn, person, app_id, "Velo", ["given_name"], utcnow())
        with rt.sessions() as db, db.begin():
            db.delete(db.get(Account, erased))
    finally:
        recorder.stop()
    with rt.sessions() as db:
        rows = db.scalars(select(AccessLogEntry.individual_id)).all()
    assert sorted(map(str, rows)) == sorted([str(kept)] * 2)


def test_unwritten_reads_are_kept_for_the_next_try(rt: Runtime) -> None:
    """The database away: nothing is dropped, the batch waits for the next tick."""
    with rt.sessions() as db:
        app_id = make_app(db).id
        person = _account(db, rt)
    recorder = AccessRecorder(rt.sessions, interval=3600)
    recorder.start()
    with transaction(rt.sessions) as conn:
        recorder.record(conn, person, app_id, "Velo", ["email"], utcnow())
        recorder.record(conn, uuid.uuid4(), app_id, "Velo", ["email"], utcnow())  # nobody
    broken = AccessRecorder(_unreachable(), interval=0)
    broken._pending = list(recorder._pending)  # the same batch, on a database that is away
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        broken.flush()
    assert len(broken._pending) == 2
    recorder.stop()
    with rt.sessions() as db:
        assert db.scalars(select(AccessLogEntry.individual_id)).all() == [person]


def _account(db: Session, rt: Runtime) -> uuid.UUID:
    account = sign_up(db, rt, unique_email(), PASSWORD)
    db.commit()
    return account.id


def _unreachable() -> sessionmaker[Session]:
    return sessionmaker(bind=create_engine("sqlite:////nonexistent-directory/vault.db"))


def test_a_queued_read_of_an_app_deleted_since_is_kept_with_its_name(rt: Runtime) -> None:
    """The app is deleted between the read and the batch's write: the read is still written,
    under the app's name, as the reads written before the deletion are kept."""
    with rt.sessions() as db:
        app = make_app(db, name="Acme Shoes")
        app_id = app.id
        person = _account(db, rt)
    recorder = AccessRecorder(rt.sessions, interval=3600)
    recorder.start()
    try:
        with transaction(rt.sessions) as conn:
            recorder.record(conn, person, app_id, "Acme Shoes", ["email"], utcnow())
        with rt.sessions() as db, db.begin():
            delete_app(db, db.get_one(VendorApp, app_id))
    finally:
        recorder.stop()
    with rt.sessions() as db:
        rows = db.execute(select(AccessLogEntry.app_id, AccessLogEntry.app_name)).all()
    assert rows == [(None, "Acme Shoes")]
