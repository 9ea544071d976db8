"""The consent ledger's storage: pending events, entries, completed Merkle nodes, the head,
checkpoints, and the deletable pseudonym links."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, TimestampMixin

MAX_INDEX = 2**63 - 1
"""The largest ledger index or tree size: what a BIGINT column holds (PostgreSQL and SQLite).
Requests asking for more are refused before a query could overflow."""


class LedgerPending(Base):
    """An event committed with the change it records, not yet in the tree.

    Inserting one takes no lock but the table's own (the id comes from a sequence): many
    transactions record events at once. The sequencer (:func:`consent.ledger.store.integrate`)
    moves pending events into ``ledger_entries`` in batches, in ``id`` order among those it
    sees, giving them the next indexes, and deletes them here in the same transaction.
    ``event`` is the canonical JSON of the event with its ``time``, without its ``index``;
    ``index_at`` is the byte offset in it where ``"index":N`` goes (None for events recorded
    before it was kept: the sequencer then re-serialises the event).
    """

    __tablename__ = "ledger_pending"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event: Mapped[bytes] = mapped_column(LargeBinary)
    event_type: Mapped[str] = mapped_column(String(64))
    vendor_id: Mapped[uuid.UUID | None]
    subject: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    index_at: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return f"LedgerPending(id={self.id}, type={self.event_type})"


class LedgerEntry(Base):
    """One appended event. ``entry`` is the canonical JSON that the leaf hash covers."""

    __tablename__ = "ledger_entries"

    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    vendor_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)

    def __repr__(self) -> str:
        return f"LedgerEntry(index={self.index}, type={self.event_type})"


class LedgerNode(Base):
    """The hash of a completed perfect subtree: height ``level`` >= 1, position ``index``."""

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    def __repr__(self) -> str:
        return f"LedgerNode(level={self.level}, index={self.index})"


class LedgerHead(Base):
    """The tree size and the compact range (right frontier): the row the sequencer and the
    checkpoint signer lock, so that one of them at a time extends or signs the tree."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[list[str]] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"LedgerHead(size={self.size})"


class LedgerCheckpoint(Base):
    """A signed checkpoint (C2SP tlog-checkpoint in a signed note)."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"LedgerCheckpoint(size={self.size})"


class LedgerSubject(TimestampMixin, Base):
    """The link pseudonym -> individual for events that concern the person alone (their
    erasure), and for the entries written before subjects became per vendor: the pseudonym is
    encrypted under the individual's key and the row goes with the account, so erasure leaves
    entries that name no one."""

    __tablename__ = "ledger_subjects"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    pseudonym_ct: Mapped[bytes] = mapped_column(LargeBinary)

    def __repr__(self) -> str:
        return f"LedgerSubject(id={self.id}, owner_id={self.owner_id})"


class LedgerVendorSubject(TimestampMixin, Base):
    """The link pseudonym -> individual for the events between one individual and one vendor
    app: a random pseudonym per (individual, app) pair, so two vendors' receipts and proofs
    never carry the same value for the same person.

    ``app_id`` has no foreign key on purpose: the person's record of an app's events outlives
    the app. The pseudonym is encrypted under the individual's key and bound to this row; the
    row goes with the account, so erasure leaves entries that name no one.
    """

    __tablename__ = "ledger_vendor_subjects"
    __table_args__ = (UniqueConstraint("owner_id", "app_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    app_id: Mapped[uuid.UUID]
    pseudonym_ct: Mapped[bytes] = mapped_column(LargeBinary)

    def __repr__(self) -> str:
        return f"LedgerVendorSubject(id={self.id}, owner_id={self.owner_id}, app_id={self.app_id})"


class LedgerWitness(Base):
    """What the vault knows of one witness (keyed by its verifier key): the size of the last
    checkpoint it cosigned, as far as the vault knows (the ``old`` size of the next request),
    and when to try it again after a failure."""

    __tablename__ = "ledger_witnesses"

    vkey: Mapped[str] = mapped_column(String(500), primary_key=True)
    cosigned_size: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    retry_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"LedgerWitness(cosigned_size={self.cosigned_size})"


class LedgerCosignature(Base):
    """A witness's cosignature (C2SP tlog-cosignature) on a signed checkpoint: the signature
    line, verified with the witness's key before it was stored, and its timestamp."""

    __tablename__ = "ledger_cosignatures"

    checkpoint_size: Mapped[int] = mapped_column(
        BigInteger,
        ForeignKey("ledger_checkpoints.size", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    witness: Mapped[str] = mapped_column(String(500), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[int] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"LedgerCosignature(checkpoint_size={self.checkpoint_size})"
