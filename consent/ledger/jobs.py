"""Scheduled work of the ledger: integrating pending events (the sequencer), and signing a
checkpoint when the log grew."""

from __future__ import annotations

from sqlalchemy.orm import Session

from consent.ledger.service import InconsistentLedger, LedgerOriginMismatch, create_checkpoint
from consent.ledger.store import integrate
from consent.ledger.witnessing import WitnessSettingError, collect_cosignatures, describe
from vault.jobs import Job, JobFailed
from vault.runtime import Runtime

SEQUENCE_INTERVAL = 0.25
"""Seconds between sequencer runs in ``vrm worker`` while nothing is pending (a run with nothing
pending is one read); a run that integrated events is followed by another at once."""


def _sequence(db: Session, rt: Runtime) -> str | None:
    done = integrate(db)
    if not done.count:
        return None
    return f"ledger: {done.count} pending events integrated, tree size {done.size}"


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
SEQUENCE_LEDGER = Job("integrate pending ledger events", _sequence)
"""The sequencer: ``vrm worker`` runs it on a thread of its own, again at once after a run that
integrated events and every :data:`SEQUENCE_INTERVAL` seconds otherwise, and on every pass
before signing a checkpoint."""


def _collect_cosignatures(db: Session, rt: Runtime) -> str | None:
    # The session is left unused: no transaction may stay open while a witness is called, so
    # collect_cosignatures opens its own short ones before and after the calls.
    try:
        return describe(collect_cosignatures(rt))
    except WitnessSettingError as exc:  # says which witness's key is unusable, every pass
        raise JobFailed(exc.message) from exc


COLLECT_COSIGNATURES = Job("collect witness cosignatures", _collect_cosignatures)
"""Runs after SIGN_CHECKPOINT: each new checkpoint goes to the witnesses once it is committed."""
