"""Profile reads logged from the event loop (``AccessRecorder.arecord``, the default, unbatched
log on PostgreSQL): reads in flight at once are committed together, each returning only once
its own row is committed; a row a constraint refuses fails its own read alone."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from consent.grants.recorder import AccessRecorder
from tests.committed import committed_engine, committed_runtime, rt
from tests.consent.factories import make_app
from tests.helpers import PASSWORD, run_async, unique_email
from vault.base import utcnow
from vault.db import Unavailable
from vault.pgasync import AsyncPostgres, IntegrityError, compiled
from vault.runtime import Runtime
from vault.signup import sign_up

__all__ = ["committed_engine", "committed_runtime", "rt"]

BACKENDS = ["postgresql"]


def people(rt: Runtime, n: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """An app and ``n`` individuals."""
    with rt.sessions() as db:
        app_id = make_app(db).id
        accounts = [_account(db, rt) for _ in range(n)]
    return app_id, accounts


def _account(db: Session, rt: Runtime) -> uuid.UUID:
    account = sign_up(db, rt, unique_email(), PASSWORD)
    db.commit()
    return account.id


def pool(rt: Runtime) -> AsyncPostgres:
    pg = AsyncPostgres.for_sessions(rt.sessions)
    assert pg is not None
    return pg


_ROWS_OF = compiled(
    text("SELECT count(*) AS n FROM access_log WHERE individual_id = :person").columns()
)


def test_reads_in_flight_at_once_are_committed_together_each_before_it_returns(
    rt: Runtime,
) -> None:
    app_id, persons = people(rt, 5)
    readers = persons * 4  # twenty reads, four of each person
    recorder = AccessRecorder(rt.sessions, interval=0)
    pg, other = pool(rt), pool(rt)

    async def read(person: uuid.UUID) -> int:
        await recorder.arecord(pg, person, app_id, "Velo", ["email"], utcnow())
        async with other.connection() as conn:  # another connection sees it: committed
            row = await conn.row(_ROWS_OF, {"person": person})
            return int(row.n)

    async def run() -> list[int]:
        try:
            return list(await asyncio.gather(*(read(person) for person in readers)))
        finally:
            await pg.close()
            await other.close()

    seen = run_async(run())

    assert all(n >= 1 for n in seen)
    with rt.sessions() as db:
        written = db.execute(
            text(
                "SELECT count(*), count(DISTINCT xmin::text) FROM access_log "
                "WHERE individual_id = ANY(:persons)"
            ),
            {"persons": persons},
        ).one()
    # Every read written; all twenty came in while the first was being taken up, so they
    # were written in one transaction (one xmin), not twenty.
    assert tuple(written) == (20, 1)


def test_a_read_alone_is_written_at_once(rt: Runtime) -> None:
    app_id, [person] = people(rt, 1)
    recorder = AccessRecorder(rt.sessions, interval=0)
    pg = pool(rt)

    async def run() -> None:
        try:
            for _ in range(3):
                await asyncio.wait_for(
                    recorder.arecord(pg, person, app_id, "Velo", ["email"], utcnow()), 5
                )
        finally:
            await pg.close()

    run_async(run())
    with rt.sessions() as db:
        assert (
            db.scalar(
                text("SELECT count(*) FROM access_log WHERE individual_id = :p"), {"p": person}
            )
            == 3
        )


def test_a_row_a_constraint_refuses_fails_its_own_read_and_the_group_is_written(
    rt: Runtime,
) -> None:
    """A read of someone erased since (no account any more) in a group: its row cannot be
    written, so that read fails (its values are not sent); the others are logged."""
    app_id, [kept] = people(rt, 1)
    gone = uuid.uuid4()
    recorder = AccessRecorder(rt.sessions, interval=0)
    pg = pool(rt)

    async def run() -> list[object]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        recorder.arecord(pg, person, app_id, "Velo", ["email"], utcnow())
                        for person in (kept, gone, kept)
                    ),
                    return_exceptions=True,
                )
            )
        finally:
            await pg.close()

    first, refused, last = run_async(run())

    assert (first, last) == (None, None)
    assert isinstance(refused, IntegrityError)
    with rt.sessions() as db:
        rows = db.execute(
            text("SELECT individual_id FROM access_log WHERE individual_id = ANY(:p)"),
            {"p": [kept, gone]},
        ).scalars()
        assert sorted(map(str, rows)) == [str(kept)] * 2


def test_with_the_database_away_every_read_of_the_group_fails(rt: Runtime) -> None:
    app_id, [person] = people(rt, 1)
    recorder = AccessRecorder(rt.sessions, interval=0)
    away = AsyncPostgres("postgresql://postgres@127.0.0.1:1/nowhere")

    async def run() -> list[object]:
        return list(
            await asyncio.gather(
                *(
                    recorder.arecord(away, person, app_id, "Velo", ["email"], utcnow())
                    for _ in range(3)
                ),
                return_exceptions=True,
            )
        )

    failures = run_async(run())

    assert [type(f) for f in failures] == [Unavailable] * 3
    with pytest.raises(Unavailable):  # and the next read fails the same way, not hangs
        run_async(
            asyncio.wait_for(
                recorder.arecord(away, person, app_id, "Velo", ["email"], utcnow()), 10
            )
        )
