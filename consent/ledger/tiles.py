"""The ledger as a C2SP tlog-tiles log (c2sp.org/tlog-tiles): paths, entry bundles, and the
tiles read from storage.

A hash tile ``tile/<L>/<N>`` holds up to 256 consecutive Merkle tree hashes at tree level
``8 * L``: at L = 0 the leaf hashes of entries ``256 N ..``, above that the hashes of the
completed perfect subtrees of height ``8 L``, exactly what ``ledger_entries.leaf_hash`` and
``ledger_nodes`` (level >= 1) hold, so one range query reads a tile. A full tile has 256
hashes (8,192 bytes); the rightmost tiles of a tree of size s are partial, ``.p/<W>`` with
``W = floor(s / 256**L) mod 256``. An entry bundle ``tile/entries/<N>`` holds entries
``256 N ..`` as big-endian uint16 length + entry bytes (the canonical JSON the leaf hash
covers). ``N`` is written in groups of three digits, all but the last prefixed by ``x``
(1234067 is ``x001/x234/067``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.ledger.models import MAX_INDEX, LedgerEntry, LedgerNode

TILE_WIDTH = 256
TILE_HEIGHT = 8
HASH_SIZE = 32
MAX_LEVEL = 63
MAX_ENTRY_BYTES = 0xFFFF
"""An entry bundle prefixes each entry with a uint16 length: no entry may be longer."""

_GROUP = re.compile(r"x[0-9]{3}")
_LAST = re.compile(r"[0-9]{3}")
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


class TileNotFound(LookupError):
    """No such tile: a path that is not a tile's, or a tile the signed tree does not have."""


@dataclass(frozen=True, slots=True)
class TileRef:
    """A tile: ``level`` None for an entry bundle; ``width`` None for a full tile."""

    level: int | None
    index: int
    width: int | None = None

    @property
    def count(self) -> int:
        return self.width or TILE_WIDTH

    @property
    def is_full(self) -> bool:
        return self.width is None

    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)


def encode_index(n: int) -> str:
    """``N`` as tile path elements: ``1234067`` -> ``x001/x234/067``, ``5`` -> ``005``."""
    if n < 0:
        raise ValueError("a tile index is not negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | None, index: int, width: int | None = None) -> str:
    """``tile/<L>/<N>[.p/<W>]``, or ``tile/entries/<N>[.p/<W>]`` for ``level`` None."""
    head = "entries" if level is None else str(level)
    tail = f".p/{width}" if width is not None else ""
    return f"tile/{head}/{encode_index(index)}{tail}"


def parse_tile_path(path: str) -> TileRef:
    """The tile named by ``path`` (what follows ``tile/``); :class:`TileNotFound` unless the
    path is the one canonical spelling of a tile (no extra zeros, no stray segments)."""
    parts = path.split("/")
    if len(parts) < 2 or len(parts) > 10:
        raise TileNotFound(path)
    head, *rest = parts
    if head == "entries":
        level = None
    elif _LEVEL.fullmatch(head) and int(head) <= MAX_LEVEL:
        level = int(head)
    else:
        raise TileNotFound(path)
    width = None
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _WIDTH.fullmatch(rest[-1]) or int(rest[-1]) >= TILE_WIDTH:
            raise TileNotFound(path)
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    *groups, last = rest
    if not all(_GROUP.fullmatch(g) for g in groups) or not _LAST.fullmatch(last):
        raise TileNotFound(path)
    index = int("".join(g[1:] for g in groups) + last)
    if encode_index(index) != "/".join(rest):  # "x000/005" is not 5
        raise TileNotFound(path)
    return TileRef(level, index, width)


def hashes_at(level: int, size: int) -> int:
    """How many hashes a tree of ``size`` entries has at tile level ``level`` (complete
    subtrees of height ``8 * level``); the entries, for entry bundles, at level 0."""
    return size >> (TILE_HEIGHT * level)


def bundle(entries: list[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length followed by its bytes."""
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_BYTES:
            raise ValueError(f"an entry of {len(entry)} bytes does not fit an entry bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def split_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle; ``ValueError`` when the bytes are not one."""
    entries, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            raise ValueError("the entry bundle ends inside a length prefix")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise ValueError("the entry bundle ends inside an entry")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return entries


class TileDamaged(LookupError):
    """Storage lacks a row the signed tree has: it was damaged or altered."""


def read_tile(db: Session, ref: TileRef, size: int) -> bytes:
    """The bytes of the tile ``ref`` of the tree of ``size`` entries, read with one range
    query. :class:`TileNotFound` when that tree does not have this tile (beyond its size, or
    a partial tile wider than the tree's, or empty); :class:`TileDamaged` when rows are missing.

    Partial tiles of any width up to what the tree holds are served: they are the partial
    tiles of the earlier, smaller trees (whose checkpoints clients may hold), and every hash in
    them belongs to a completed subtree, which never changes.
    """
    available = hashes_at(ref.level or 0, size)
    start = ref.index * TILE_WIDTH
    end = start + ref.count
    if end > available or start > MAX_INDEX:
        raise TileNotFound(ref.path())
    if ref.level is None:
        rows = db.scalars(
            select(LedgerEntry.entry)
            .where(LedgerEntry.index >= start, LedgerEntry.index < end)
            .order_by(LedgerEntry.index)
        ).all()
    elif ref.level == 0:
        rows = db.scalars(
            select(LedgerEntry.leaf_hash)
            .where(LedgerEntry.index >= start, LedgerEntry.index < end)
            .order_by(LedgerEntry.index)
        ).all()
    else:
        rows = db.scalars(
            select(LedgerNode.hash)
            .where(
                LedgerNode.level == TILE_HEIGHT * ref.level,
                LedgerNode.index >= start,
                LedgerNode.index < end,
            )
            .order_by(LedgerNode.index)
        ).all()
    if len(rows) != ref.count:
        raise TileDamaged(f"{ref.path()} has {len(rows)} of its {ref.count} stored rows")
    if ref.level is None:
        try:
            return bundle([bytes(r) for r in rows])
        except ValueError as exc:
            raise TileDamaged(f"{ref.path()}: {exc}") from exc
    if any(len(r) != HASH_SIZE for r in rows):
        raise TileDamaged(f"{ref.path()} holds a stored hash that is not {HASH_SIZE} bytes")
    return b"".join(bytes(r) for r in rows)
