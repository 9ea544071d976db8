"""A range of the ledger, as stored, under its latest signed checkpoint: what the audit
console's download and ``vrm ledger export`` both write (JSON Lines, see
:mod:`consent.ledger.verify`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.ledger.merkle import SubtreeHash
from consent.ledger.models import LedgerEntry
from consent.ledger.service import latest_checkpoint, stored_subtrees
from consent.ledger.verify import export_rows
from consent.ledger.witnessing import cosigned_note
from vault.errors import InvalidInput, NotFound


@dataclass
class LedgerExport:
    """The checkpoint and the stored rows ``start <= index < end`` (as found, tampered or
    not), with a proof source when the rows are complete, and what an operator should know."""

    note: str
    size: int
    start: int
    end: int
    rows: list[tuple[int, bytes]]
    subtree: SubtreeHash | None
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        return export_rows(self.note, self.rows, subtree=self.subtree)


def export_range(
    db: Session,
    *,
    start: int = 0,
    end: int | None = None,
    with_proofs: bool = True,
    limit: int | None = None,
) -> LedgerExport:
    """The entries ``start <= index < end`` (default: all the checkpoint covers).

    Raises ``NotFound`` before any checkpoint is signed and ``InvalidInput`` for a range that
    is backwards or longer than ``limit``. Proofs come from the stored hashes of the signed
    tree, never from the exported bytes, so an entry altered in storage fails its own proof;
    they are left out (with a warning) when stored rows of the range are missing.
    """
    checkpoint = latest_checkpoint(db)
    if checkpoint is None:
        raise NotFound("No checkpoint has been signed yet: there is nothing to export.")
    size = checkpoint.size
    end = size if end is None else min(end, size)
    if end < start:
        raise InvalidInput("The end of the range must not come before its start.", field="end")
    if limit is not None and end - start > limit:
        raise InvalidInput(f"Export at most {limit} entries at a time.", field="end")
    rows = [
        (index, bytes(entry))
        for index, entry in db.execute(
            select(LedgerEntry.index, LedgerEntry.entry)
            .where(LedgerEntry.index >= start, LedgerEntry.index < end)
            .order_by(LedgerEntry.index)
        )
    ]
    warnings: list[str] = []
    missing = next(
        (start + i for i, (index, _) in enumerate(rows) if index != start + i), start + len(rows)
    )
    complete = missing == end
    if not complete:
        held = (
            f"{len(rows)} are stored"
            if (start, end) == (0, size)
            else (f"{len(rows)} of indexes {start} to {end - 1} are stored")
        )
        warnings.append(
            f"the checkpoint covers {size} entries but {held}, the first missing being index "
            f"{missing}; the export will not verify"
        )
    subtree = None
    if with_proofs and complete:
        subtree = stored_subtrees(db, size)
    elif with_proofs:
        warnings.append("proofs need every stored entry; the export has none")
    note = cosigned_note(db, checkpoint)  # with whatever witnesses cosigned it
    return LedgerExport(note, size, start, end, rows, subtree, warnings)
