"""The composition root's list of parts: which packages take part in export, import and
erasure, in what order, and who signs for the vault. Like :mod:`vault.app`, it may import
every package; the vault core itself imports none of them."""

from __future__ import annotations

from vault.portability.parts import Portability
from vault.runtime import Runtime


def portability(rt: Runtime) -> Portability:
    from consent.portability import ConsentPart, LedgerSigner
    from intents.portability import IntentsPart
    from vault.portability.core import CorePart

    # Export order; erasure runs it backwards (the core part, which destroys the data key
    # and the account, goes last; consent, which needs the pseudonym, goes first).
    return Portability(parts=(CorePart(), IntentsPart(), ConsentPart()), signer=LedgerSigner(rt))
