"""The process-wide cache of unwrapped data keys: a key erased or rewrapped through another
process leaves this one's memory within a sweep, not at the end of its five minutes."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import delete, select

from tests.helpers import PASSWORD, unique_email
from vault.keystore import UNWRAPPED, DataKeyRecord, KeySweeper
from vault.runtime import Runtime
from vault.signup import sign_up


def cached_key(rt: Runtime) -> tuple[uuid.UUID, DataKeyRecord]:
    """A new person's data key, opened (and so cached) in this process."""
    with rt.sessions() as db, db.begin():
        owner = sign_up(db, rt, unique_email(), PASSWORD).id
    with rt.sessions() as db:
        record = db.scalars(select(DataKeyRecord).where(DataKeyRecord.owner_id == owner)).one()
    UNWRAPPED.open(rt.keys, record.id, owner, record.kek_id, record.wrapped)
    return owner, record


def is_cached(record: DataKeyRecord) -> bool:
    return any(key.id == record.id for _, key in UNWRAPPED._keys.values())


def test_a_sweep_drops_the_keys_whose_rows_are_gone(committed_rt: Runtime) -> None:
    rt = committed_rt
    _, kept = cached_key(rt)
    _, erased = cached_key(rt)
    with rt.sessions() as db, db.begin():  # erased through another process
        db.execute(delete(DataKeyRecord).where(DataKeyRecord.id == erased.id))

    dropped = UNWRAPPED.sweep(rt.sessions)

    assert dropped >= 1
    assert not is_cached(erased)
    assert is_cached(kept)


def test_the_sweeper_thread_drops_an_erased_key_within_its_interval(
    committed_rt: Runtime,
) -> None:
    rt = committed_rt
    _, record = cached_key(rt)
    sweeper = KeySweeper(rt.sessions, interval=0.05)
    sweeper.start()
    try:
        assert is_cached(record)
        with rt.sessions() as db, db.begin():
            db.execute(delete(DataKeyRecord).where(DataKeyRecord.id == record.id))
        deadline = time.monotonic() + 10
        while is_cached(record) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not is_cached(record)
    finally:
        sweeper.stop()
