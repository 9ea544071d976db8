"""JWS with the ledger key: what receipts and the vault's other signed documents share."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from consent.ledger.checkpoint import key_id
from consent.ledger.service import signing_ledger_key
from vault.runtime import Runtime


@contextmanager
def eddsa_allowed() -> Iterator[None]:
    """joserfc warns that RFC 9864 deprecates the polymorphic ``EdDSA`` name in favour of
    ``Ed25519``; receipts keep ``EdDSA`` (the name most JOSE libraries verify today), and the
    key type is pinned to Ed25519 on both sides, so the warning is silenced here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated")
        yield


def receipt_kid(rt: Runtime) -> str:
    """The JWS ``kid``: the C2SP signed-note key ID (hex) of the ledger's key, under the log
    origin stored with it; refused when this process's settings name another log."""
    key = signing_ledger_key(rt)
    return key_id(key.origin, key.private_key.public_key()).hex()
