"""Per-app request counters for the vendor API's rate limits (one row per app and bucket)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base


class RateLimitWindow(Base):
    """Requests an app made in the current fixed window of one bucket (``read`` or ``write``)."""

    __tablename__ = "vendor_rate_limits"

    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(16), primary_key=True)
    window_start: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"RateLimitWindow(app_id={self.app_id}, bucket={self.bucket}, count={self.count})"
