"""Verifying the ledger from its tiles (``vrm ledger verify --tiles-url``): fetch the
checkpoint, every entry bundle and every hash tile of the signed tree over HTTP, and check
them as :mod:`consent.ledger.verify` checks an export, plus that each tile holds the hashes
its entries (level 0) or the full tiles below it (level >= 1) give.

Streams the entry bundles: memory is 32 bytes per entry, as for an export.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import httpx

from consent.ledger.checkpoint import CheckpointError, parse_checkpoint_body, split_signed_note
from consent.ledger.merkle import leaf_hash, node_hash
from consent.ledger.tiles import (
    HASH_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileRef,
    hashes_at,
    split_bundle,
)
from consent.ledger.verify import VerifyReport, describe, export_rows, verify_export

TIMEOUT_SECONDS = 30.0


class FetchFailed(Exception):
    """A resource of the log could not be fetched; the message says which and why."""


def _tiles(level: int | None, size: int) -> Iterator[TileRef]:
    """The full tiles, then the partial one (if any), of the tree of ``size`` at ``level``."""
    count = hashes_at(level or 0, size)
    full, rest = divmod(count, TILE_WIDTH)
    for n in range(full):
        yield TileRef(level, n)
    if rest:
        yield TileRef(level, full, rest)


def _mth_perfect(hashes: list[bytes]) -> bytes:
    """The Merkle tree hash over a power-of-two number of subtree hashes."""
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


class TileReader:
    """GETs of one log prefix, with an optional auditor token (the client sets timeouts)."""

    def __init__(self, client: httpx.Client, prefix: str, token: str | None = None) -> None:
        self.client = client
        self.prefix = prefix.rstrip("/") + "/"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str) -> bytes:
        url = self.prefix + path
        try:
            response = self.client.get(url, headers=self.headers)
        except httpx.HTTPError as exc:
            raise FetchFailed(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
        if response.status_code in (401, 403):
            raise FetchFailed(
                f"{url} answered {response.status_code}: the tiles are for auditors; give an "
                "auditor API token (--token or VRM_AUDITOR_TOKEN)"
            )
        if response.status_code != 200:
            raise FetchFailed(f"{url} answered {response.status_code}")
        return response.content


def verify_tiles(
    client: httpx.Client,
    prefix: str,
    vkey: str,
    previous_checkpoint: str | None = None,
    *,
    token: str | None = None,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> VerifyReport:
    """Verify the log served as tlog-tiles at ``prefix`` against the trusted ``vkey``; with
    ``quorum`` > 0 its checkpoint must carry cosignatures (C2SP tlog-cosignature) by that many
    of the trusted ``witnesses`` (their verifier keys).

    Never raises for what the server sends: everything wrong is in the report.
    """
    reader = TileReader(client, prefix, token)
    try:
        note = reader.get("checkpoint").decode("utf-8")
        text, _ = split_signed_note(note)
        size = parse_checkpoint_body(text).size
    except (FetchFailed, UnicodeDecodeError, CheckpointError) as exc:
        report = VerifyReport(ok=False)
        report._fail(f"checkpoint rejected: {exc}")
        return report

    leaves: list[bytes] = []
    tile_problems: list[tuple[str, int | None]] = []

    def entries() -> Iterator[tuple[int, bytes]]:
        for ref in _tiles(None, size):
            hashes = reader.get(TileRef(0, ref.index, ref.width).path())
            bundle = split_bundle(reader.get(ref.path()))
            start = ref.index * TILE_WIDTH
            if len(bundle) != ref.count or len(hashes) != ref.count * HASH_SIZE:
                raise FetchFailed(
                    f"{ref.path()} holds {len(bundle)} entries and its level 0 tile "
                    f"{len(hashes) // HASH_SIZE} hashes, not {ref.count}"
                )
            for i, entry in enumerate(bundle):
                digest = leaf_hash(entry)
                if hashes[i * HASH_SIZE : (i + 1) * HASH_SIZE] != digest:
                    tile_problems.append(
                        (f"tile/0 hash {start + i} is not the hash of entry {start + i}", start + i)
                    )
                leaves.append(digest)
                yield start + i, entry

    try:
        report = verify_export(
            export_rows(note, entries()),
            vkey,
            previous_checkpoint,
            witnesses=witnesses,
            quorum=quorum,
        )
    except (FetchFailed, ValueError) as exc:  # ValueError: a malformed entry bundle
        report = VerifyReport(ok=False)
        report._fail(f"the log could not be read: {exc}")
        return report
    for message, index in tile_problems:
        report._fail(message, index)
    if report.ok:
        _check_upper_tiles(reader, size, leaves, report)
    return report


def _check_upper_tiles(
    reader: TileReader, size: int, leaves: list[bytes], report: VerifyReport
) -> None:
    """Each level >= 1 tile must hold the hashes of the full tiles one level below."""
    below, level = leaves, 1
    while hashes_at(level, size):
        expected = [
            _mth_perfect(below[i : i + TILE_WIDTH])
            for i in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)
        ]
        for ref in _tiles(level, size):
            try:
                got = reader.get(ref.path())
            except FetchFailed as exc:
                report._fail(str(exc))
                return
            start = ref.index * TILE_WIDTH
            want = b"".join(expected[start : start + ref.count])
            if got != want:
                first = start * (TILE_WIDTH**level)
                report._fail(
                    f"{ref.path()} does not hold the hashes of the level {level - 1} tiles "
                    f"below it (subtrees of height {TILE_HEIGHT * level} from entry {first})"
                )
        below, level = expected, level + 1


def main_verify_tiles(
    url: str,
    vkey: str,
    previous_checkpoint: str | None = None,
    *,
    token: str | None = None,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> int:
    """``vrm ledger verify --tiles-url URL``: prints the report, returns the exit status."""
    with httpx.Client(follow_redirects=False, timeout=TIMEOUT_SECONDS) as client:
        report = verify_tiles(
            client,
            url,
            vkey,
            previous_checkpoint,
            token=token,
            witnesses=witnesses,
            quorum=quorum,
        )
    for line in describe(report, what="the log served at " + url):
        print(line)
    return 0 if report.ok else 1


__all__ = ["FetchFailed", "main_verify_tiles", "verify_tiles"]
