"""The vault's side of witnessing (C2SP tlog-witness): sending each new checkpoint to the
witnesses ``VRM_LEDGER_WITNESSES`` lists, with a consistency proof from the last size each one
cosigned, and keeping the cosignatures they return.

No transaction is open while a witness is called: the checkpoint, the witnesses' sizes and the
proofs are read in one short transaction, every witness is called at once on a thread of its
own (each call bounded by ``VRM_LEDGER_WITNESS_TIMEOUT_SECONDS``), and what they answered is
written in another. A witness that is down is tried again later, with backoff; it never holds
up the ledger. The audit API publishes the latest checkpoint that ``VRM_LEDGER_WITNESS_QUORUM``
witnesses cosigned, with their cosignatures as extra signature lines.
"""

from __future__ import annotations

import base64
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consent.ledger.checkpoint import CheckpointError, parse_signed_note
from consent.ledger.cosignature import (
    CosignerKey,
    parse_cosigner_key,
    verify_cosignature,
    with_signatures,
)
from consent.ledger.models import LedgerCheckpoint, LedgerCosignature, LedgerWitness
from consent.ledger.service import latest_checkpoint
from consent.ledger.store import StoredTree
from vault.base import utcnow
from vault.errors import ServiceFault
from vault.runtime import Runtime
from vault.settings import Settings

log = logging.getLogger("vrm.ledger")

MAX_BACKOFF = timedelta(minutes=10)
MAX_ANSWER_BYTES = 64 * 1024


class WitnessSettingError(ServiceFault, ValueError):
    """A witness in VRM_LEDGER_WITNESSES has a key that is not a witness's verifier key."""


@dataclass(frozen=True, slots=True)
class ConfiguredWitness:
    label: str
    url: str
    key: CosignerKey


def configured(settings: Settings) -> list[ConfiguredWitness]:
    """The witnesses of ``VRM_LEDGER_WITNESSES``, their keys parsed."""
    found = []
    for w in settings.ledger_witnesses:
        try:
            key = parse_cosigner_key(w.vkey)
        except CheckpointError as exc:
            raise WitnessSettingError(
                f"VRM_LEDGER_WITNESSES: the key of witness {w.name!r} is unusable: {exc}"
            ) from None
        found.append(ConfiguredWitness(w.name, w.url.rstrip("/"), key))
    return found


# -- what is published --------------------------------------------------------------------------


def cosignature_lines(db: Session, size: int, keys: list[str] | None = None) -> list[str]:
    """The stored cosignature lines on the checkpoint of ``size`` (of ``keys`` only, if given)."""
    query = select(LedgerCosignature.line).where(LedgerCosignature.checkpoint_size == size)
    if keys is not None:
        query = query.where(LedgerCosignature.witness.in_(keys))
    return list(db.scalars(query.order_by(LedgerCosignature.witness)))


def cosigned_note(db: Session, row: LedgerCheckpoint, keys: list[str] | None = None) -> str:
    """The checkpoint's signed note with the witnesses' cosignatures appended."""
    return with_signatures(row.note, cosignature_lines(db, row.size, keys))


def _cosigned_by_quorum(keys: list[str], quorum: int) -> ColumnElement[bool]:
    """A condition on a ``LedgerCheckpoint`` row: at least ``quorum`` of the witnesses
    ``keys`` cosigned it. Correlated, one primary-key range per checkpoint, so a query that
    walks the checkpoints in size order and stops at the first match (``LIMIT 1``) reads a
    few of them, not every cosignature ever stored."""
    count = (
        select(func.count())
        .select_from(LedgerCosignature)
        .where(
            LedgerCosignature.checkpoint_size == LedgerCheckpoint.size,
            LedgerCosignature.witness.in_(keys),
        )
        .correlate(LedgerCheckpoint)
        .scalar_subquery()
    )
    return count >= quorum


