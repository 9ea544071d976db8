"""Grants (who may read what, why, until when), the access log of every read, and the vendors a
person had before an import.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin, TimestampMixin


class Grant(IdMixin, TimestampMixin, Base):
    """Individual I lets app V read fields F for purpose P under agreement T until E."""

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("individual_id", "app_id"),)

    individual_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), index=True
    )
    fields: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(500))
    agreement_id: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    expiry_processed_at: Mapped[datetime | None]
    """When the expiry sweep killed the expired grant's tokens and told the vendor."""

    def __repr__(self) -> str:
        return f"Grant(id={self.id}, app_id={self.app_id}, fields={self.fields})"


class AccessLogEntry(IdMixin, Base):
    """A vendor read some of an individual's fields."""

    __tablename__ = "access_log"

    individual_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="SET NULL"), index=True
    )
    """The app that read; NULL once the app is deleted (the row stays: it is the individual's
    record, not the vendor's)."""
    app_name: Mapped[str] = mapped_column(String(100))
    """The app's name when it read, written with the row, so a deleted app's reads still say
    who read."""
    fields: Mapped[list[str]] = mapped_column(JSON)
    accessed_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"AccessLogEntry(id={self.id}, app_id={self.app_id})"


class PreviousVendors(IdMixin, Base):
    """The vendors an individual was connected to in another vault they imported from.

    Shown to them as a list to reconnect from; never grants. Encrypted under their data key:
    which vendors someone uses says a lot about them.
    """

    __tablename__ = "previous_vendors"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    vendors_ct: Mapped[bytes] = mapped_column(LargeBinary)
    imported_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"PreviousVendors(id={self.id}, owner_id={self.owner_id})"


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
