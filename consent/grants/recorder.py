"""The access log's writer for the busiest read (``GET /vendor/v1/profile``).

By default (``VRM_ACCESS_LOG_BATCH_MS=0``) every read is written before it is answered: on the
threaded path in the transaction that reads the values, as
:func:`consent.grants.access.log_access` does; in the event loop (:meth:`AccessRecorder.arecord`)
the reads in flight at once are committed together, each answered once its row is: no read
goes unlogged.
An operator may trade that for about a millisecond per read at low load: with an interval
above 0, reads are gathered in memory and written together on a thread of their own, every
``interval`` seconds (and whenever :data:`MAX_BATCH` are waiting), in one ``INSERT`` of many
rows and one commit. ``stop()`` writes whatever is left; the app calls it at shutdown, which
uvicorn runs on SIGTERM, so a clean stop loses nothing. A crash (a killed process, a power cut)
loses the reads of its last interval that were not yet written.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from consent.grants.models import AccessLogEntry
from vault import pgasync
from vault.db import transaction
from vault.pgasync import AsyncPostgres, compiled

MAX_BATCH = 1000
_INSERT = insert(AccessLogEntry)
"""A plain Core insert (``conn.execute(_INSERT, rows)``), not the ORM's bulk path."""
_INSERT_SQL = compiled(_INSERT)
"""The same insert for the event loop's connections."""
log = logging.getLogger("vrm.access_log")


def _row(
    individual_id: uuid.UUID, app_id: uuid.UUID, app_name: str, fields: list[str], at: datetime
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "individual_id": individual_id,
        "app_id": app_id,
        "app_name": app_name,
        "fields": fields,
        "accessed_at": at,
    }


class AccessRecorder:
    def __init__(self, sessions: sessionmaker[Session], interval: float) -> None:
        self.sessions = sessions
        self.interval = interval
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Unbatched reads from the event loop (arecord): rows waiting for the group being
        # written, and the task writing them.
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def batching(self) -> bool:
        """Whether reads are queued (True) or written in the reading transaction."""
        return self._thread is not None

    def record(
        self,
        conn: Connection,
        individual_id: uuid.UUID,
        app_id: uuid.UUID,
        app_name: str,
        fields: list[str],
        at: datetime,
    ) -> None:
        """Log one read: ``app_name`` is the app's name now, which the row keeps when the
        app is deleted."""
        row = _row(individual_id, app_id, app_name, fields, at)
        if not self.batching:
            conn.execute(_INSERT, [row])
            return
        self._queue(row)

    async def arecord(
        self,
        pg: AsyncPostgres,
        individual_id: uuid.UUID,
        app_id: uuid.UUID,
        app_name: str,
        fields: list[str],
        at: datetime,
    ) -> None:
        """:meth:`record` from the event loop, on PostgreSQL (:mod:`vault.pgasync`): the row
        is committed when this returns. The caller holds none of ``pg``'s connections (the
        rows are written on one of them).

        Reads that arrive while rows are being written are written together, next, in one
        round trip and one commit (a group commit): each still returns only once its own row
        is committed, and one alone is written at once."""
        row = _row(individual_id, app_id, app_name, fields, at)
        if self.batching:
            self._queue(row)
            return
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._waiting.append((row, written))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop().is_closed():
            self._writer = loop.create_task(self._write_waiting(pg))
        await written

    async def _write_waiting(self, pg: AsyncPostgres) -> None:
        """Write the waiting rows, all those waiting at once together, until none wait."""
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    async with pg.connection() as conn:
                        await conn.run_many(_INSERT_SQL, [row for row, _ in group])
                except pgasync.IntegrityError:
                    await self._write_each(pg, group)
                except Exception as exc:  # the database is away: every read of the group fails
                    for _, written in group:
                        if not written.done():
                            written.set_exception(exc)
                else:
                    for _, written in group:
                        if not written.done():
                            written.set_result(None)
        finally:
            self._writer = None

    @staticmethod
    async def _write_each(pg: AsyncPostgres, group: list[tuple[dict[str, Any], Any]]) -> None:
        """A group a constraint refused (an individual erased, an app deleted since its read):
        each row on its own, so that only the reads whose row cannot be written fail, as
        they fail when written alone."""
        for row, written in group:
            try:
                async with pg.connection() as conn:
                    await conn.run(_INSERT_SQL, row)
            except Exception as exc:
                if not written.done():
                    written.set_exception(exc)
            else:
                if not written.done():
                    written.set_result(None)

    def _queue(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(row)
            full = len(self._pending) >= MAX_BATCH
        if full:
            self._wake.set()

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="vrm-access-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued and stop batching (later reads are written as they come)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join()
        self.flush()

    def flush(self) -> int:
        """Write everything queued now; returns how many reads were written."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            with transaction(self.sessions) as conn:
                try:
                    with conn.begin_nested():
                        conn.execute(_INSERT, batch)
                except IntegrityError:
                    # Someone in the batch erased their vault, or an app was deleted, since
                    # the read: write the rows one by one. A deleted app's read is kept
                    # under its name (as the rows written before the deletion are); an
                    # erased individual's read goes with the rest of their data.
                    for row in batch:
                        for attempt in (row, {**row, "app_id": None}):
                            try:
                                with conn.begin_nested():
                                    conn.execute(_INSERT, [attempt])
                            except IntegrityError:
                                continue
                            break
        except Exception:
            # Not written (the database is away): keep them for the next try, oldest first.
            with self._lock:
                self._pending = batch + self._pending
            raise
        return len(batch)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # retried on the next tick; the type only (no values)
                log.warning("access log batch not written yet (%s); retrying", type(exc).__name__)
