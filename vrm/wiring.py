"""The composition root's lists: which packages take part in export, import and erasure (in
what order, and who signs for the vault), and which scheduled jobs ``vrm worker`` runs. Like
:mod:`vrm.app`, it may import every package; the vault core imports none of them."""

from __future__ import annotations

from consent.grants.jobs import EXPIRE_GRANTS
from consent.grants.portability import ConsentPart
from consent.ledger.jobs import COLLECT_COSIGNATURES, SIGN_CHECKPOINT
from consent.ledger.signer import LedgerSigner
from intents.jobs import CLOSE_INTENTS
from intents.portability import IntentsPart
from vault.accounts.jobs import PURGE_THROTTLE
from vault.jobs import Job
from vault.portability.core import CorePart
from vault.portability.jobs import COMPACT_LOG
from vault.portability.parts import Portability
from vault.runtime import Runtime

JOBS: tuple[Job, ...] = (
    EXPIRE_GRANTS,
    CLOSE_INTENTS,
    PURGE_THROTTLE,
    COMPACT_LOG,
    SIGN_CHECKPOINT,
    COLLECT_COSIGNATURES,
)
"""What ``vrm worker`` runs on every pass, in this order, each in its own transaction. Webhook
delivery runs beside them (:class:`consent.webhooks.delivery.Dispatcher`)."""


def portability(rt: Runtime) -> Portability:
    # Export order; erasure runs it backwards (the core part, which destroys the data key
    # and the account, goes last; consent, which needs the pseudonym, goes first).
    return Portability(parts=(CorePart(), IntentsPart(), ConsentPart()), signer=LedgerSigner(rt))
