"""Per-app request counters for the vendor API's rate limits, when they are kept in the
database (no Redis): a few shards per app and bucket, so that no one row is what every
request of an app updates."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base


class RateLimitWindow(Base):
    """One shard of the requests an app made in the current fixed window of one bucket
    (``read`` or ``write``); the window's count is the sum over the shards."""

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
