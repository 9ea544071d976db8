"""The webhooks about grants (``consent.*``, sent by :mod:`consent.grants.service`) and about an
erased individual (``subject.erased``, sent by :mod:`consent.grants.portability`).

They name the individual only as the app already knows them (the pairwise ``sub``), never with
profile values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from consent.webhooks.events import IsoDateTime, WebhookEvent


class GrantFields(BaseModel):
    """What every consent event says about the grant (not an event itself)."""

    grant_id: str
    subject: str = Field(
        description="The individual's pairwise `sub` for your app (as in /vendor/v1/profile)."
    )
    scopes: list[str] = Field(description="The profile scopes the grant allows now.")
    purpose: str
    agreement: str = Field(description="The standard agreement both sides accepted (`/terms`).")
    granted_at: IsoDateTime
    expires_at: IsoDateTime | None = Field(description="Null: until the individual revokes it.")
    revoked_at: IsoDateTime | None


class ConsentGrantedData(GrantFields, WebhookEvent):
    """The grant your app was given (never profile values)."""

    event_type = "consent.granted"
    summary = "An individual gave your app a permission"
    description = (
        "From the consent screen, or by accepting your offer with shared fields; also when a "
        "permission that had ended is given again."
    )


class ConsentChangedData(GrantFields, WebhookEvent):
    """The grant as it is now (never profile values)."""

    event_type = "consent.changed"
    summary = "A permission changed"
    description = (
        "Fields were added or removed, or the duration, agreement or purpose changed. "
        "Tokens read only the fields the grant allows now."
    )


class ConsentRevokedData(GrantFields, WebhookEvent):
    """The grant that ended, and why (never profile values)."""

    event_type = "consent.revoked"
    summary = "A permission ended"
    description = "The individual revoked it, or it expired. Its tokens stop working at once."

    reason: Literal["revoked", "expired"]


def _absent(value: object) -> bool:
    return value is None


class SubjectErasedData(WebhookEvent):
    """Who erased their vault, by the names your app knew them by (never their identity).
    Each key is there only when it applies to your app."""

    event_type = "subject.erased"
    summary = "An individual erased their vault"
    description = (
        "Everything about them is deleted from the vault: their permissions ended (each "
        "announced by `consent.revoked`) and their open intents were withdrawn. Delete every "
        "copy of their data you hold, except records the law requires you to keep. Sent once "
        "to every app that ever held a grant of theirs or made an offer on their intents."
    )

    subject: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="The individual's pairwise `sub` for your app, when your app ever held a "
        "grant of theirs (as in /vendor/v1/profile and the `consent.*` events).",
    )
    grant_ids: list[str] | None = Field(
        default=None,
        exclude_if=_absent,
        description="Every grant they gave your app (now ended and deleted).",
    )
    owner: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="Their intent-owner pseudonym for your app (`anon-...`), when your app "
        "made offers on their intents.",
    )
    request: str = Field(description="What the vault asks of you, in a sentence.")
