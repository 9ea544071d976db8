"""Checkpoints: the ledger's Ed25519 signing key, and signing the tree head in batches."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from consent.ledger.merkle import SubtreeHash, verify_consistency
from consent.ledger.models import (
    LedgerCheckpoint,
    LedgerEntry,
    LedgerHead,
    LedgerNode,
    LedgerPending,
)
from consent.ledger.store import HEAD_ID, StoredTree, lock_head
from vault.base import utcnow
from vault.errors import ServiceFault
from vault.keys import SigningKeyFile
from vault.runtime import Runtime
from vault.settings import Settings

KEY = SigningKeyFile(
    "ledger-signing.json",
    "Ed25519",
    lambda: base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode(),
)
KEY_FILE = KEY.filename
LOG_ORIGIN = "log_origin"
"""The key file's field holding the log's origin, fixed when the key is made."""

log = logging.getLogger("vrm.ledger")


def origin_for(settings: Settings) -> str:
    """The origin a process's settings name: the base URL's host and path, no scheme.

    Only ever used to make (or adopt) the log's origin and to check a process against it;
    what the log is called is what its key file says (:func:`ledger_key`).
    """
    base = settings.base_url.split("://", 1)[-1]
    return f"{base}/consent-ledger"


@lru_cache(maxsize=8)
def _import(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


@dataclass(frozen=True, slots=True)
class LedgerKey:
    """The log's signing key and its origin (the checkpoint origin line, the signed-note key
    name), stored together in the key file when the key was made."""

    origin: str
    private_key: Ed25519PrivateKey
    path: Path

    def verifier_key(self) -> str:
        return verifier_key(self.origin, self.private_key.public_key())

    def __repr__(self) -> str:
        return f"LedgerKey(origin={self.origin!r}, path={self.path})"


class LedgerOriginMismatch(ServiceFault, RuntimeError):
    """This process's VRM_BASE_URL names another log than the one the ledger key belongs to:
    it refuses to sign, rather than sign under a name no published key verifies."""


def ledger_key(rt: Runtime) -> LedgerKey:
    """The ledger's key and the log origin stored with it.

    A key is made with the origin its maker's settings name (``vrm keys init``, or the first
    use in development). A key made before origins were stored gets one on first use: the
    origin this process's settings name is written into the key file, once, and every process
    uses that from then on (``vrm keys ledger-origin`` does the same on purpose).
    """
    settings = rt.settings
    stored = KEY.read(
        settings.key_dir,
        production=settings.is_production,
        fields={LOG_ORIGIN: origin_for(settings)},
    )
    name = stored.field(LOG_ORIGIN)
    if name is None:
        try:
            name = KEY.adopt(settings.key_dir, LOG_ORIGIN, origin_for(settings))
        except OSError as exc:
            # A key directory this process may not write (a read-only mount, say): keep
            # working as before, under this process's settings, and say how to fix it.
            name = origin_for(settings)
            log.warning(
                "ledger key %s has no log origin and it cannot be recorded (%s); using %s from "
                "VRM_BASE_URL for now: run `vrm keys ledger-origin` where the key directory is "
                "writable, so that every process is held to one origin",
                stored.path,
                exc.strerror or type(exc).__name__,
                name,
            )
        else:
            log.warning("ledger key %s had no log origin; it is now fixed as %s", stored.path, name)
    return LedgerKey(name, _import(stored.key), stored.path)


def origin_problem(rt: Runtime, key: LedgerKey | None = None) -> str | None:
    """Why this process must not sign for the ledger (its settings name another log), or
    None when they agree."""
    key = key or ledger_key(rt)
    mine = origin_for(rt.settings)
    if mine == key.origin:
        return None
    scheme = rt.settings.base_url.split("://", 1)[0] if "://" in rt.settings.base_url else "https"
    suggestion = f"{scheme}://{key.origin.removesuffix('/consent-ledger')}"
    return (
        f"refusing to sign for the consent ledger: its key ({key.path.name} in VRM_KEY_DIR) "
        f"belongs to the log {key.origin!r}, but this process's VRM_BASE_URL "
        f"({rt.settings.base_url}) names the log {mine!r}. A log's origin is fixed when its "
        f"key is made; start this process with the VRM_BASE_URL the vault is served at "
        f"(the key was made for {suggestion})."
    )


def signing_ledger_key(rt: Runtime) -> LedgerKey:
    """The ledger key, for a process about to sign with it (checkpoints, receipts, exports):
    :class:`LedgerOriginMismatch`, saying why, when its settings name another log."""
    key = ledger_key(rt)
    problem = origin_problem(rt, key)
    if problem is not None:
        raise LedgerOriginMismatch(problem)
    return key


def signing_key(rt: Runtime) -> Ed25519PrivateKey:
    """The private key to sign with (see :func:`signing_ledger_key`)."""
    return signing_ledger_key(rt).private_key


def origin(rt: Runtime) -> str:
    """The checkpoint origin line: the log's name, stored with its key (not the settings)."""
    return ledger_key(rt).origin


def public_key_text(rt: Runtime) -> str:
    """The verifier key (``name+keyid+base64``) an auditor needs to check checkpoints."""
    return ledger_key(rt).verifier_key()


def latest_checkpoint(db: Session) -> LedgerCheckpoint | None:
    return db.scalars(
        select(LedgerCheckpoint).order_by(LedgerCheckpoint.size.desc()).limit(1)
    ).one_or_none()


@dataclass(frozen=True)
class SigningBacklog:
    unsigned: int
    """Events recorded (pending or integrated) but not yet in a signed checkpoint."""
    checkpoint_age_seconds: float | None
    """How old the latest signed checkpoint is; None before the first."""


def signing_backlog(db: Session, now: datetime | None = None) -> SigningBacklog:
    """Events not yet in a signed checkpoint (recorded and waiting for the sequencer, or
    integrated since the last checkpoint) and the checkpoint's age: the tree head's size,
    the latest checkpoint and a count of the pending events (a short table: the sequencer
    drains it every fraction of a second)."""
    now = now or utcnow()
    size = db.scalar(select(LedgerHead.size).where(LedgerHead.id == HEAD_ID)) or 0
    pending = db.scalar(select(func.count()).select_from(LedgerPending)) or 0
    latest = latest_checkpoint(db)
    if latest is None:
        return SigningBacklog(int(size) + int(pending), None)
    age = max(0.0, (now - latest.created_at).total_seconds())
    return SigningBacklog(max(0, int(size) - latest.size) + int(pending), age)


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
    A process whose settings name another log than the key's refuses first, whether or not
    there is anything to sign (:class:`LedgerOriginMismatch`), so a worker says so every pass.
    """
    key = signing_ledger_key(rt)
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
    note = sign_checkpoint(Checkpoint(key.origin, size, root), key.origin, key.private_key)
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