def published_row(db: Session, rt: Runtime) -> LedgerCheckpoint | None:
    """The checkpoint the vault publishes: the latest one at least
    ``VRM_LEDGER_WITNESS_QUORUM`` of the configured witnesses cosigned (the latest one of all
    when the quorum is 0). None when there is none yet."""
    quorum = rt.settings.ledger_witness_quorum
    if quorum == 0:
        return latest_checkpoint(db)
    keys = [w.key.text for w in configured(rt.settings)]
    return db.scalars(
        select(LedgerCheckpoint)
        .where(_cosigned_by_quorum(keys, quorum))
        .order_by(LedgerCheckpoint.size.desc())
        .limit(1)
    ).one_or_none()


def published_checkpoint(db: Session, rt: Runtime) -> tuple[LedgerCheckpoint, str] | None:
    """The checkpoint the vault publishes (:func:`published_row`) and its note with the
    configured witnesses' cosignatures. None when there is none yet."""
    row = published_row(db, rt)
    if row is None:
        return None
    keys = [w.key.text for w in configured(rt.settings)]
    return row, cosigned_note(db, row, keys)


def covering_checkpoint(db: Session, rt: Runtime, size: int) -> LedgerCheckpoint | None:
    """The smallest checkpoint covering ``size`` entries that a quorum of the configured
    witnesses cosigned (with no quorum set: the smallest one covering them)."""
    quorum = rt.settings.ledger_witness_quorum
    query = select(LedgerCheckpoint).where(LedgerCheckpoint.size >= size)
    if quorum > 0:
        keys = [w.key.text for w in configured(rt.settings)]
        query = query.where(_cosigned_by_quorum(keys, quorum))
    return db.scalars(query.order_by(LedgerCheckpoint.size).limit(1)).one_or_none()


# -- asking the witnesses ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one witness answered about the checkpoint of ``size``."""

    witness: ConfiguredWitness
    size: int
    cosigned_size: int | None = None
    line: str | None = None
    timestamp: int | None = None
    error: str | None = None


