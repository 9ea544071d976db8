"""The audit API (``/api/audit/v1``): checkpoints, entries and proofs for privacy auditors.

Entries name individuals only by pseudonym; nothing here reads a profile.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from consent.ledger.checkpoint import split_signed_note
from consent.ledger.dependencies import AuditorDep, bearer_token, require_auditor
from consent.ledger.hot import prove_for_token, require_auditor_token
from consent.ledger.models import MAX_INDEX, LedgerEntry
from consent.ledger.service import origin, public_key_text
from consent.ledger.store import (
    StoredTree,
    consistency_from,
    consistency_needs,
    inclusion_from,
    inclusion_needs,
    pending_events,
)
from consent.ledger.witnessing import published_checkpoint
from vault.db import unit_of_work
from vault.dependencies import DbDep, RuntimeDep
from vault.errors import (
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    VaultError,
    error_responses,
)
from vault.routing import APIRouter
from vault.runtime import Runtime

MAX_ENTRIES = 1000


router = APIRouter(prefix="/api/audit/v1", tags=["audit"])
_auth = (NotAuthenticated, Forbidden)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class CheckpointOut(BaseModel):
    size: int
    root: str
    note: str
    witnesses: int = 0
    """How many of the configured witnesses' cosignatures the note carries."""


class PublicKeyOut(BaseModel):
    origin: str
    algorithm: str
    verifier_key: str


class EntryOut(BaseModel):
    index: int
    leaf_hash: str
    entry: dict[str, Any]


class EntriesOut(BaseModel):
    tree_size: int
    entries: list[EntryOut]


class ProofOut(BaseModel):
    tree_size: int
    root: str
    proof: list[str]


@router.get(
    "/checkpoint", response_model=CheckpointOut, responses=error_responses(*_auth, NotFound)
)
def checkpoint(auditor: AuditorDep, db: DbDep, rt: RuntimeDep) -> CheckpointOut:
    """The published checkpoint (C2SP signed note): the latest one that the quorum of
    witnesses cosigned (``VRM_LEDGER_WITNESS_QUORUM``), their cosignatures (C2SP
    tlog-cosignature) as signature lines after the vault's own."""
    published = published_checkpoint(db, rt)
    if published is None:
        if rt.settings.ledger_witness_quorum:
            raise NotFound("No checkpoint has been cosigned by a quorum of witnesses yet.")
        raise NotFound("No checkpoint has been signed yet.")
    row, note = published
    cosigned = len(split_signed_note(note)[1]) - len(split_signed_note(row.note)[1])
    return CheckpointOut(size=row.size, root=b64(bytes(row.root)), note=note, witnesses=cosigned)


@router.get("/public-key", response_model=PublicKeyOut, responses=error_responses(*_auth))
async def public_key(request: Request) -> PublicKeyOut:
    """The Ed25519 verifier key for checkpoints (``name+keyid+base64``)."""
    rt: Runtime = request.app.state.runtime
    token = _token_in_event_loop(request)
    if token is not None:
        await require_auditor_token(rt, request.app.state.hot_pg, token)
    else:
        await run_in_threadpool(_as_auditor, request, lambda _db: None)
    return PublicKeyOut(origin=origin(rt), algorithm="Ed25519", verifier_key=public_key_text(rt))


@router.get("/entries", response_model=EntriesOut, responses=error_responses(*_auth, InvalidInput))
def entries(
    auditor: AuditorDep,
    db: DbDep,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    end: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
) -> EntriesOut:
    """Entries ``start <= index < end`` (at most 1000 at a time)."""
    end = end if end is not None else start + 100
    if end - start > MAX_ENTRIES:  # the range asked for, however many entries there are yet
        raise InvalidInput(f"Ask for at most {MAX_ENTRIES} entries at a time.", field="end")
    size = StoredTree(db).size()
    end = min(end, size)
    rows = db.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.index >= start, LedgerEntry.index < end)
        .order_by(LedgerEntry.index)
    ).all()
    return EntriesOut(
        tree_size=size,
        entries=[
            EntryOut(index=r.index, leaf_hash=bytes(r.leaf_hash).hex(), entry=json.loads(r.entry))
            for r in rows
        ],
    )


class LedgerDamaged(VaultError):
    """The stored ledger lacks a hash a proof needs: its storage was damaged or altered."""

    status_code = 500
    code = "ledger_damaged"


@contextmanager
def _stored() -> Iterator[None]:
    try:
        yield
    except LookupError as exc:  # a row of the signed tree is gone from storage
        raise LedgerDamaged(
            f"The stored ledger cannot give this proof ({exc}): its storage was damaged or altered."
        ) from exc


def _within(size: int, tree_size: int) -> None:
    if size > tree_size:
        raise InvalidInput(f"The ledger has only {tree_size} entries.", field="size")


