"""Codes, tokens, registration tokens and the security events of the authorization server."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin


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
    """A security event of the authorization server: a replayed code or a reused refresh
    token, recorded once per token family (``family_id`` is unique), however often the family
    is replayed, so that no client can grow this table or the consent ledger at will."""

    __tablename__ = "consent_events"

    event_type: Mapped[str] = mapped_column(String(64))
    app_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="SET NULL"), index=True
    )
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("grants.id", ondelete="SET NULL"), index=True
    )
    occurred_at: Mapped[datetime]
    family_id: Mapped[uuid.UUID | None] = mapped_column(index=True, unique=True)
    """The token family (a code and the tokens issued from it) the event is about; the first
    event of a family is the only one. None for events recorded before this was kept."""

    def __repr__(self) -> str:
        return f"ConsentEvent(id={self.id}, type={self.event_type})"