def _request_body(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode("utf-8")


def _proof(rt: Runtime, old: int, size: int) -> list[bytes]:
    if old in (0, size):
        return []
    with rt.sessions() as db, db.begin():
        return StoredTree(db, memoize=True).consistency(old, size)


def _ask(rt: Runtime, client: httpx.Client, w: ConfiguredWitness, row: _Pending) -> Outcome:
    """Send the checkpoint to one witness; on 409, once more from the size it says it has."""
    old = row.old
    for _attempt in range(2):
        if old > row.size:
            return Outcome(
                w,
                row.size,
                cosigned_size=old,
                error=f"the witness has cosigned a larger tree ({old} entries) than the "
                f"ledger's latest checkpoint ({row.size}): the ledger was rolled back, or the "
                "witness follows another log under this origin",
            )
        try:
            proof = _proof(rt, old, row.size)
        except LookupError as exc:
            return Outcome(w, row.size, error=f"no consistency proof from {old}: {exc}")
        try:
            answer = client.post(
                f"{w.url}/add-checkpoint",
                content=_request_body(old, proof, row.note),
                headers={"content-type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            return Outcome(w, row.size, error=f"no answer ({type(exc).__name__})")
        reply = answer.text[:MAX_ANSWER_BYTES]
        if answer.status_code == 409:
            head = reply.split("\n", 1)[0]
            if not head.isdigit() or len(head) > 19:
                return Outcome(w, row.size, error="409 without a tree size")
            old = int(head)  # resynchronise to what the witness holds
            continue
        if answer.status_code != 200:
            detail = reply.strip().split("\n", 1)[0][:300]
            if answer.status_code in (403, 422):  # the witness saw a fork or a forgery
                log.error("ledger witness %s refused size %d: %s", w.label, row.size, detail)
            return Outcome(w, row.size, error=f"HTTP {answer.status_code}: {detail}")
        return _accept(w, row, reply)
    return Outcome(w, row.size, error="the witness kept answering 409")


def _accept(w: ConfiguredWitness, row: _Pending, reply: str) -> Outcome:
    """Keep the witness's cosignature that verifies with its configured key."""
    try:
        _cp, lines = parse_signed_note(row.body + "\n" + reply)
    except CheckpointError as exc:
        return Outcome(w, row.size, error=f"an answer that is not signature lines: {exc}")
    for line in lines:
        if (line.name, line.key_id) != (w.key.name, w.key.key_id):
            continue  # the client must ignore cosignatures from unknown keys
        try:
            timestamp = verify_cosignature(row.body, line, w.key)
        except CheckpointError as exc:
            return Outcome(w, row.size, error=str(exc))
        return Outcome(w, row.size, row.size, line.line(), timestamp)
    return Outcome(w, row.size, error="the answer carries no cosignature by this witness's key")


@dataclass(frozen=True, slots=True)
class _Pending:
    size: int
    body: str
    note: str
    old: int


def collect_cosignatures(rt: Runtime) -> list[Outcome]:
    """Ask every configured witness that has not cosigned the latest checkpoint to cosign it
    (those in backoff after a failure wait their turn), and store what they answer."""
    witnesses = configured(rt.settings)
    if not witnesses:
        return []
    now = utcnow()
    with rt.sessions() as db, db.begin():
        row = latest_checkpoint(db)
        if row is None:
            return []
        have = set(
            db.scalars(
                select(LedgerCosignature.witness).where(
                    LedgerCosignature.checkpoint_size == row.size
                )
            )
        )
        state = {
            s.vkey: s
            for s in db.scalars(
                select(LedgerWitness).where(LedgerWitness.vkey.in_([w.key.text for w in witnesses]))
            )
        }
        size, note = row.size, row.note
        body = parse_signed_note(note)[0].body_text()
        todo = []
        for w in witnesses:
            known = state.get(w.key.text)
            if w.key.text in have:
                continue
            retry_at = known.retry_at if known is not None else None
            if retry_at is not None and _aware(retry_at) > now:
                continue
            old = known.cosigned_size if known is not None else 0
            todo.append((w, _Pending(size, body, note, old)))
    if not todo:
        return []
    timeout = httpx.Timeout(rt.settings.ledger_witness_timeout_seconds)
    with (
        httpx.Client(timeout=timeout, follow_redirects=False) as client,
        ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool,
    ):
        outcomes = list(pool.map(lambda item: _ask(rt, client, *item), todo))
    _store(rt, outcomes)
    return outcomes


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)


def _store(rt: Runtime, outcomes: list[Outcome]) -> None:
    now = utcnow()
    with rt.sessions() as db, db.begin():
        for o in outcomes:
            known = db.get(LedgerWitness, o.witness.key.text, with_for_update=True)
            if known is None:
                known = LedgerWitness(
                    vkey=o.witness.key.text, cosigned_size=0, failures=0, updated_at=now
                )
                db.add(known)
            if o.line is not None and o.timestamp is not None:
                known.cosigned_size = o.size
                known.failures, known.last_error, known.retry_at = 0, None, None
                if db.get(LedgerCosignature, (o.size, o.witness.key.text)) is None:
                    try:
                        with db.begin_nested():
                            db.add(
                                LedgerCosignature(
                                    checkpoint_size=o.size,
                                    witness=o.witness.key.text,
                                    line=o.line,
                                    timestamp=o.timestamp,
                                )
                            )
                    except IntegrityError:
                        pass  # another worker stored this witness's cosignature first
            else:
                if o.cosigned_size is not None:
                    known.cosigned_size = o.cosigned_size
                known.failures = (known.failures or 0) + 1
                known.last_error = (o.error or "failed")[:1000]
                backoff = min(timedelta(seconds=2 ** min(known.failures, 10)), MAX_BACKOFF)
                known.retry_at = now + backoff
                log.warning("ledger witness %s: %s", o.witness.label, o.error)
            known.updated_at = now


def describe(outcomes: list[Outcome]) -> str | None:
    """One line for the worker to print, or None when no witness was asked."""
    if not outcomes:
        return None
    parts = [
        f"{o.witness.label} cosigned size {o.size}"
        if o.line
        else f"{o.witness.label} did not cosign size {o.size} ({o.error})"
        for o in outcomes
    ]
    return "ledger witnesses: " + "; ".join(parts)
