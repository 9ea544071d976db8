"""Erasure: everything about one individual, gone in one transaction, with a signed receipt.

Every part erases its rows (consent first: it revokes every grant, telling the vendors, and
appends the ``individual.erased`` ledger entry under the person-wide pseudonym while the
pseudonyms can still be read; the core part last: it destroys the data key, so every
ciphertext of the person is unreadable, and deletes the account with its blind email index).
Then the signer's part queues ``subject.erased`` to every vendor that knew the person and
signs a checkpoint covering the erasure entry. All of it is one transaction: a failure
midway leaves everything as it was, and running it again completes it.

The receipt is a compact JWS (Ed25519, the ledger key) of what was done: when, the pseudonyms,
counts of what was deleted, the vendors asked to delete their copies, and the ledger entry
with its checkpoint and inclusion proof, so anyone can check it offline.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vault.accounts.models import Account
from vault.accounts.service import AccountService
from vault.base import utcnow
from vault.errors import Conflict
from vault.portability.parts import ERASURE_RECEIPT_TYP, ErasureContext, Portability
from vault.profile.service import ProfileService
from vault.runtime import Runtime

RECEIPT_TYPE = "vrm-vault-erasure-receipt"
CONFIRMATION = "erase my vault"
"""What the individual types to confirm an erasure (case and spacing do not matter)."""
log = logging.getLogger("vrm.erasure")


@dataclass(frozen=True)
class Erased:
    receipt: str
    """The compact JWS."""
    payload: dict[str, Any]


def refusals(
    db: Session,
    rt: Runtime,
    account: Account,
    *,
    password: object,
    typed: object,
    client_address: str,
) -> dict[str, str]:
    """Why this erasure request may not go ahead (field -> sentence); empty when it may.

    The password is checked like a sign-in: a wrong one counts against the sign-in throttle
    (a signed-in session is no licence to guess) and stays counted; a full bucket raises
    ``SignInThrottled``. Nothing else is written, so the caller may show the form again and
    commit.
    """
    email = ProfileService(db, rt).email_of(account.id) or ""
    right = isinstance(password, str) and AccountService(db, rt).confirm_password(
        account, password, email=email, client_address=client_address
    )
    found: dict[str, str] = {}
    if not right:
        found["password"] = "The password is not right."  # noqa: S105 (a message)
    if not isinstance(typed, str) or not hmac.compare_digest(
        " ".join(typed.lower().split()).encode(), CONFIRMATION.encode()
    ):
        found["confirmation"] = f"Type “{CONFIRMATION}” to confirm."
    return found


def erase(db: Session, rt: Runtime, portability: Portability, owner_id: uuid.UUID) -> Erased:
    """Erase the individual in the caller's transaction (flushes; the caller commits).

    The account row is locked first: a second erasure of the same person at once (a double
    click) waits for this one and then finds nothing, and a grant or intent being added
    meanwhile waits too, then fails, instead of slipping in between the reads and deletes.
    """
    locked = db.scalars(
        select(Account.id).where(Account.id == owner_id).with_for_update()
    ).one_or_none()
    if locked is None:
        raise Conflict(
            "This vault was already erased (in another window or tab); the erasure receipt "
            "was shown there."
        )
    context = ErasureContext(subject=None)
    for part in reversed(portability.parts):
        part.erase(db, rt, owner_id, context)
    for part in portability.parts:
        part.finish_erasure(db, rt, context)
    signer = portability.signer
    payload: dict[str, Any] = {
        "type": RECEIPT_TYPE,
        "version": 1,
        "erased_at": utcnow().replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "vault": {
            "base_url": rt.settings.base_url,
            "origin": signer.origin(),
            "public_key": signer.public_key(),
        },
        "subject": context.subject,
        "ledger_subjects": context.subjects,
        "deleted": dict(sorted(context.deleted.items())),
        "vendors_asked_to_delete": sorted(context.vendors_notified),
        "vendors_without_webhook": sorted(context.vendors_not_reachable),
        "kept": (
            "The consent ledger's entries about you stay, under pseudonyms only (one for each "
            "vendor, listed in this receipt): their links to you are deleted, so they name no "
            "one, and the ledger stays "
            "verifiable. Vendors' webhook delivery logs keep the messages sent to them, which "
            "name you only by the identifier each vendor had; security events about your "
            "former connections (a replayed code, say) stay without any link to you. Sign-in "
            "failure counters, keyed hashes, are forgotten when their window ends."
        ),
        "ledger": context.evidence,
    }
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return Erased(receipt=signer.sign(body.encode(), ERASURE_RECEIPT_TYP), payload=payload)


def compact(rt: Runtime, *, attempts: int = 5) -> bool:
    """After an erasure committed: on SQLite, fold the write-ahead log into the database and
    truncate it, so the old page images it held (the erased rows) leave the disk too. The
    database itself zeroes deleted content (``PRAGMA secure_delete``). PostgreSQL keeps dead
    rows until VACUUM reclaims them; they are unreadable through SQL meanwhile.

    Returns whether the log was truncated (False: a reader held it; ``vrm worker`` retries on
    every pass)."""
    if rt.engine.dialect.name != "sqlite":
        return True
    raw = rt.engine.raw_connection()
    try:
        # Never wait on a lock: a waiting checkpoint holds up every writer behind it.
        raw.execute("PRAGMA busy_timeout=0")
        for attempt in range(attempts):
            busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy is None or not busy[0]:
                return True
            time.sleep(0.2 * (attempt + 1))
    finally:
        raw.execute("PRAGMA busy_timeout=10000")
        raw.close()
    # A reader (say, a streaming export) holds the log; the worker's next pass folds it in.
    log.warning("the write-ahead log could not be truncated now; vrm worker will retry")
    return False