_T = TypeVar("_T")


def _as_auditor(request: Request, work: Callable[[Session], _T]) -> _T:
    """The request's unit of work, its auditor checked, then ``work``: all on one worker
    thread (what ``AuditorDep`` and ``DbDep`` do, without a thread hand-off for each)."""
    rt = request.app.state.runtime
    with contextmanager(unit_of_work)(rt.sessions) as db:
        require_auditor(request, db, rt)
        return work(db)


def _token_in_event_loop(request: Request) -> str | None:
    """The bearer token of a request answered in the event loop (PostgreSQL,
    :mod:`consent.ledger.hot`), or None: no bearer token (a portal session), or no async
    connections (SQLite, tests on one shared connection) take the threaded path."""
    if request.app.state.hot_pg is None:
        return None
    return bearer_token(request)


_Proved = tuple[bytes, list[bytes]]
"""A tree's root and a proof in it."""


async def _proof(
    request: Request,
    size: int,
    checked: Callable[[int | None], set[tuple[int, int]]],
    from_hashes: Callable[[dict[tuple[int, int], bytes]], _Proved],
    from_tree: Callable[[StoredTree], _Proved],
) -> Response:
    """A proof in the tree of ``size`` entries: for an auditor's API token in the event loop
    (the hashes ``checked`` names read with the token check, then ``from_hashes``), else the
    auditor checked and the hashes prefetched on one worker thread (then ``from_tree``).
    ``checked(tree_size)`` refuses the request's own mistakes either way."""
    token = _token_in_event_loop(request)
    if token is not None:
        state = request.app.state
        hashes = await prove_for_token(state.runtime, state.hot_pg, token, checked)
        with _stored():
            return _answer(size, *from_hashes(hashes))

    def prove(db: Session) -> Response:
        tree = StoredTree(db)
        wanted = checked(tree.size())
        with _stored():
            tree.prefetch(wanted)  # every hash in one query
            return _answer(size, *from_tree(tree))

    return await run_in_threadpool(_as_auditor, request, prove)


def _answer(size: int, root: bytes, proof: list[bytes]) -> Response:
    body = ProofOut(tree_size=size, root=b64(root), proof=[b64(p) for p in proof])
    # Serialised once here: returning a Response skips FastAPI's second pass over the model.
    return Response(body.model_dump_json(), media_type="application/json")


@router.get(
    "/proofs/inclusion",
    response_model=ProofOut,
    responses=error_responses(*_auth, InvalidInput, LedgerDamaged),
)
async def inclusion(
    request: Request,
    index: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    size: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> Response:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""

    def checked(tree_size: int | None) -> set[tuple[int, int]]:
        """The subtrees the answer needs; refused here: an index beyond the size, a size
        beyond the tree (``tree_size``; None: not known yet)."""
        if index >= size:
            raise InvalidInput("The index must be below the tree size.", field="index")
        if tree_size is not None:
            _within(size, tree_size)
        return inclusion_needs(index, size)

    return await _proof(
        request,
        size,
        checked,
        lambda hashes: inclusion_from(hashes, index, size),
        lambda tree: (tree.root(size), tree.inclusion(index, size)),
    )


@router.get(
    "/proofs/consistency",
    response_model=ProofOut,
    responses=error_responses(*_auth, InvalidInput, LedgerDamaged),
)
async def consistency(
    request: Request,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> Response:
    """RFC 9162 consistency proof between tree sizes ``first`` <= ``second``."""

    def checked(tree_size: int | None) -> set[tuple[int, int]]:
        if first > second:
            raise InvalidInput("The first size must not exceed the second.", field="first")
        if tree_size is not None:
            _within(second, tree_size)
        return consistency_needs(first, second)

    return await _proof(
        request,
        second,
        checked,
        lambda hashes: consistency_from(hashes, first, second),
        lambda tree: (tree.root(second), tree.consistency(first, second)),
    )


class PendingEventOut(BaseModel):
    pending_id: int
    entry: dict[str, Any]


class PendingOut(BaseModel):
    tree_size: int
    pending: int
    events: list[PendingEventOut]


@router.get("/pending", response_model=PendingOut, responses=error_responses(*_auth))
def pending(
    auditor: AuditorDep,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=MAX_ENTRIES)] = 100,
) -> PendingOut:
    """Events recorded but not yet integrated into the tree (no index, no proof yet), oldest
    first (at most 1000): the sequencer integrates each within about a second."""
    count, events = pending_events(db, limit)
    return PendingOut(
        tree_size=StoredTree(db).size(),
        pending=count,
        events=[
            PendingEventOut(pending_id=row.id, entry=json.loads(bytes(row.event))) for row in events
        ],
    )
