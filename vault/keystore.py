"""Per-individual data keys, stored only wrapped by a key-encryption key."""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from vault.base import Base, TimestampMixin, utcnow
from vault.crypto import Binding, DataKey, DecryptionError, wrap_associated_data
from vault.keys import KeyProvider, WrappedKey

_CACHE_KEY = "vrm.data_keys"
log = logging.getLogger("vrm.keys")


class DataKeyRecord(TimestampMixin, Base):
    __tablename__ = "data_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    kek_id: Mapped[str] = mapped_column(String(64), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    rewrapped_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"DataKeyRecord(id={self.id}, owner_id={self.owner_id}, kek_id={self.kek_id})"


class UnwrappedKeys:
    """Data keys unwrapped in this process, so that a key provider (a KMS: a network call) is
    asked once per key rather than once per request.

    Bounded (least recently used go first) and short-lived (``ttl`` seconds). Keyed by the
    stored, wrapped form: a rewrapped or deleted data key is never found here, so every use
    still needs the row that erasure deletes; erasing an owner in this process also drops
    their key from here at once.
    """

    def __init__(self, max_entries: int = 10_000, ttl: float = 300.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._keys: OrderedDict[tuple[uuid.UUID, bytes], tuple[float, DataKey]] = OrderedDict()
        self._lock = threading.Lock()

    def open(
        self,
        provider: KeyProvider,
        record_id: uuid.UUID,
        owner_id: uuid.UUID,
        kek_id: str,
        wrapped: bytes,
    ) -> DataKey:
        found = self.cached(record_id, owner_id, wrapped)
        if found is not None:
            return found
        slot = (record_id, bytes(wrapped))
        now = time.monotonic()
        material = provider.unwrap(
            WrappedKey(kek_id, bytes(wrapped)), wrap_associated_data(record_id, owner_id)
        )
        key = DataKey(id=record_id, owner_id=owner_id, material=material)
        with self._lock:
            self._keys[slot] = (now + self.ttl, key)
            self._keys.move_to_end(slot)
            while len(self._keys) > self.max_entries:
                self._keys.popitem(last=False)
        return key

    def cached(self, record_id: uuid.UUID, owner_id: uuid.UUID, wrapped: bytes) -> DataKey | None:
        """The key if this process holds it unwrapped and fresh; never asks the provider (a
        caller in the event loop uses :meth:`open` on a worker thread when this is None)."""
        slot = (record_id, bytes(wrapped))
        with self._lock:
            found = self._keys.get(slot)
            if found is not None and found[0] > time.monotonic() and found[1].owner_id == owner_id:
                self._keys.move_to_end(slot)
                return found[1]
        return None

    def sweep(self, sessions: Callable[[], Session]) -> int:
        """Drop every key whose stored row is gone or changed (an erasure or a rewrap in any
        process); returns how many. Such a key could not be used anyway (every use needs its
        row): this bounds how long its material stays in this process's memory."""
        with self._lock:
            slots = list(self._keys)
        present: set[tuple[uuid.UUID, bytes]] = set()
        for start in range(0, len(slots), 500):
            ids = [record_id for record_id, _ in slots[start : start + 500]]
            with sessions() as session:
                rows = session.execute(
                    select(DataKeyRecord.id, DataKeyRecord.wrapped).where(DataKeyRecord.id.in_(ids))
                )
                present.update((row.id, bytes(row.wrapped)) for row in rows)
        gone = [slot for slot in slots if slot not in present]
        with self._lock:
            for slot in gone:
                self._keys.pop(slot, None)
        return len(gone)

    def drop_owner(self, owner_id: uuid.UUID) -> None:
        with self._lock:
            for slot in [s for s, (_, key) in self._keys.items() if key.owner_id == owner_id]:
                del self._keys[slot]

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


UNWRAPPED = UnwrappedKeys()
"""This process's cache of unwrapped data keys."""


class KeySweeper:
    """Sweeps :data:`UNWRAPPED` every ``interval`` seconds on a thread of its own, so a key
    erased (or rewrapped) through another process leaves this one's memory within about
    ``interval`` seconds; the process that erases drops it at once."""

    def __init__(self, sessions: Callable[[], Session], interval: float) -> None:
        self.sessions = sessions
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vrm-key-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                UNWRAPPED.sweep(self.sessions)
            except Exception as exc:  # the database is away: the next tick tries again
                log.warning("data-key cache sweep failed (%s); retrying", type(exc).__name__)


class KeyStore:
    """Creates and opens data keys; caches opened keys for the life of one DB session."""

    def __init__(self, session: Session, provider: KeyProvider) -> None:
        self.session = session
        self.provider = provider

    def _cache(self) -> dict[uuid.UUID, DataKey]:
        cache: dict[uuid.UUID, DataKey] = self.session.info.setdefault(_CACHE_KEY, {})
        return cache

    def create(self, owner_id: uuid.UUID) -> DataKey:
        key = DataKey(id=uuid.uuid4(), owner_id=owner_id, material=secrets.token_bytes(32))
        wrapped = self.provider.wrap(key.material, wrap_associated_data(key.id, owner_id))
        self.session.add(
            DataKeyRecord(id=key.id, owner_id=owner_id, kek_id=wrapped.kek_id, wrapped=wrapped.blob)
        )
        self.session.flush()
        self._cache()[owner_id] = key
        return key

    def for_owner(self, owner_id: uuid.UUID) -> DataKey:
        cached = self._cache().get(owner_id)
        if cached is not None:
            return cached
        record = self.session.scalars(
            select(DataKeyRecord).where(DataKeyRecord.owner_id == owner_id)
        ).one_or_none()
        if record is None:
            raise DecryptionError("this individual has no data key (erased, or never created)")
        return self._open(record)

    def _open(self, record: DataKeyRecord) -> DataKey:
        """Unwrap a stored data key (or find it unwrapped) and keep it for this session."""
        key = UNWRAPPED.open(
            self.provider, record.id, record.owner_id, record.kek_id, record.wrapped
        )
        self._cache()[record.owner_id] = key
        return key

    def preload(self, owner_ids: Iterable[uuid.UUID]) -> None:
        """Open several owners' data keys with one query (a page of many owners' rows).

        Owners without a key are skipped; decrypting their values then fails as usual.
        """
        cache = self._cache()
        wanted = {owner for owner in owner_ids if owner not in cache}
        if not wanted:
            return
        for record in self.session.scalars(
            select(DataKeyRecord).where(DataKeyRecord.owner_id.in_(wanted))
        ):
            self._open(record)

    def encrypt(self, binding: Binding, plaintext: bytes) -> bytes:
        return self.for_owner(binding.owner_id).encrypt(plaintext, binding)

    def decrypt(self, binding: Binding, ciphertext: bytes) -> bytes:
        return self.for_owner(binding.owner_id).decrypt(ciphertext, binding)

    def destroy(self, owner_id: uuid.UUID) -> None:
        """Crypto-shred: delete the wrapped data key; its ciphertexts become unreadable."""
        self._cache().pop(owner_id, None)
        UNWRAPPED.drop_owner(owner_id)
        record = self.session.scalars(
            select(DataKeyRecord).where(DataKeyRecord.owner_id == owner_id)
        ).one_or_none()
        if record is not None:
            self.session.delete(record)
            self.session.flush()


@dataclass(frozen=True, slots=True)
class RewrapProgress:
    done: int
    total: int


def count_by_kek(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(DataKeyRecord.kek_id, func.count()).group_by(DataKeyRecord.kek_id)
    ).all()
    return {kek_id: count for kek_id, count in rows}


def rewrap_all(
    session_factory: Callable[[], Session],
    provider: KeyProvider,
    *,
    batch_size: int = 500,
) -> Iterator[RewrapProgress]:
    """Rewrap every data key not under the current KEK, one committed batch at a time.

    Safe to interrupt and rerun (each batch commits; each row is updated only if it still
    names the KEK it was read under), and safe to run twice at once. Ends only when no data key
    names another KEK: a key made meanwhile by a process that had not yet seen the new version
    (or behind the paging cursor) is found by one more pass.
    """
    target = provider.current_version()
    with session_factory() as session:
        total = (
            session.scalar(
                select(func.count())
                .select_from(DataKeyRecord)
                .where(DataKeyRecord.kek_id != target)
            )
            or 0
        )
    done = 0
    yield RewrapProgress(done, total)
    last_id: uuid.UUID | None = None
    while True:
        with session_factory() as session, session.begin():
            query = (
                select(
                    DataKeyRecord.id,
                    DataKeyRecord.owner_id,
                    DataKeyRecord.kek_id,
                    DataKeyRecord.wrapped,
                )
                .where(DataKeyRecord.kek_id != target)
                .order_by(DataKeyRecord.id)
                .limit(batch_size)
            )
            if last_id is not None:
                query = query.where(DataKeyRecord.id > last_id)
            rows = session.execute(query).all()
            if not rows:
                target = provider.current_version()  # a newer version may have come meanwhile
                left = session.scalar(
                    select(func.count())
                    .select_from(DataKeyRecord)
                    .where(DataKeyRecord.kek_id != target)
                )
                if not left:
                    return
                last_id, total = None, done + int(left)  # another pass for the late ones
                continue
            for key_id, owner_id, kek_id, blob in rows:
                aad = wrap_associated_data(key_id, owner_id)
                material = provider.unwrap(WrappedKey(kek_id, blob), aad)
                rewrapped = provider.wrap(material, aad)
                result = session.execute(
                    update(DataKeyRecord)
                    .where(DataKeyRecord.id == key_id, DataKeyRecord.kek_id == kek_id)
                    .values(kek_id=rewrapped.kek_id, wrapped=rewrapped.blob, rewrapped_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                done += result.rowcount  # type: ignore[attr-defined]
            last_id = rows[-1][0]
        yield RewrapProgress(min(done, total), total)
