"""Intents ("I want X, budget Y, by Z"), vendors' offers on them, and blocked vendors.

Title and description are personal (they can say anything) and encrypted under the owner's
data key; what vendors filter on (category, region, budget, currency, dates, status) is plain
on purpose and says nothing about who the owner is.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from vault.base import Base, IdMixin, TimestampMixin


class IntentStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"
    """An offer was accepted."""
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class OfferStatus(StrEnum):
    LIVE = "live"
    WITHDRAWN = "withdrawn"
    """The vendor took it back."""
    ACCEPTED = "accepted"
    DECLINED = "declined"
    LAPSED = "lapsed"
    """The intent closed without this offer: another was accepted, or it was withdrawn or
    expired, or the individual blocked the vendor."""


_OPEN = text("status = 'open'")


def _open_index(name: str, *columns: str) -> Index:
    """A partial index over open intents only: what vendors list stays small and ordered."""
    return Index(name, *columns, postgresql_where=_OPEN, sqlite_where=_OPEN)


class Intent(IdMixin, TimestampMixin, Base):
    __tablename__ = "intents"
    __table_args__ = (
        _open_index("ix_intents_open_feed", "published_at", "id"),
        _open_index("ix_intents_open_root", "category_root", "published_at", "id"),
        _open_index(
            "ix_intents_open_root_country", "category_root", "country", "published_at", "id"
        ),
        _open_index("ix_intents_open_country", "country", "published_at", "id"),
        _open_index("ix_intents_open_leaf", "category", "published_at", "id"),
        _open_index("ix_intents_open_leaf_country", "category", "country", "published_at", "id"),
        Index("ix_intents_owner_created", "owner_id", "created_at"),
        Index("ix_intents_status_expires", "status", "expires_at"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=IntentStatus.DRAFT)
    category: Mapped[str] = mapped_column(String(64))
    category_root: Mapped[str] = mapped_column(String(32))
    title_ct: Mapped[bytes] = mapped_column(LargeBinary)
    description_ct: Mapped[bytes] = mapped_column(LargeBinary)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    budget_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    country: Mapped[str | None] = mapped_column(String(2))
    city: Mapped[str | None] = mapped_column(String(100))
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    """Delivery or an online service is fine (with or without a region)."""
    needed_by: Mapped[date | None]
    expires_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    accepted_offer_id: Mapped[uuid.UUID | None]

    def __repr__(self) -> str:
        return f"Intent(id={self.id}, status={self.status}, category={self.category})"


class Offer(IdMixin, TimestampMixin, Base):
    """One vendor app's answer to one intent; a new offer from the same app replaces it."""

    __tablename__ = "offers"
    __table_args__ = (
        UniqueConstraint("intent_id", "app_id"),
        Index("ix_offers_app_created", "app_id", "created_at", "id"),
    )

    intent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intents.id", ondelete="CASCADE"))
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vendor_apps.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=OfferStatus.LIVE)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    """Bumped by every change the vendor makes, so an acceptance names the version it saw."""
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    message: Mapped[str] = mapped_column(Text)
    valid_until: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    lapse_reason: Mapped[str | None] = mapped_column(String(32))
    grant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("grants.id", ondelete="SET NULL"))
    """The grant the individual gave this app when accepting, if they shared fields."""
    shared_fields: Mapped[list[str] | None] = mapped_column(JSON)
    """The profile field keys shared on acceptance; None when nothing was shared."""
    tokens_claimed_at: Mapped[datetime | None]
    """When the app exchanged the accepted offer for tokens (once)."""

    def __repr__(self) -> str:
        return f"Offer(id={self.id}, intent_id={self.intent_id}, status={self.status})"


class IntentBlock(Base):
    """The individual does not let this vendor app see their intents."""

    __tablename__ = "intent_blocks"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"IntentBlock(app_id={self.app_id})"


ANY = ""
"""A subscription's key column that matches every value (a column, not NULL, so that matching
is an ``IN`` over an index: ``category_key IN ('', :root, :leaf)``)."""


class IntentSubscription(IdMixin, TimestampMixin, Base):
    """A vendor app's standing filter: "tell me of every intent like this".

    The columns that narrow most (category, country, currency) are keys where ``''`` means
    any, so that publishing an intent finds every matching subscription with one query over
    ``ix_intent_subscriptions_match``: at most 3 x 2 x 2 index ranges, whatever the number of
    apps. The other filters (city, online, budget range, needed-by) are checked on the rows
    found.
    """

    __tablename__ = "intent_subscriptions"
    __table_args__ = (
        Index(
            "ix_intent_subscriptions_match",
            "category_key",
            "country_key",
            "currency_key",
        ),
        Index("ix_intent_subscriptions_app_created", "app_id", "created_at", "id"),
    )

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vendor_apps.id", ondelete="CASCADE"))
    category_key: Mapped[str] = mapped_column(String(64), default=ANY)
    """A root (its whole subtree), a leaf, or ``''`` for every category."""
    country_key: Mapped[str] = mapped_column(String(2), default=ANY)
    currency_key: Mapped[str] = mapped_column(String(3), default=ANY)
    city: Mapped[str | None] = mapped_column(String(100))
    online: Mapped[bool | None] = mapped_column(Boolean)
    budget_min: Mapped[int | None] = mapped_column(BigInteger)
    budget_max: Mapped[int | None] = mapped_column(BigInteger)
    needed_before: Mapped[date | None]

    def __repr__(self) -> str:
        return f"IntentSubscription(id={self.id}, app_id={self.app_id})"


class IntentNotice(Base):
    """An app was told of an intent (``intent.published`` or ``intent.changed``): it is the
    one to tell when the intent is withdrawn or closes."""

    __tablename__ = "intent_notices"

    intent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("intents.id", ondelete="CASCADE"), primary_key=True
    )
    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("vendor_apps.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    told_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"IntentNotice(intent_id={self.intent_id}, app_id={self.app_id})"
