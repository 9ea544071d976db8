"""The vault's signature on what it hands out (export manifests, erasure receipts): compact JWS
with the ledger key (``alg`` Ed25519; ``EdDSA`` from before still verifies), each kind with its
own ``typ``.
"""

from __future__ import annotations

from joserfc.errors import JoseError

from consent.ledger.checkpoint import CheckpointError, parse_verifier_key
from consent.ledger.jose import sign_compact, verify_compact
from consent.ledger.service import origin, public_key_text
from vault.runtime import Runtime


class LedgerSigner:
    """Signs exports and erasure receipts with the ledger key (Ed25519 compact JWS), the key
    whose verifier key ``vrm ledger public-key`` prints."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def origin(self) -> str:
        return origin(self.rt)

    def public_key(self) -> str:
        return public_key_text(self.rt)

    def sign(self, payload: bytes, typ: str) -> str:

        return sign_compact(self.rt, payload, typ)

    def verify(self, token: str, public_key: str, typ: str, *, untyped_ok: bool = False) -> bytes:

        try:
            key = parse_verifier_key(public_key.strip()).public_key
            obj = verify_compact(token.strip(), key)
        except (CheckpointError, JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"the signature does not verify ({type(exc).__name__})") from None
        named = obj.protected.get("typ")
        if named != typ and not (named is None and untyped_ok):
            raise ValueError(f"this is not a {typ} (its typ is {named!r})")
        return bytes(obj.payload)
