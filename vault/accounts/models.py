"""Accounts, server-side sessions and sign-in throttling."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin, TimestampMixin


class Role(StrEnum):
    INDIVIDUAL = "individual"
    AUDITOR = "auditor"
    VENDOR = "vendor"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    UNCONFIRMED = "unconfirmed"
    """Signed up, address not yet confirmed from the mail: cannot sign in."""


class Account(IdMixin, TimestampMixin, Base):
    """Who may sign in. The email itself is an encrypted profile field; here only its index."""

    __tablename__ = "accounts"

    role: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE)
    email_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime]
    preferred_agreement_id: Mapped[str | None] = mapped_column(String(64))
    email_confirmed_at: Mapped[datetime | None]
    """When the sign-in address was last confirmed from a mail (OIDC ``email_verified``)."""

    def __repr__(self) -> str:
        return f"Account(id={self.id}, role={self.role}, status={self.status})"


class AccountSession(IdMixin, Base):
    """A signed-in browser. The cookie holds a random token; this row only its keyed hash."""

    __tablename__ = "account_sessions"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"AccountSession(id={self.id}, account_id={self.account_id})"


class SignInThrottle(Base):
    """Failed sign-ins per bucket (a keyed hash of an email address or a client address)."""

    __tablename__ = "signin_throttle"

    bucket: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"SignInThrottle(failures={self.failures})"


class ApiToken(IdMixin, Base):
    """A bearer token for scripts, made by an operator for an auditor account (``vrm auditors
    token``). The token is shown once; this row keeps only its keyed hash."""

    __tablename__ = "account_api_tokens"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id}, account_id={self.account_id}, label={self.label!r})"


class KnownDevice(IdMixin, Base):
    """A browser that signed in to an account before (its device cookie). Only a keyed hash of
    the cookie's random token, bound to the account, is stored: neither the user agent nor
    the client address, and the same browser's rows under two accounts cannot be linked."""

    __tablename__ = "known_devices"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    device_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"KnownDevice(id={self.id}, account_id={self.account_id})"
