"""JWS with the ledger key: what receipts and the vault's other signed documents share.

Everything the ledger key signs as a JWS (consent receipts, export manifests, erasure receipts)
carries ``alg`` ``Ed25519``, the fully specified name RFC 9864 registers for EdDSA over
Ed25519. Documents signed before that carry the polymorphic ``EdDSA`` (RFC 8037), which RFC 9864
deprecates; the verifiers here still accept it, pinned to the same Ed25519 key, so receipts and
archives already handed out keep verifying. The key itself is unchanged (an OKP key on the
Ed25519 curve): only the name in the header differs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.jwk import OKPKey

from consent.ledger.checkpoint import key_id
from consent.ledger.service import signing_ledger_key
from vault.runtime import Runtime

ALGORITHM = "Ed25519"
"""The ``alg`` of every JWS the ledger key signs (RFC 9864)."""
LEGACY_ALGORITHM = "EdDSA"
"""The ``alg`` of documents signed before RFC 9864's name; verified, never emitted."""
VERIFIED_ALGORITHMS = (ALGORITHM, LEGACY_ALGORITHM)


@contextmanager
def eddsa_allowed() -> Iterator[None]:
    """joserfc warns that RFC 9864 deprecates the polymorphic ``EdDSA`` name; the vault only
    verifies that name (documents signed before it moved to ``Ed25519``) with the ledger's
    Ed25519 key, so the warning is silenced here, and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated")
        yield


def receipt_kid(rt: Runtime) -> str:
    """The JWS ``kid``: the C2SP signed-note key ID (hex) of the ledger's key, under the log
    origin stored with it; refused when this process's settings name another log."""
    key = signing_ledger_key(rt)
    return key_id(key.origin, key.private_key.public_key()).hex()


def sign_compact(rt: Runtime, payload: bytes, typ: str) -> str:
    """A compact JWS over ``payload`` with the ledger key: ``alg`` Ed25519, the given ``typ``,
    ``kid`` the ledger key's id."""
    key = signing_ledger_key(rt)
    kid = key_id(key.origin, key.private_key.public_key()).hex()
    header = {"alg": ALGORITHM, "typ": typ, "kid": kid}
    jwk = OKPKey.import_key(key.private_key)
    return str(jws.serialize_compact(header, payload, jwk, algorithms=[ALGORITHM]))


def verify_compact(token: str, public_key: Ed25519PublicKey) -> jws.CompactSignature:
    """Check a compact JWS signed with ``public_key`` under ``Ed25519`` or, for documents
    signed before the change, ``EdDSA``; any other ``alg`` is refused. Raises joserfc's
    ``JoseError`` (or ``ValueError``) when it does not verify."""
    with eddsa_allowed():
        return jws.deserialize_compact(
            token, OKPKey.import_key(public_key), algorithms=list(VERIFIED_ALGORITHMS)
        )
