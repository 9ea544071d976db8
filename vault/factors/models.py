"""Second factors (TOTP, recovery codes, passkeys), their short-lived challenges, and when a
session last proved one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin, utcnow


class TotpFactor(IdMixin, Base):
    """An authenticator app's shared secret (RFC 6238), encrypted under the owner's data key.
    On only once ``confirmed_at`` is set (a first code proved the app has it)."""

    __tablename__ = "totp_factors"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    secret_ct: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_at: Mapped[datetime | None]
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    """The last time step whose code was accepted: a code is never accepted twice."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"TotpFactor(id={self.id}, account_id={self.account_id})"


class RecoveryCode(IdMixin, Base):
    """One single-use recovery code, stored only as a keyed hash."""

    __tablename__ = "recovery_codes"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"RecoveryCode(id={self.id}, account_id={self.account_id})"


class Passkey(IdMixin, Base):
    """A WebAuthn credential. Its name (chosen by the owner) is encrypted."""

    __tablename__ = "passkeys"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    transports: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"Passkey(id={self.id}, account_id={self.account_id})"


class FactorChallenge(IdMixin, Base):
    """A short-lived, single-use state: a password-checked sign-in waiting for its second
    factor (``purpose='signin'``), or a WebAuthn ceremony's challenge. Found by the keyed hash
    of a random token the browser holds; grants nothing by itself."""

    __tablename__ = "factor_challenges"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    challenge: Mapped[bytes | None] = mapped_column(LargeBinary(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"FactorChallenge(id={self.id}, purpose={self.purpose})"


class SessionFactorCheck(Base):
    """When a signed-in session last proved a second factor (for step-up before grave steps)."""

    __tablename__ = "session_factor_checks"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    checked_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"SessionFactorCheck(session_id={self.session_id})"
