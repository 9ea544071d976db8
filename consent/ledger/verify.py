"""Offline verification of a consent-ledger export: no database, no network.

An export is JSON Lines (UTF-8), one JSON object a line:

- line 1: ``{"checkpoint": "<signed checkpoint note>"}``;
- then one line per entry, for indexes 0 .. size - 1 in order:
  ``{"entry": <the entry object>, "index": i}``, optionally with
  ``"proof": ["<hex>", ...]``, the inclusion proof of that entry at the checkpoint's size.

The verifier checks the checkpoint signature against the auditor's verifier key, that the
indexes run 0 .. size - 1 with nothing missing, repeated or out of order, that every line is
written exactly as the exporter writes it (canonical JSON: sorted keys, no spaces, no key twice,
so the entry's bytes in the file are the bytes that are hashed), that every entry hashes to a
leaf of the signed tree, and, given an earlier checkpoint, that the log only grew since then.
With per-entry proofs the first altered entry is pinpointed; without them an alteration shows
as a root mismatch.

:func:`export_lines` and :func:`export_rows` (rows as stored, tampered or not) write this
format, so the exporter and the verifier agree by construction; :func:`main_verify` is the
``vrm ledger verify`` command's body.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from consent.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    parse_checkpoint_body,
    parse_verifier_key,
    split_signed_note,
    verify_signed_checkpoint,
)
from consent.ledger.cosignature import verify_quorum
from consent.ledger.merkle import (
    HASH_SIZE,
    InMemoryTree,
    SubtreeHash,
    canonical_json,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)

__all__ = [
    "VerifyReport",
    "describe",
    "export_lines",
    "export_rows",
    "main_verify",
    "verify_export",
]

MAX_LISTED_PROBLEMS = 20


@dataclass(slots=True)
class VerifyReport:
    """The outcome of :func:`verify_export`.

    ``size`` and ``root`` are the signed checkpoint's (None when it could not be verified).
    ``first_bad_index`` is the lowest entry index known to be missing, repeated, out of order,
    unreadable or not in the signed tree; None when nothing pins one down (for instance an
    altered entry in an export without proofs, which shows only as a root mismatch).
    """

    ok: bool
    size: int | None = None
    root: bytes | None = None
    first_bad_index: int | None = None
    problems: list[str] = field(default_factory=list)
    entries_checked: int = 0
    previous_size: int | None = None
    witnesses: list[str] = field(default_factory=list)
    """The trusted witnesses whose cosignatures on the checkpoint verified."""

    def _fail(self, message: str, index: int | None = None) -> None:
        self.ok = False
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(message)
        elif len(self.problems) == MAX_LISTED_PROBLEMS:
            self.problems.append("... further problems not listed")
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


# -- writing ------------------------------------------------------------------------------------


def export_lines(
    checkpoint_note: str, entries: Sequence[bytes], *, with_proofs: bool = False
) -> Iterator[str]:
    """The lines (each ending in ``\\n``) of an export of ``entries`` under a signed checkpoint.

    ``entries`` are the stored canonical entry bytes for indexes 0 .. size - 1, where size is
    the checkpoint's tree size. With ``with_proofs`` each line carries its inclusion proof,
    computed here in memory (n - 1 hashes, no storage lookups). Raises ``ValueError`` if the
    count does not match the checkpoint or an entry is not canonical JSON.
    The checkpoint is parsed, not verified: the exporter signed it.
    """
    text, _ = split_signed_note(checkpoint_note)
    size = parse_checkpoint_body(text).size
    if len(entries) != size:
        raise ValueError(f"the checkpoint covers {size} entries, {len(entries)} given")
    tree = InMemoryTree(leaf_hash(e) for e in entries) if with_proofs else None
    yield _checkpoint_line(checkpoint_note)
    for index, data in enumerate(entries):
        obj = json.loads(data)
        if not isinstance(obj, dict) or canonical_json(obj) != data:
            raise ValueError(f"ledger entry {index} is not a canonical JSON object")
        yield _entry_line(index, obj, tree.inclusion_proof(index) if tree is not None else None)


def export_rows(
    checkpoint_note: str, rows: Iterable[tuple[int, bytes]], *, subtree: SubtreeHash | None = None
) -> Iterator[str]:
    """The lines of an export of stored ``rows`` (index, entry bytes), written as found.

    For exporting from storage that may have been tampered with. Unlike :func:`export_lines`
    nothing is renumbered or refused: each line carries the row's own stored index, so a row
    removed, inserted or moved shows to the verifier as an index missing, repeated or out of
    order, and an entry that is not JSON is written as a string (which the verifier rejects).
    With ``subtree`` (the stored hashes of the signed tree) each line carries its inclusion
    proof at the checkpoint's size taken from those hashes, not from the exported bytes: an
    entry altered in storage then fails its own proof while the others still pass, which pins
    it down. A line whose proof needs a hash that storage no longer holds gets no proof.
    """
    text, _ = split_signed_note(checkpoint_note)
    size = parse_checkpoint_body(text).size
    yield _checkpoint_line(checkpoint_note)
    for index, data in rows:
        proof = None
        if subtree is not None and 0 <= index < size:
            try:
                proof = inclusion_proof(index, size, subtree)
            except LookupError:
                proof = None
        yield _entry_line(index, _stored_entry(data), proof)


def _stored_entry(data: bytes) -> Any:
    try:
        obj = json.loads(data)
        canonical_json(obj)
    except ValueError:  # not UTF-8, not JSON, or NaN: keep the text for the report
        return data.decode("utf-8", "replace")
    return obj


def _checkpoint_line(checkpoint_note: str) -> str:
    return canonical_json({"checkpoint": checkpoint_note}).decode("utf-8") + "\n"


def _entry_line(index: int, entry: Any, proof: Sequence[bytes] | None) -> str:
    line: dict[str, Any] = {"index": index, "entry": entry}
    if proof is not None:
        line["proof"] = [p.hex() for p in proof]
    return canonical_json(line).decode("utf-8") + "\n"


# -- reading --------------------------------------------------------------------------------


class _BadLine(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _BadLine(
                f"repeats the key {key!r}: a reader could see one value and the hash cover another"
            )
        found[key] = value
    return found


def _parse_entry_line(text: str) -> tuple[int, bytes, list[bytes] | None]:
    """(index, entry bytes exactly as written, proof or None); ``_BadLine`` with the reason.

    The line must be the canonical JSON the exporter writes (sorted keys, no spaces, no key
    twice), so the entry's bytes in the file are the very bytes whose hash is checked: what an
    auditor reads is what was signed."""
    try:
        obj = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except _BadLine:
        raise
    except ValueError:
        raise _BadLine("is not valid JSON") from None
    if not isinstance(obj, dict):
        raise _BadLine("is not a JSON object")
    unknown = set(obj) - {"index", "entry", "proof"}
    if unknown:
        raise _BadLine(f"has unexpected fields {sorted(unknown)}")
    index = obj.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise _BadLine("has no non-negative integer 'index'")
    entry = obj.get("entry")
    if not isinstance(entry, dict):
        raise _BadLine(f"(index {index}) has no 'entry' object")
    try:
        data = canonical_json(entry)
        written = canonical_json(obj)
    except ValueError:
        raise _BadLine(f"(index {index}) has an entry that is not canonical JSON") from None
    if written != text.rstrip("\r\n").encode("utf-8"):
        raise _BadLine(
            f"(index {index}) is not written canonically (sorted keys, no spaces), as the "
            "exporter writes it: its bytes are not the bytes that are hashed"
        )
    proof: list[bytes] | None = None
    if "proof" in obj:
        raw = obj["proof"]
        if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
            raise _BadLine(f"(index {index}) has a 'proof' that is not a list of hex strings")
        try:
            proof = [bytes.fromhex(p) for p in raw]
        except ValueError:
            raise _BadLine(f"(index {index}) has a 'proof' that is not hex") from None
        if any(len(p) != HASH_SIZE for p in proof):
            raise _BadLine(f"(index {index}) has a 'proof' hash that is not {HASH_SIZE} bytes")
    return index, data, proof


_loads = json.JSONDecoder().decode
_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_ENTRY_START = len('{"entry":')


def _parse_canonical_line(text: str) -> tuple[int, bytes, list[bytes] | None] | None:
    """The quick path of :func:`_parse_entry_line` for a line written as the exporter writes
    it: one parse and one canonical re-serialisation of the whole line, compared with it
    (which also refuses a key given twice: the re-serialisation would have it once), and the
    entry's bytes sliced out of the line. None for anything else, which the full parser then
    reads to say exactly what is wrong."""
    line = text.rstrip("\r\n")
    try:
        obj = _loads(line)
    except ValueError:
        return None
    if type(obj) is not dict:
        return None
    index = obj.get("index")
    if type(index) is not int or index < 0 or type(obj.get("entry")) is not dict:
        return None
    raw = obj.get("proof")
    if len(obj) != (2 if raw is None else 3):
        return None
    try:
        if _dumps(obj) != line:
            return None
    except ValueError:
        return None
    tail = len(',"index":}') + len(str(index))
    proof: list[bytes] | None = None
    if raw is not None:
        if type(raw) is not list:
            return None
        try:
            proof = [bytes.fromhex(p) for p in raw]
        except (TypeError, ValueError):
            return None
        if any(len(p) != HASH_SIZE for p in proof):
            return None
        tail += len(',"proof":') + len(_dumps(raw))
    return index, line[_ENTRY_START : len(line) - tail].encode("utf-8"), proof


def _read_checkpoint_line(text: str | None) -> str:
    if text is None:
        raise CheckpointError("the export is empty")
    try:
        obj = json.loads(text)
    except ValueError:
        raise CheckpointError("the first line of the export is not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("checkpoint"), str):
        raise CheckpointError('the first line of the export is not {"checkpoint": "<note>"}')
    note: str = obj["checkpoint"]
    return note


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def verify_export(
    lines: Iterable[str],
    vkey: str,
    previous_checkpoint: str | None = None,
    *,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> VerifyReport:
    """Verify an export (its lines, as read from the file) against the trusted ``vkey``.

    ``previous_checkpoint`` is an earlier signed checkpoint note the auditor kept: it must
    verify with the same key, name the same log, be no larger, and its root must be the root
    of the export's first ``previous.size`` entries (the log only appended since).
    With ``quorum`` > 0 the checkpoint must also carry valid cosignatures (C2SP
    tlog-cosignature) by that many of the trusted ``witnesses`` (their verifier keys).
    Streams the lines, keeping 32 bytes per entry. Never raises for bad input: everything
    wrong is in the report.
    """
    report = VerifyReport(ok=True)
    try:
        key = parse_verifier_key(vkey)
    except CheckpointError as exc:
        report._fail(f"the public key is not usable: {exc}")
        return report
    numbered = ((n, t) for n, t in enumerate(lines, start=1) if t and not t.isspace())
    first = next(numbered, None)
    try:
        note = _read_checkpoint_line(None if first is None else first[1])
        checkpoint = verify_signed_checkpoint(note, key)
    except CheckpointError as exc:
        report._fail(f"checkpoint rejected: {exc}")
        return report
    report.size, report.root = checkpoint.size, checkpoint.root
    if witnesses or quorum:
        try:
            report.witnesses = sorted(verify_quorum(note, key, witnesses, quorum).witnesses)
        except CheckpointError as exc:
            report._fail(f"witnesses: {exc}")

    previous: Checkpoint | None = None
    if previous_checkpoint is not None:
        try:
            previous = verify_signed_checkpoint(previous_checkpoint, key)
        except CheckpointError as exc:
            report._fail(f"previous checkpoint rejected: {exc}")
        else:
            report.previous_size = previous.size
            if previous.origin != checkpoint.origin:
                report._fail(
                    f"the previous checkpoint is for log {previous.origin!r}, "
                    f"not {checkpoint.origin!r}"
                )
                previous = None
            elif previous.size > checkpoint.size:
                report._fail(
                    f"the previous checkpoint has {previous.size} entries, more than the "
                    f"{checkpoint.size} of this one: the log shrank"
                )
                previous = None

    leaves: list[bytes] = []  # leaf hashes of indexes 0 .. len - 1, in order, while unbroken
    broken = False
    extra_line: int | None = None
    with_proofs: bool | None = None
    for line_no, text in numbered:
        expected = len(leaves)
        try:
            parsed = _parse_canonical_line(text)
            index, data, proof = parsed if parsed is not None else _parse_entry_line(text)
        except _BadLine as exc:
            report._fail(f"line {line_no} {exc}", expected)
            broken = True
            break
        if index != expected:
            if index < expected:
                report._fail(f"line {line_no}: index {index} appears again or out of order", index)
            else:
                report._fail(
                    f"line {line_no}: expected index {expected}, found {index} "
                    f"(index {expected} is missing or out of order)",
                    expected,
                )
            broken = True
            break
        if index >= checkpoint.size:
            extra_line = line_no  # judged below, once the first ``size`` entries are checked
            break
        if with_proofs is None:
            with_proofs = proof is not None
        digest = sha256(b"\x00" + data).digest()  # leaf_hash, inlined: this loop is the cost
        if with_proofs != (proof is not None):
            have, lack = ("lacks", "carry") if with_proofs else ("carries", "lack")
            report._fail(f"line {line_no}: entry {index} {have} a proof the others {lack}", index)
        elif proof is not None and not verify_inclusion(
            digest, index, checkpoint.size, proof, checkpoint.root
        ):
            report._fail(
                f"entry {index} is not in the signed tree: its inclusion proof fails", index
            )
        leaves.append(digest)
    report.entries_checked = len(leaves)

    complete = not broken and len(leaves) == checkpoint.size
    if not broken and len(leaves) < checkpoint.size:
        report._fail(
            f"the export ends after {len(leaves)} entries; the checkpoint has {checkpoint.size}",
            len(leaves),
        )
    root_matches = complete and root_from_leaf_hashes(leaves) == checkpoint.root
    if complete and not root_matches:
        report._fail(
            "the entries do not hash to the checkpoint's root: an entry was altered, "
            "inserted, removed or reordered"
        )
    if extra_line is not None:
        # Past the signed size: harmless trailing entries if the signed part is intact,
        # otherwise the sign of an insertion somewhere before (located only with proofs).
        report._fail(
            f"line {extra_line}: the export has more entries than the checkpoint's "
            f"{checkpoint.size} (an entry was inserted, or the checkpoint is older than the "
            "export)",
            checkpoint.size if root_matches else None,
        )

    if previous is not None:
        if previous.size > len(leaves):
            report._fail(
                f"cannot check the previous checkpoint: only {len(leaves)} of its "
                f"{previous.size} entries could be read"
            )
        elif root_from_leaf_hashes(leaves[: previous.size]) != previous.root:
            # The prefix is vouched for by the new checkpoint when the whole export matches
            # it, or when each of those entries passed its own inclusion proof.
            prefix_signed = (complete and root_matches) or (
                bool(with_proofs)
                and (report.first_bad_index is None or report.first_bad_index >= previous.size)
            )
            detail = (
                "the log signed two different histories"
                if prefix_signed
                else "the export's first entries are not the ones it signed"
            )
            report._fail(f"inconsistent with previous checkpoint (size {previous.size}): {detail}")
        elif not report.ok and report.first_bad_index is None:
            report.problems.append(
                f"the first {previous.size} entries match the previous checkpoint, so the "
                f"first bad entry is at index {previous.size} or later"
            )
    return report


# -- command line -------------------------------------------------------------------------------


def describe(report: VerifyReport, what: str = "the export") -> list[str]:
    """The report as lines for people; ``what`` names what was verified."""
    out: list[str] = []
    if report.size is not None and report.root is not None:
        out.append(f"checkpoint: {report.size} entries, root {_b64(report.root)}")
    if report.previous_size is not None:
        out.append(f"previous checkpoint: {report.previous_size} entries")
    if report.witnesses:
        out.append(f"cosigned by witnesses: {', '.join(report.witnesses)}")
    out.append(f"entries read: {report.entries_checked}")
    if report.ok:
        out.append(f"OK: {what} is complete, unaltered and signed by the trusted key.")
        return out
    out.append("FAILED:")
    out.extend(f"  - {problem}" for problem in report.problems)
    if report.first_bad_index is not None:
        out.append(f"first bad index: {report.first_bad_index}")
    return out


def main_verify(
    export_path: str | os.PathLike[str],
    public_key_path: str | os.PathLike[str],
    previous_checkpoint_path: str | os.PathLike[str] | None = None,
    *,
    witnesses: Sequence[str] = (),
    quorum: int = 0,
) -> int:
    """``vrm ledger verify EXPORT --public-key KEYFILE [--previous-checkpoint OLD]``.

    ``KEYFILE`` holds the verifier key text (``name+keyid+base64``); ``OLD`` holds a signed
    checkpoint note. Prints a report for people; returns 0 when the export verifies, 1 when
    anything is wrong or a file cannot be read.
    """
    try:
        vkey = _read_text(public_key_path).strip()
        previous = None
        if previous_checkpoint_path is not None:
            # Only the signature lines end the file; a trailing blank line is not part of it.
            previous = _read_text(previous_checkpoint_path).rstrip("\r\n") + "\n"
        with open(export_path, encoding="utf-8", newline="") as fh:
            report = verify_export(fh, vkey, previous, witnesses=witnesses, quorum=quorum)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"FAILED: cannot read input: {exc}")
        return 1
    for line in describe(report):
        print(line)
    return 0 if report.ok else 1


def _read_text(path: str | os.PathLike[str]) -> str:
    # newline="" keeps the note's bytes as written: its signature covers them exactly.
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()
