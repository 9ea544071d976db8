"""The consent ledger served as a C2SP tlog-tiles log under ``/api/audit/v1/log/``.

``checkpoint`` is the published checkpoint, as the audit API's: the latest signed one, or
with ``VRM_LEDGER_WITNESS_QUORUM`` set the latest one that quorum of witnesses cosigned, with
their cosignatures (C2SP tlog-cosignature) as signature lines after the vault's own.
``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]`` are hash tiles and entry bundles of
the tree that checkpoint signed, and no further. For auditors (portal session or API token) unless
``VRM_LEDGER_PUBLIC`` opens them to anyone. Full tiles never change and are cached for a
year; partial tiles and the checkpoint briefly. Without ``VRM_LEDGER_PUBLIC`` the cache
headers are ``private``, so no shared cache hands an auditor's tiles to someone else.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from consent.ledger.dependencies import require_log_reader
from consent.ledger.endpoints import LedgerDamaged
from consent.ledger.tiles import TileDamaged, TileNotFound, parse_tile_path, read_tile
from consent.ledger.witnessing import published_checkpoint, published_row
from vault.db import unit_of_work
from vault.errors import Forbidden, NotAuthenticated, NotFound, error_responses
from vault.routing import APIRouter
from vault.runtime import Runtime

PREFIX = "/api/audit/v1/log"
router = APIRouter(prefix=PREFIX, tags=["audit"])

CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"
IMMUTABLE_SECONDS = 31_536_000
CHECKPOINT_SECONDS = 5
PARTIAL_SECONDS = 60


def _cache(public: bool, seconds: int, *, immutable: bool = False) -> str:
    scope = "public" if public else "private"
    return f"{scope}, max-age={seconds}" + (", immutable" if immutable else "")


def _content(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {}}, "description": description}}


_errors = error_responses(NotAuthenticated, Forbidden, NotFound)

_T = TypeVar("_T")


def _as_reader(request: Request, work: Callable[[Session, Runtime], _T]) -> _T:
    """The request's unit of work, its reader checked (an auditor, or anyone when the log is
    public), then ``work``: all on one worker thread, where dependencies would each hand off
    to one (tlog clients fetch tiles by the thousand)."""
    rt: Runtime = request.app.state.runtime
    with contextmanager(unit_of_work)(rt.sessions) as db:
        require_log_reader(request, db, rt)
        return work(db, rt)


@router.get(
    "/checkpoint",
    response_class=Response,
    responses={**_content(CHECKPOINT_TYPE, "The published checkpoint."), **_errors},
)
async def log_checkpoint(request: Request) -> Response:
    """The published checkpoint (C2SP tlog-checkpoint in a signed note), as text: the latest
    signed one, or with a witness quorum set the latest one the quorum cosigned, with their
    cosignatures (C2SP tlog-cosignature) after the vault's signature."""

    def read(db: Session, rt: Runtime) -> Response:
        published = published_checkpoint(db, rt)
        if published is None:
            if rt.settings.ledger_witness_quorum:
                raise NotFound("No checkpoint has been cosigned by a quorum of witnesses yet.")
            raise NotFound("No checkpoint has been signed yet.")
        return Response(
            published[1].encode("utf-8"),
            media_type=CHECKPOINT_TYPE,
            headers={"Cache-Control": _cache(rt.settings.ledger_public, CHECKPOINT_SECONDS)},
        )

    return await run_in_threadpool(_as_reader, request, read)


@router.get(
    "/tile/{path:path}",
    response_class=Response,
    responses={
        **_content(TILE_TYPE, "A hash tile or an entry bundle."),
        **error_responses(NotAuthenticated, Forbidden, NotFound, LedgerDamaged),
    },
)
async def log_tile(path: str, request: Request) -> Response:
    """A hash tile ``<L>/<N>[.p/<W>]`` or an entry bundle ``entries/<N>[.p/<W>]`` of the tree
    of the published checkpoint (C2SP tlog-tiles)."""

    def read(db: Session, rt: Runtime) -> Response:
        try:
            ref = parse_tile_path(path)
        except TileNotFound:
            raise NotFound(
                "There is no such tile: see c2sp.org/tlog-tiles for tile paths."
            ) from None
        row = published_row(db, rt)
        try:
            if row is None:
                raise TileNotFound(path)
            data = read_tile(db, ref, row.size)
        except TileDamaged as exc:
            raise LedgerDamaged(
                f"The stored ledger cannot give this tile ({exc}): its storage was damaged or "
                "altered."
            ) from exc
        except TileNotFound:
            raise NotFound("The signed tree has no such tile (yet).") from None
        public = rt.settings.ledger_public
        cache = (
            _cache(public, IMMUTABLE_SECONDS, immutable=True)
            if ref.is_full
            else _cache(public, PARTIAL_SECONDS)
        )
        return Response(data, media_type=TILE_TYPE, headers={"Cache-Control": cache})

    return await run_in_threadpool(_as_reader, request, read)
