"""The offline verifier: an auditor holding only an export and the vault's verifier key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent.ledger.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from consent.ledger.merkle import canonical_json, leaf_hash, root_from_leaf_hashes
from consent.ledger.verify import export_lines, main_verify, verify_export

ORIGIN = "vrm-vault.example/consent-ledger"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VKEY = verifier_key(ORIGIN, KEY.public_key())
N = 20


def event(i: int, history: str = "real") -> bytes:
    kinds = ["grant.given", "grant.narrowed", "grant.revoked", "vendor.registered"]
    return canonical_json(
        {
            "event_type": kinds[i % len(kinds)],
            "index": i,
            "subject": f"p-{history}-{i:04d}",
            "fields": ["profile:email", "profile:address"][: 1 + i % 2],
            "note": "café ✓",
            "time": f"2026-11-23T10:{i % 60:02d}:00Z",
        }
    )


ENTRIES = [event(i) for i in range(N)]


def checkpoint_note(entries: list[bytes], key: Ed25519PrivateKey = KEY) -> str:
    root = root_from_leaf_hashes(leaf_hash(e) for e in entries)
    return sign_checkpoint(Checkpoint(ORIGIN, len(entries), root), ORIGIN, key)


def export(entries: list[bytes] = ENTRIES, *, proofs: bool = True) -> list[str]:
    return list(export_lines(checkpoint_note(entries), entries, with_proofs=proofs))


def entry_line(lines: list[str], index: int) -> dict[str, object]:
    obj: dict[str, object] = json.loads(lines[1 + index])
    return obj


def dumps(obj: dict[str, object]) -> str:
    """A line written as the exporter writes it (as a careful forger would)."""
    return canonical_json(obj).decode("utf-8") + "\n"


# -- a good export --------------------------------------------------------------------------


@pytest.mark.parametrize("proofs", [True, False])
def test_good_export_verifies(proofs: bool) -> None:
    report = verify_export(export(proofs=proofs), VKEY)
    assert report.ok, report.problems
    assert report.size == N
    assert report.root == root_from_leaf_hashes(leaf_hash(e) for e in ENTRIES)
    assert report.first_bad_index is None
    assert report.problems == []
    assert report.entries_checked == N


def test_export_format_is_one_json_object_per_line() -> None:
    lines = export()
    assert json.loads(lines[0]) == {"checkpoint": checkpoint_note(ENTRIES)}
    first = entry_line(lines, 0)
    assert first["index"] == 0
    assert canonical_json(first["entry"]) == ENTRIES[0]
    assert isinstance(first["proof"], list) and all(isinstance(p, str) for p in first["proof"])
    assert all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)


def test_empty_log_verifies() -> None:
    assert verify_export(export([]), VKEY).ok


def test_lines_with_windows_line_ends_still_verify() -> None:
    lines = export(proofs=False)
    assert verify_export([line.replace("\n", "\r\n") for line in lines], VKEY).ok


def test_reformatted_lines_are_refused() -> None:
    """Only the bytes the exporter wrote are hashed as they are; a line with spaces or
    another key order is not those bytes."""
    lines = export(proofs=False)
    pretty = [lines[0]] + [json.dumps(json.loads(line), indent=None) + "\n" for line in lines[1:]]
    report = verify_export(pretty, VKEY)
    assert not report.ok
    assert report.first_bad_index == 0
    assert "is not written canonically" in report.problems[0]


@pytest.mark.parametrize("proofs", [True, False])
def test_an_entry_with_a_key_written_twice_is_refused(proofs: bool) -> None:
    """A key prepended with another value: a reader of the file sees "grant.given", while a
    parser that keeps the last value would hash the original entry and call it verified."""
    lines = export(proofs=proofs)
    index = 2  # a grant.revoked
    assert '"event_type":"grant.revoked"' in lines[1 + index]
    lines[1 + index] = lines[1 + index].replace(
        '{"entry":{', '{"entry":{"event_type":"grant.given",', 1
    )

    report = verify_export(lines, VKEY)

    assert not report.ok
    assert report.first_bad_index == index
    assert "repeats the key 'event_type'" in report.problems[0]


def test_export_lines_refuses_count_mismatch() -> None:
    with pytest.raises(ValueError):
        list(export_lines(checkpoint_note(ENTRIES), ENTRIES[:-1]))


# -- altered, removed, inserted, reordered --------------------------------------------------


def test_altered_entry_is_pinpointed_with_proofs() -> None:
    lines = export()
    line = entry_line(lines, 7)
    line["entry"] = {**json.loads(ENTRIES[7]), "event_type": "grant.given"}
    lines[8] = dumps(line)
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.first_bad_index == 7
    assert any("entry 7 is not in the signed tree" in p for p in report.problems)


def test_altered_entry_without_proofs_breaks_the_root() -> None:
    lines = export(proofs=False)
    line = entry_line(lines, 7)
    line["entry"] = {**json.loads(ENTRIES[7]), "subject": "p-someone-else"}
    lines[8] = dumps(line)
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.first_bad_index is None  # not locatable without proofs
    assert any("do not hash to the checkpoint's root" in p for p in report.problems)


@pytest.mark.parametrize("proofs", [True, False])
def test_removed_entry_is_reported_as_missing(proofs: bool) -> None:
    lines = export(proofs=proofs)
    del lines[1 + 7]
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.first_bad_index == 7
    assert any("expected index 7, found 8" in p for p in report.problems)


def test_removed_entry_with_renumbering_is_pinpointed_with_proofs() -> None:
    lines = export()
    del lines[1 + 7]
    renumbered = [lines[0]]
    for i, line in enumerate(lines[1:]):
        obj = json.loads(line)
        obj["index"] = i
        renumbered.append(dumps(obj))
    report = verify_export(renumbered, VKEY)
    assert not report.ok
    assert report.first_bad_index == 7


def test_inserted_entry_with_renumbering_is_pinpointed_with_proofs() -> None:
    lines = export()
    forged = entry_line(lines, 7)
    forged["entry"] = json.loads(event(7, history="forged"))
    tail: list[str] = []
    for line in [dumps(forged), *lines[1 + 7 :]]:
        obj = json.loads(line)
        obj["index"] = 7 + len(tail)
        tail.append(dumps(obj))
    report = verify_export([*lines[: 1 + 7], *tail], VKEY)
    assert not report.ok
    assert report.first_bad_index == 7


def test_inserted_entry_without_its_proof_is_pinpointed() -> None:
    lines = export()
    forged = {"index": 7, "entry": json.loads(event(7, history="forged"))}
    tail = [dumps(forged)]
    for line in lines[1 + 7 :]:
        obj = json.loads(line)
        obj["index"] = 7 + len(tail)
        tail.append(dumps(obj))
    report = verify_export([*lines[: 1 + 7], *tail], VKEY)
    assert not report.ok
    assert report.first_bad_index == 7
    assert any("lacks a proof" in p for p in report.problems)


def test_inserted_entry_with_a_repeated_index_is_caught_without_proofs() -> None:
    lines = export(proofs=False)
    forged = dumps({"index": 7, "entry": json.loads(event(7, history="forged"))})
    report = verify_export([*lines[: 1 + 7], forged, *lines[1 + 7 :]], VKEY)
    assert not report.ok
    assert report.first_bad_index == 7


def test_inserted_entry_with_renumbering_is_caught_without_proofs() -> None:
    lines = export(proofs=False)
    forged = {"index": 7, "entry": json.loads(event(7, history="forged"))}
    tail = [dumps(forged)]
    for line in lines[1 + 7 :]:
        obj = json.loads(line)
        obj["index"] = 7 + len(tail)
        tail.append(dumps(obj))
    report = verify_export([*lines[: 1 + 7], *tail], VKEY)
    assert not report.ok
    assert any("more entries than the checkpoint" in p for p in report.problems)
    assert report.first_bad_index is None  # somewhere before index 20; proofs would say where


@pytest.mark.parametrize("proofs", [True, False])
def test_reordered_lines_are_caught_at_the_first_moved_index(proofs: bool) -> None:
    lines = export(proofs=proofs)
    lines[1 + 7], lines[1 + 12] = lines[1 + 12], lines[1 + 7]
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.first_bad_index == 7


def test_swapped_entries_under_unchanged_indexes_are_pinpointed_with_proofs() -> None:
    lines = export()
    a, b = entry_line(lines, 7), entry_line(lines, 12)
    a["entry"], b["entry"] = b["entry"], a["entry"]
    lines[1 + 7], lines[1 + 12] = dumps(a), dumps(b)
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.first_bad_index == 7
    assert any("entry 12" in p for p in report.problems)


def test_truncated_export_reports_the_first_missing_index() -> None:
    report = verify_export(export()[: 1 + 15], VKEY)
    assert not report.ok
    assert report.first_bad_index == 15


def test_entries_past_the_checkpoint_are_reported() -> None:
    lines = export()
    extra = dumps({"index": N, "entry": json.loads(event(N))})
    report = verify_export([*lines, extra], VKEY)
    assert not report.ok
    assert report.first_bad_index == N


@pytest.mark.parametrize(
    "bad_line",
    [
        "not json\n",
        "[1, 2]\n",
        '{"index": 7}\n',
        '{"index": "7", "entry": {}}\n',
        '{"index": 7, "entry": {"x": NaN}}\n',
        '{"index": 7, "entry": {}, "proof": ["zz"]}\n',
        '{"index": 7, "entry": {}, "extra": 1}\n',
    ],
)
def test_unreadable_line_is_reported_at_its_index(bad_line: str) -> None:
    lines = export()
    lines[1 + 7] = bad_line
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.first_bad_index == 7


# -- the checkpoint and the previous one ----------------------------------------------------


def test_forged_checkpoint_fails() -> None:
    forger = Ed25519PrivateKey.generate()
    lines = export()
    lines[0] = json.dumps({"checkpoint": checkpoint_note(ENTRIES, key=forger)}) + "\n"
    report = verify_export(lines, VKEY)
    assert not report.ok
    assert report.size is None
    assert any("checkpoint rejected" in p for p in report.problems)


def test_missing_checkpoint_line_fails() -> None:
    assert not verify_export(export()[1:], VKEY).ok
    assert not verify_export([], VKEY).ok


def test_previous_checkpoint_of_the_same_history_passes() -> None:
    previous = checkpoint_note(ENTRIES[:13])
    report = verify_export(export(), VKEY, previous)
    assert report.ok, report.problems
    assert report.previous_size == 13


def test_previous_checkpoint_from_a_different_history_fails_consistency() -> None:
    other = [event(i, history="forked") for i in range(13)]
    report = verify_export(export(), VKEY, checkpoint_note(other))
    assert not report.ok
    assert any("inconsistent with previous checkpoint" in p for p in report.problems)
    assert any("signed two different histories" in p for p in report.problems)


def test_previous_checkpoint_larger_than_the_export_fails() -> None:
    bigger = [*ENTRIES, event(N)]
    report = verify_export(export(), VKEY, checkpoint_note(bigger))
    assert not report.ok
    assert any("the log shrank" in p for p in report.problems)


def test_previous_checkpoint_signed_by_another_key_fails() -> None:
    forger = Ed25519PrivateKey.generate()
    report = verify_export(export(), VKEY, checkpoint_note(ENTRIES[:5], key=forger))
    assert not report.ok
    assert any("previous checkpoint rejected" in p for p in report.problems)


def test_previous_checkpoint_bounds_an_unlocated_alteration() -> None:
    lines = export(proofs=False)
    line = entry_line(lines, 15)
    line["entry"] = json.loads(event(15, history="altered"))
    lines[1 + 15] = dumps(line)
    report = verify_export(lines, VKEY, checkpoint_note(ENTRIES[:13]))
    assert not report.ok
    assert any("at index 13 or later" in p for p in report.problems)


# -- the command ------------------------------------------------------------------------------


def write_files(tmp_path: Path, lines: list[str]) -> tuple[Path, Path]:
    export_path = tmp_path / "ledger.jsonl"
    export_path.write_text("".join(lines), encoding="utf-8")
    key_path = tmp_path / "ledger.pub"
    key_path.write_text(VKEY + "\n", encoding="utf-8")
    return export_path, key_path


def test_main_verify_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export_path, key_path = write_files(tmp_path, export())
    previous = tmp_path / "old-checkpoint.txt"
    previous.write_text(checkpoint_note(ENTRIES[:9]) + "\n", encoding="utf-8")
    assert main_verify(export_path, key_path, previous) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"checkpoint: {N} entries" in out and "previous checkpoint: 9" in out


def test_main_verify_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = export()
    del lines[1 + 4]
    export_path, key_path = write_files(tmp_path, lines)
    assert main_verify(export_path, key_path, None) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "first bad index: 4" in out


def test_main_verify_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, key_path = write_files(tmp_path, export())
    assert main_verify(tmp_path / "missing.jsonl", key_path, None) == 1
    assert "cannot read" in capsys.readouterr().out
