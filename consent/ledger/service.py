"""Checkpoints: the ledger's Ed25519 signing key, and signing the tree head in batches."""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from consent.ledger.merkle import SubtreeHash, verify_consistency
from consent.ledger.models import LedgerCheckpoint, LedgerEntry, LedgerNode
from consent.ledger.store import StoredTree, lock_head
from vault.base import utcnow
from vault.errors import ServiceFault
from vault.keys import SigningKeyFile
from vault.runtime import Runtime

KEY = SigningKeyFile(
    "ledger-signing.json",
    "Ed25519",
    lambda: base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode(),
)
KEY_FILE = KEY.filename


def origin(rt: Runtime) -> str:
    """The checkpoint origin line: this vault's host and path, without a scheme."""
    base = rt.settings.base_url.split("://", 1)[-1]
    return f"{base}/consent-ledger"


@lru_cache(maxsize=8)
def _import(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def signing_key(rt: Runtime) -> Ed25519PrivateKey:
    return _import(KEY.load(rt.settings.key_dir, production=rt.settings.is_production))


def public_key_text(rt: Runtime) -> str:
    """The verifier key (``name+keyid+base64``) an auditor needs to check checkpoints."""
    return verifier_key(origin(rt), signing_key(rt).public_key())


def latest_checkpoint(db: Session) -> LedgerCheckpoint | None:
    return db.scalars(
        select(LedgerCheckpoint).order_by(LedgerCheckpoint.size.desc()).limit(1)
    ).one_or_none()


def checkpoint_at_least(db: Session, size: int) -> LedgerCheckpoint | None:
    """The smallest stored checkpoint covering ``size`` entries."""
    return db.scalars(
        select(LedgerCheckpoint)
        .where(LedgerCheckpoint.size >= size)
        .order_by(LedgerCheckpoint.size)
        .limit(1)
    ).one_or_none()


class InconsistentLedger(ServiceFault, RuntimeError):
    """The stored tree does not extend the last signed checkpoint: refuse to sign."""


def create_checkpoint(db: Session, rt: Runtime) -> LedgerCheckpoint | None:
    """Sign the current tree head if it grew since the last checkpoint (else None).

    Before signing, the new root is proven consistent with the previous checkpoint from the
    stored nodes, so the vault never signs a history that contradicts one it signed before.
    """

    lock_head(db)  # one signer at a time: two would insert the same size
    tree = StoredTree(db)
    size = tree.size()
    previous = latest_checkpoint(db)
    if size == 0 or (previous is not None and previous.size >= size):
        return None
    root = tree.root(size)
    if previous is not None:
        proof = tree.consistency(previous.size, size)
        if not verify_consistency(previous.size, size, bytes(previous.root), root, proof):
            raise InconsistentLedger(
                f"the stored tree at size {size} is not consistent with checkpoint "
                f"{previous.size}; refusing to sign"
            )
    note = sign_checkpoint(Checkpoint(origin(rt), size, root), origin(rt), signing_key(rt))
    row = LedgerCheckpoint(size=size, root=root, note=note, created_at=utcnow())
    db.add(row)
    db.flush()
    return row


def stored_subtrees(db: Session, size: int) -> SubtreeHash:
    """The stored hashes of the tree of ``size`` entries, read in two queries, for exports.

    Leaf hashes come from the entry rows' ``leaf_hash`` (as written at append time, not
    recomputed from the entry bytes) and the rest from the stored nodes, so the proofs an
    export carries are those of the tree that was signed. A missing hash raises ``KeyError``.
    """
    hashes: dict[tuple[int, int], bytes] = {
        (0, index): bytes(digest)
        for index, digest in db.execute(
            select(LedgerEntry.index, LedgerEntry.leaf_hash).where(LedgerEntry.index < size)
        )
    }
    for level, index, digest in db.execute(
        select(LedgerNode.level, LedgerNode.index, LedgerNode.hash)
    ):
        if (index + 1) << level <= size:
            hashes[(level, index)] = bytes(digest)

    def subtree(level: int, index: int) -> bytes:
        return hashes[(level, index)]

    return subtree
