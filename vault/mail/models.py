"""The mail outbox, single-use links sent by mail, and the notices a person sees and gets."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin


class MailMessage(IdMixin, Base):
    """A message queued in the transaction of what caused it, sent by the scheduled jobs.

    The whole message (recipient, subject, parts, links) is encrypted under the data key of the
    account it concerns, and dropped once sent or given up: what stays is when, which kind,
    and how many attempts."""

    __tablename__ = "mail_outbox"
    __table_args__ = (
        Index(
            "ix_mail_outbox_waiting_due",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL AND abandoned_at IS NULL"),
            sqlite_where=text("sent_at IS NULL AND abandoned_at IS NULL"),
        ),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    message_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]
    abandoned_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(300))

    def __repr__(self) -> str:
        return f"MailMessage(id={self.id}, kind={self.kind})"


class AccountLink(IdMixin, Base):
    """A link sent by mail that grants something once (confirm an address, set a new
    password): only its keyed hash is stored; it is claimed atomically and expires."""

    __tablename__ = "account_links"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(24))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    payload_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    """What the link carries, encrypted under the owner's key (the new address to confirm)."""

    def __repr__(self) -> str:
        return f"AccountLink(id={self.id}, purpose={self.purpose})"


class Notice(IdMixin, Base):
    """Something a person should know, listed in the portal and (per their switches) mailed.
    Names what it is about by id only (an intent, a grant); never personal data."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_account_id_kind_ref", "account_id", "kind", "ref"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    ref: Mapped[str | None] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    read_at: Mapped[datetime | None]
    email_due_at: Mapped[datetime | None] = mapped_column(index=True)
    emailed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"Notice(id={self.id}, kind={self.kind})"


class NoticeSetting(Base):
    """A person's switch for mailing one kind of notice (absent: on)."""

    __tablename__ = "notice_settings"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[bool] = mapped_column(Boolean)

    def __repr__(self) -> str:
        return f"NoticeSetting(kind={self.kind}, email={self.email})"
