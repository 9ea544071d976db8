"""The composition root's lists: which packages take part in export, import and erasure (in
what order, and who signs for the vault), and which scheduled jobs ``vrm worker`` runs. Like
:mod:`vrm.app`, it may import every package; the vault core imports none of them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from consent.grants.jobs import EXPIRE_GRANTS, WARN_EXPIRING_GRANTS
from consent.grants.portability import ConsentPart
from consent.ledger.jobs import (
    COLLECT_COSIGNATURES,
    SEQUENCE_INTERVAL,
    SEQUENCE_LEDGER,
    SIGN_CHECKPOINT,
)
from consent.ledger.signer import LedgerSigner
from intents.jobs import CLOSE_INTENTS
from intents.portability import IntentsPart
from vault.accounts.jobs import PURGE_THROTTLE
from vault.factors.jobs import PURGE_CHALLENGES
from vault.jobs import Job
from vault.mail.jobs import SEND_MAIL, SEND_NOTICES
from vault.mail.portability import NoticesPart
from vault.portability.core import CorePart
from vault.portability.jobs import COMPACT_LOG
from vault.portability.parts import Portability
from vault.runtime import Runtime
from vault.signup import purge_unconfirmed


def portability(rt: Runtime) -> Portability:
    # Export order; erasure runs it backwards (the core part, which destroys the data key
    # and the account, goes last; consent, which needs the pseudonym, goes first).
    return Portability(
        parts=(CorePart(), NoticesPart(), IntentsPart(), ConsentPart()), signer=LedgerSigner(rt)
    )


def _purge_unconfirmed(db: Session, rt: Runtime) -> str | None:
    erased = purge_unconfirmed(db, rt, portability(rt))
    return f"erased {erased} account(s) never confirmed" if erased else None


PURGE_UNCONFIRMED = Job("erase unconfirmed accounts", _purge_unconfirmed)
"""Accounts whose address was not confirmed before its link expired go, with all they hold."""

JOBS: tuple[Job, ...] = (
    EXPIRE_GRANTS,
    WARN_EXPIRING_GRANTS,
    CLOSE_INTENTS,
    PURGE_THROTTLE,
    PURGE_CHALLENGES,
    PURGE_UNCONFIRMED,
    COMPACT_LOG,
    SEQUENCE_LEDGER,
    SIGN_CHECKPOINT,
    COLLECT_COSIGNATURES,
    SEND_NOTICES,
    SEND_MAIL,
)
"""What ``vrm worker`` runs on every pass, in this order, each in its own transaction. Webhook
delivery runs beside them (:class:`consent.webhooks.delivery.Dispatcher`)."""

FREQUENT_JOBS: tuple[tuple[Job, float], ...] = ((SEQUENCE_LEDGER, SEQUENCE_INTERVAL),)
"""Jobs ``vrm worker`` also runs on a thread of their own every so many seconds (the ledger's
sequencer: an event is integrated within a fraction of a second of its commit)."""
