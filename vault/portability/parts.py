"""The interface each package implements for export, import and erasure."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fastapi import Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vault.accounts.models import Account
from vault.runtime import Runtime


class ExportItem(BaseModel):
    """The base of every item model: strict on import, the JSON Schema of the export."""

    model_config = ConfigDict(extra="forbid")


def deleted(db: Session, statement: Any) -> int:
    """Run a bulk ``DELETE`` for an erasure and return how many rows went."""
    result = db.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def count_rows(db: Session, model: Any, *where: Any) -> Callable[[], int]:
    """A section's ``count``: how many rows of ``model`` match (asked when needed)."""

    return lambda: int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


Provenance = Literal["provided", "observed"]
"""``provided``: the person gave it (their profile, intents, decisions). ``observed``: the vault
recorded it about them (reads by vendors, sessions, ledger entries, offers vendors sent)."""


@dataclass(frozen=True)
class Section:
    """One kind of data in an export: a list of items of one shape, streamed."""

    name: str
    """The key in ``data.json`` and the CSV file's name (``access_log`` -> ``access_log.csv``)."""
    title: str
    description: str
    provenance: Provenance
    item: type[BaseModel]
    rows: Callable[[], Iterable[BaseModel]]
    """Yields the items; called once per file that shows the section (JSON, CSV, HTML)."""
    count: Callable[[], int]
    csv_columns: Sequence[str] | None = None
    """Columns of ``<name>.csv`` for tabular sections; None: only in ``data.json``."""


@dataclass
class ImportContext:
    """What an import has done so far, for the parts that come after and for the report."""

    source: str
    """The exporting vault (its ledger origin)."""
    imported: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ErasureContext:
    """What an erasure has done so far: each part adds its counts and the vendors it told."""

    subject: str | None
    """The individual's person-wide ledger pseudonym (the only name the erasure's ledger
    entry carries)."""
    subjects: list[str] = field(default_factory=list)
    """Every pseudonym the individual's ledger entries carry (one per vendor app, the
    person-wide one): only the receipt, which goes to the person alone, lists them together."""
    deleted: dict[str, int] = field(default_factory=dict)
    notify: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    """Per vendor app: what the ``subject.erased`` webhook tells it (the names it knew the
    individual by); every part adds to it, the signer's part sends them at the end."""
    vendors_notified: list[str] = field(default_factory=list)
    vendors_not_reachable: list[str] = field(default_factory=list)
    """Vendors that knew the person but have no webhook URL to be asked at."""
    ledger_index: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    """The ledger entry of the erasure, its checkpoint and inclusion proof, for the receipt."""


class DataPart(Protocol):
    """One package's contribution. Every method runs in the caller's transaction."""

    name: str

    def prepare_export(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> None:
        """Anything to write before the export's read-only snapshot opens (own transaction)."""
        ...

    def sections(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[Section]:
        """The sections of this package's data about the individual, for an export."""
        ...

    def import_data(
        self,
        db: Session,
        rt: Runtime,
        owner: Account,
        sections: dict[str, list[dict[str, Any]]],
        context: ImportContext,
    ) -> None:
        """Take over what this package owns from another vault's export (validated items)."""
        ...

    def erase(self, db: Session, rt: Runtime, owner_id: uuid.UUID, context: ErasureContext) -> None:
        """Delete every row of this package about the individual (flush, never commit)."""
        ...

    def finish_erasure(self, db: Session, rt: Runtime, context: ErasureContext) -> None:
        """After every part erased: what needs all of them done (flush, never commit)."""
        ...


MANIFEST_TYP = "vrm-export-manifest+jws"
"""The JWS ``typ`` of an export's signed manifest."""
ERASURE_RECEIPT_TYP = "vrm-erasure-receipt+jws"
"""The JWS ``typ`` of an erasure receipt."""


class Signer(Protocol):
    """Signs what the vault hands out (export manifests, erasure receipts), each kind with its
    own ``typ``, so one kind of signed document is never taken for another."""

    def sign(self, payload: bytes, typ: str) -> str:
        """A compact JWS over ``payload`` whose protected header names ``typ``."""
        ...

    def public_key(self) -> str:
        """The verifier key, as ``vrm ledger public-key`` prints it."""
        ...

    def origin(self) -> str: ...

    def verify(self, jws: str, public_key: str, typ: str, *, untyped_ok: bool = False) -> bytes:
        """The payload, if ``jws`` is signed by ``public_key`` and its header names ``typ``
        (or, with ``untyped_ok``, names none: documents signed before types were named);
        raises ValueError otherwise."""
        ...


@dataclass(frozen=True)
class Portability:
    """The parts of this deployment, in export order, and the vault's signer."""

    parts: Sequence[DataPart]
    signer: Signer


def portability_of(request: Request) -> Portability:
    """The parts the composition root wired into this application (``app.state``)."""
    parts: Portability = request.app.state.portability
    return parts
