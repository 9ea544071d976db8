"""Scheduled work of the ledger: signing a checkpoint when the log grew."""

from __future__ import annotations

from sqlalchemy.orm import Session

from consent.ledger.service import InconsistentLedger, LedgerOriginMismatch, create_checkpoint
from vault.jobs import Job, JobFailed
from vault.runtime import Runtime


def _sign_checkpoint(db: Session, rt: Runtime) -> str | None:
    try:
        signed = create_checkpoint(db, rt)
    except InconsistentLedger as exc:
        # The worker keeps delivering webhooks and ending grants; it says this on every pass.
        raise JobFailed(f"{exc}: the stored ledger was altered") from exc
    except LedgerOriginMismatch as exc:  # signs nothing, and says why on every pass
        raise JobFailed(exc.message) from exc
    return f"ledger checkpoint signed at size {signed.size}" if signed is not None else None


SIGN_CHECKPOINT = Job("sign a ledger checkpoint", _sign_checkpoint)
