"""Vendors' apps: the OAuth clients a vendor (or an operator, or dynamic registration) registers,
and the request counters of their rate limits when those are kept in the database (no Redis):
a few shards per app and bucket, so that no one row is what every request of an app updates."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin, TimestampMixin


class VendorApp(IdMixin, TimestampMixin, Base):
    """An OAuth client registered by a vendor (or by an operator, or dynamically)."""

    __tablename__ = "vendor_apps"

    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    secret_rotated_at: Mapped[datetime | None]
    name: Mapped[str] = mapped_column(String(100))
    homepage_url: Mapped[str] = mapped_column(String(500))
    privacy_policy_url: Mapped[str] = mapped_column(String(500))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(500))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret_version: Mapped[int] = mapped_column(Integer, default=1)
    accepted_agreements: Mapped[list[str]] = mapped_column(JSON)
    vendor_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(
        String(32), default="client_secret_basic"
    )
    registered_via: Mapped[str] = mapped_column(String(16), default="console")

    def __repr__(self) -> str:
        return f"VendorApp(id={self.id}, client_id={self.client_id})"


class RateLimitWindow(Base):
    """One shard of the requests an app made in the current fixed window of one bucket
    (``read`` or ``write`` of the vendor API, ``oauth`` of the token endpoint); the window's
    count is the sum over the shards."""

    __tablename__ = "vendor_rate_limits"

    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    window_start: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return (
            f"RateLimitWindow(app_id={self.app_id}, bucket={self.bucket}, shard={self.shard}, "
            f"count={self.count})"
        )
