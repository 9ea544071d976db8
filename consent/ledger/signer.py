"""The vault's signature on what it hands out (export manifests, erasure receipts): EdDSA compact
JWS with the ledger key, each kind with its own ``typ``.
"""

from __future__ import annotations

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from consent.ledger.checkpoint import CheckpointError, parse_verifier_key
from consent.ledger.jose import eddsa_allowed, receipt_kid
from consent.ledger.service import (
    origin,
    public_key_text,
    signing_key,
)
from vault.runtime import Runtime


class LedgerSigner:
    """Signs exports and erasure receipts with the ledger key (EdDSA compact JWS), the key
    whose verifier key ``vrm ledger public-key`` prints."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def origin(self) -> str:
        return origin(self.rt)

    def public_key(self) -> str:
        return public_key_text(self.rt)

    def sign(self, payload: bytes, typ: str) -> str:

        header = {"alg": "EdDSA", "typ": typ, "kid": receipt_kid(self.rt)}
        key = OKPKey.import_key(signing_key(self.rt))
        with eddsa_allowed():
            return str(jws.serialize_compact(header, payload, key, algorithms=["EdDSA"]))

    def verify(self, token: str, public_key: str, typ: str, *, untyped_ok: bool = False) -> bytes:

        try:
            key = OKPKey.import_key(parse_verifier_key(public_key.strip()).public_key)
            with eddsa_allowed():
                obj = jws.deserialize_compact(token.strip(), key, algorithms=["EdDSA"])
        except (CheckpointError, JoseError, ValueError, TypeError) as exc:
            raise ValueError(f"the signature does not verify ({type(exc).__name__})") from None
        named = obj.protected.get("typ")
        if named != typ and not (named is None and untyped_ok):
            raise ValueError(f"this is not a {typ} (its typ is {named!r})")
        return bytes(obj.payload)
