"""The profile read's tests again, on a database whose writes commit (the sessions bound to an
engine, as in a served vault, not to one rolled-back connection).

On PostgreSQL that is the read in the event loop (``read_profile_async`` on ``vault.pgasync``'s
connections, the count on the limiter's async client): the path every served vault takes,
which the rolled-back tests cannot reach (its connections could not see their uncommitted
rows). On SQLite it is the threaded read in transactions of its own.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from tests.committed import committed_engine, committed_runtime, rt
from tests.consent.factories import bearer, connect, individual, make_app
from tests.vendor_api.test_profile import *  # noqa: F403 (the same tests, on these fixtures)
from tests.vendor_api.test_profile import PROFILE
from vault.runtime import Runtime

__all__ = ["committed_engine", "committed_runtime", "rt"]


def test_a_served_postgresql_vault_reads_in_the_event_loop(app: FastAPI, backend: str) -> None:
    assert (app.state.hot_pg is not None) == (backend == "postgresql")


def test_after_the_database_drops_its_connections_one_read_fails_and_the_next_succeeds(
    client: TestClient, db: Session, rt: Runtime, backend: str, committed_engine: Engine
) -> None:
    """A database restart (here: every connection of this database terminated) breaks the
    kept connections. The driver reads the server's word that it ended them when the event
    loop next runs: a read that takes a connection before that answers 503, and the next
    opens a new one; one that takes it after opens a new one at once. Never two failures."""
    if backend != "postgresql":
        pytest.skip("the event-loop connections are PostgreSQL's")
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    headers = bearer(db, rt, app, connect(db, rt, person, app, ["given_name"]))
    assert client.get(PROFILE, headers=headers).status_code == 200
    with committed_engine.connect() as other:
        other.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    committed_engine.dispose()  # the threaded side's pool held terminated ones too

    responses = [client.get(PROFILE, headers=headers) for _ in range(3)]

    assert [r.status_code for r in responses[1:]] == [200, 200]
    assert responses[0].status_code in (200, 503)
    if responses[0].status_code == 503:
        assert responses[0].json()["error"] == "service_unavailable"
    assert responses[2].json()["fields"] == {"given_name": "Ada"}


def test_refused_reads_keep_their_connection(
    client: TestClient, db: Session, rt: Runtime, backend: str, app: FastAPI
) -> None:
    """An unknown token, or a read over the limit, is an answer like any other: the connection
    that gave it serves the next read (a flood of bad tokens opens no connection each)."""
    if backend != "postgresql":
        pytest.skip("the event-loop connections are PostgreSQL's")
    person = individual(client, db, rt, given_name="Ada")
    vendor = make_app(db)
    headers = bearer(db, rt, vendor, connect(db, rt, person, vendor, ["given_name"]))
    assert client.get(PROFILE, headers=headers).status_code == 200
    kept = list(app.state.hot_pg._idle)

    refused = [
        client.get(PROFILE, headers={"Authorization": f"Bearer unknown-{n}"}).status_code
        for n in range(5)
    ]

    assert refused == [401] * 5
    assert app.state.hot_pg._idle == kept
    assert client.get(PROFILE, headers=headers).json()["fields"] == {"given_name": "Ada"}
    assert app.state.hot_pg._idle == kept
