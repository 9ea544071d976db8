"""Profile values, each encrypted under its owner's data key."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin, TimestampMixin


class ProfileField(IdMixin, TimestampMixin, Base):
    """One field of one individual. ``field_key`` is a catalogue key or ``custom.<id>``."""

    __tablename__ = "profile_fields"
    __table_args__ = (UniqueConstraint("owner_id", "field_key"),)

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    field_key: Mapped[str] = mapped_column(String(64))
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)
    label_ct: Mapped[bytes | None] = mapped_column(LargeBinary)

    def __repr__(self) -> str:
        return f"ProfileField(id={self.id}, owner_id={self.owner_id}, key={self.field_key})"
