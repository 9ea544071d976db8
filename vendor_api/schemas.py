"""Pydantic models of the vendor API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class VendorProfileOut(BaseModel):
    """The fields an individual currently lets this app read."""

    sub: str = Field(description="The individual's pairwise identifier for this app.")
    fields: dict[str, Any] = Field(
        description="Granted fields that are filled in, by key; granted but empty ones are absent."
    )
    granted_fields: list[str] = Field(
        description="Every field key this token may read now (the grant's fields in its scope)."
    )
    expires_at: datetime | None = Field(
        description="When the individual's permission ends; null: until they revoke it."
    )


class ReceiptOut(BaseModel):
    """A signed consent receipt."""

    receipt: str = Field(
        description="Compact JWS (EdDSA) over the receipt JSON; verify offline with the vault's "
        "ledger public key."
    )
