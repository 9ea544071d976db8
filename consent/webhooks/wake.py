"""Waking the delivery loop as soon as messages are committed to the outbox, instead of at its
next periodic look (which stays, so that nothing waits longer than that if a wake-up is lost).

On PostgreSQL a transaction that queued messages sends ``NOTIFY vrm_webhook_outbox`` before
it commits: the notification is delivered with the commit, and never for a transaction rolled
back, so a worker in another process (``vrm worker``) that listens on the channel looks at the
outbox at once. On SQLite (one machine, usually one process: ``vrm serve --with-worker``, the
tests) the commit calls the waiting dispatchers of the same process directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

import psycopg
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

CHANNEL: Final = "vrm_webhook_outbox"
"""The PostgreSQL notification channel (no payload: the outbox is the message)."""


_QUEUED: Final = "webhook_wake"
"""The session's ``info`` key saying its transaction queued messages."""


_local: set[Callable[[], None]] = set()
_local_lock = threading.Lock()


def queued(db: Session) -> None:
    """Say that ``db``'s transaction queued messages: its commit wakes the delivery loop."""
    db.info[_QUEUED] = True


def _is_postgresql(db: Session) -> bool:
    return db.get_bind().dialect.name == "postgresql"


@event.listens_for(Session, "before_commit")
def _notify(db: Session) -> None:
    # In the transaction itself: PostgreSQL delivers the notification when it commits.
    if db.info.get(_QUEUED) and _is_postgresql(db):
        db.execute(text(f"NOTIFY {CHANNEL}"))


@event.listens_for(Session, "after_commit")
def _wake_local(db: Session) -> None:
    if db.info.pop(_QUEUED, False) and not _is_postgresql(db):
        with _local_lock:
            wakers = list(_local)
        for wake in wakers:
            wake()


@event.listens_for(Session, "after_rollback")
def _forget(db: Session) -> None:
    db.info.pop(_QUEUED, None)


class OutboxWaker:
    """Calls ``wake`` (from another thread; it must be thread-safe) soon after any transaction
    that queued messages commits, until :meth:`stop`.

    PostgreSQL: a thread of its own holds a connection that listens on :data:`CHANNEL`
    (reconnecting after an outage, and waking once on every (re)connection, since
    notifications sent while it was away are lost). Otherwise: the commits of this process.
    """

    POLL_SECONDS: Final = 0.5
    """How often the listening thread checks whether it should stop."""

    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self.engine = engine
        self.wake = wake
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.engine.dialect.name == "postgresql":
            self._thread = threading.Thread(target=self._listen, name="webhook-listen", daemon=True)
            self._thread.start()
        else:
            with _local_lock:
                _local.add(self.wake)

    def stop(self) -> None:
        self._stopping.set()
        with _local_lock:
            _local.discard(self.wake)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen_once()
            except (psycopg.Error, DBAPIError):
                # The database went away: the periodic look carries on; listen again soon.
                self._stopping.wait(1.0)

    def _listen_once(self) -> None:
        # A connection of its own, out of the pool (it is held as long as the worker runs).
        pooled = self.engine.raw_connection()
        conn: Any = pooled.driver_connection
        pooled.detach()
        try:
            conn.rollback()
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            self.wake()  # what was queued while nobody listened
            while not self._stopping.is_set():
                for _ in conn.notifies(timeout=self.POLL_SECONDS):
                    self.wake()
        finally:
            conn.close()
