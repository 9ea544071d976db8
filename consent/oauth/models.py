"""Codes, tokens, registration tokens and the security events of the authorization server."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin


class AuthorizationCode(IdMixin, Base):
    """A single-use code; only its keyed hash is stored."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), index=True
    )
    grant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("grants.id", ondelete="CASCADE"), index=True
    )
    redirect_uri: Mapped[str] = mapped_column(String(500))
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(16))
    auth_time: Mapped[datetime]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    token_family_id: Mapped[uuid.UUID | None]

    def __repr__(self) -> str:
        return f"AuthorizationCode(id={self.id}, app_id={self.app_id})"


class OAuthToken(IdMixin, Base):
    """An access token (and its refresh token); both stored only as keyed hashes."""

    __tablename__ = "oauth_tokens"

    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), index=True
    )
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("grants.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    access_token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    refresh_token_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime]
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime | None]
    refreshed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"OAuthToken(id={self.id}, app_id={self.app_id}, scope={self.scope!r})"


class RegistrationToken(IdMixin, Base):
    """An initial access token for RFC 7591 dynamic registration (single use, keyed hash)."""

    __tablename__ = "registration_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"RegistrationToken(id={self.id}, expires_at={self.expires_at})"


class ConsentEvent(IdMixin, Base):
    __tablename__ = "consent_events"

    event_type: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="SET NULL"), index=True
    )
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("grants.id", ondelete="SET NULL"), index=True
    )
    occurred_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"ConsentEvent(id={self.id}, type={self.event_type})"
