"""The webhook outbox and the log of every delivery attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin


class WebhookMessage(IdMixin, Base):
    """An event queued for a vendor in the same transaction as the change it reports."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        # Only the messages still waiting (few, while history grows): each app's queue in
        # order, to find its head, and what is due next.
        Index(
            "ix_webhook_outbox_waiting",
            "app_id",
            "created_at",
            "id",
            postgresql_where=text("delivered_at IS NULL AND abandoned_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND abandoned_at IS NULL"),
        ),
        Index(
            "ix_webhook_outbox_waiting_due",
            "next_attempt_at",
            "created_at",
            postgresql_where=text("delivered_at IS NULL AND abandoned_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL AND abandoned_at IS NULL"),
        ),
    )

    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None]
    abandoned_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"WebhookMessage(id={self.id}, type={self.event_type})"


class WebhookAttempt(IdMixin, Base):
    """One delivery attempt, shown in the vendor's delivery log."""

    __tablename__ = "webhook_attempts"

    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_outbox.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int]

    def __repr__(self) -> str:
        return f"WebhookAttempt(id={self.id}, status={self.status_code})"
