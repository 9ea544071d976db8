"""What an export holds of the consent package: the rows of each of its sections."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from vault.portability.parts import (
    ExportItem,
)


class PreferenceItem(ExportItem):
    """A choice the person made about how the vault deals for them."""

    name: str = Field(description="`preferred_agreement`: the terms they offer vendors.")
    value: str


class HistoryItem(ExportItem):
    index: int = Field(description="The consent ledger index of the event.")
    event_type: str
    time: str
    fields: list[str]
    expires_at: str | None


class GrantItem(ExportItem):
    """A permission the person gave a vendor, with every change to it."""

    grant_id: str
    vendor_id: str
    vendor_name: str
    vendor_homepage: str
    fields: list[str]
    purpose: str
    agreement_id: str
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    status: str = Field(description="`active`, `revoked` or `expired`.")
    history: list[HistoryItem]


class AccessItem(ExportItem):
    """One read of the person's fields by a vendor."""

    accessed_at: datetime
    vendor_id: str | None = Field(
        description="The app that read; null when its vendor deleted the app since."
    )
    vendor_name: str = Field(description="The app's name (as it was when it read, if deleted).")
    fields: list[str]


class ReceiptItem(ExportItem):
    """The signed consent receipt (compact JWS) of a grant's latest ledger event."""

    grant_id: str
    vendor_name: str
    receipt: str


class LedgerItem(ExportItem):
    """One consent-ledger entry about the person, provable against the checkpoint."""

    index: int
    entry: str = Field(description="The exact entry bytes (canonical JSON) the leaf covers.")
    leaf_hash: str = Field(description="Hex SHA-256(0x00 || entry).")
    tree_size: int
    inclusion_proof: list[str] = Field(description="Hex hashes, RFC 9162 order.")


class CheckpointItem(ExportItem):
    """The signed checkpoint the ledger entries' proofs lead to."""

    tree_size: int
    note: str = Field(description="C2SP signed note (tlog-checkpoint).")
    public_key: str = Field(description="The verifier key of the vault that signed it.")


class VendorHadItem(ExportItem):
    """A vendor the person was connected to in a previous vault (it must ask again)."""

    vendor_name: str
    vendor_homepage: str
    fields: list[str]
    source: str = Field(description="The vault the connection was in.")
