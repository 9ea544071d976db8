"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes (Ed25519)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    key_id,
    open_note,
    parse_signed_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
    verify_signed_checkpoint,
)

ORIGIN = "vrm-vault.example/consent-ledger"
ROOT = hashlib.sha256(b"some root").digest()
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VKEY = verifier_key(ORIGIN, KEY.public_key())

# The reference vector of Go's golang.org/x/mod/sumdb/note (note_test.go / package docs).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_DATA = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # base64(0x01 || seed)
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
    "fqdngotpRZb6KE6RyyBwJnAM=\n"
)


def signed(size: int = 42, root: bytes = ROOT, key: Ed25519PrivateKey = KEY) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), ORIGIN, key)


def test_body_is_origin_size_base64_root_each_line_terminated() -> None:
    body = Checkpoint(ORIGIN, 42, ROOT).body()
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n".encode()


def test_note_format_is_exact() -> None:
    note = signed()
    body, signature_line = note.split("\n\n")
    assert body + "\n" == Checkpoint(ORIGIN, 42, ROOT).body().decode()
    assert signature_line.startswith("\u2014 " + ORIGIN + " ")  # EM DASH, space, name, space
    assert signature_line.endswith("\n") and signature_line.count("\n") == 1
    blob = base64.b64decode(signature_line[:-1].split(" ")[2], validate=True)
    assert len(blob) == 4 + 64
    assert blob[:4] == key_id(ORIGIN, KEY.public_key())
    # Ed25519 over the body, its final newline included, the blank line excluded
    KEY.public_key().verify(blob[4:], (body + "\n").encode())


def test_key_id_follows_signed_note_spec() -> None:
    raw = KEY.public_key().public_bytes_raw()
    want = hashlib.sha256(ORIGIN.encode() + b"\n" + b"\x01" + raw).digest()[:4]
    assert key_id(ORIGIN, KEY.public_key()) == want
    keydata = base64.b64encode(b"\x01" + raw).decode()
    assert f"{ORIGIN}+{want.hex()}+{keydata}" == VKEY


def test_round_trip() -> None:
    checkpoint = verify_signed_checkpoint(signed(), VKEY)
    assert checkpoint == Checkpoint(ORIGIN, 42, ROOT)
    parsed, signatures = parse_signed_note(signed())
    assert parsed == checkpoint
    assert [(s.name, s.key_id) for s in signatures] == [(ORIGIN, key_id(ORIGIN, KEY.public_key()))]
    assert signatures[0].line() == signed().split("\n\n")[1]


def test_empty_tree_and_extension_lines_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest(), ("ext one", "ext two"))
    note = sign_checkpoint(cp, ORIGIN, KEY)
    assert note.startswith(f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n")
    assert verify_signed_checkpoint(note, VKEY) == cp


def test_interoperates_with_go_sumdb_note_reference_vector() -> None:
    seed = base64.b64decode(GO_SKEY_DATA)[1:]
    key = Ed25519PrivateKey.from_private_bytes(seed)
    assert verifier_key("PeterNeumann", key.public_key()) == GO_VKEY
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert open_note(GO_NOTE, GO_VKEY) == GO_TEXT


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n42\n", "\n43\n"),  # size
        (ORIGIN + "\n", "evil.example/consent-ledger\n"),  # origin
        (base64.b64encode(ROOT).decode(), base64.b64encode(bytes(32)).decode()),  # root
    ],
)
def test_tampering_fails(old: str, new: str) -> None:
    note = signed()
    tampered = note.replace(old, new, 1)
    assert tampered != note
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_signed_checkpoint(tampered, VKEY)


def test_added_extension_line_fails() -> None:
    body, sig = signed().split("\n\n")
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_signed_checkpoint(body + "\nextra\n\n" + sig, VKEY)


def test_wrong_key_is_rejected() -> None:
    forger = Ed25519PrivateKey.generate()
    with pytest.raises(CheckpointError, match="not signed by"):
        verify_signed_checkpoint(signed(key=forger), VKEY)


def test_forged_signature_under_the_right_key_id_is_rejected() -> None:
    # same name and key ID as the trusted key, signature by another key
    forged = signed(key=Ed25519PrivateKey.generate())
    _, signatures = parse_signed_note(forged)
    real_id = key_id(ORIGIN, KEY.public_key())
    blob = base64.b64encode(real_id + signatures[0].signature).decode()
    note = forged.split("\n\n")[0] + f"\n\n\u2014 {ORIGIN} {blob}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_signed_checkpoint(note, VKEY)


def test_unknown_signatures_are_ignored_but_one_known_is_required() -> None:
    other = Ed25519PrivateKey.generate()
    witness = sign_note(Checkpoint(ORIGIN, 42, ROOT).body_text(), "witness.example", other)
    witness_line = witness.split("\n\n")[1]
    assert verify_signed_checkpoint(signed() + witness_line, VKEY).size == 42
    with pytest.raises(CheckpointError, match="not signed by"):
        verify_signed_checkpoint(witness, VKEY)


def test_expected_origin_is_enforced() -> None:
    assert verify_signed_checkpoint(signed(), VKEY, origin=ORIGIN).origin == ORIGIN
    with pytest.raises(CheckpointError, match="for log"):
        verify_signed_checkpoint(signed(), VKEY, origin="other.example/log")


@pytest.mark.parametrize(
    "note",
    [
        "",
        "no newline at end",
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n",  # no signatures
        signed().replace("\u2014", "-"),  # hyphen instead of em dash
        signed().replace("\n\n", "\n"),  # no blank line
        signed().rstrip("\n"),  # no trailing newline
        signed() + "\n",  # a blank line after the signatures
        signed().replace("\n42\n", "\n042\n"),  # leading zero
        signed().replace("\n42\n", "\n-1\n"),
        signed().replace(base64.b64encode(ROOT).decode(), base64.b64encode(ROOT[:31]).decode()),
        signed().replace(ORIGIN + "\n", ORIGIN + "\t\n"),  # control character
    ],
)
def test_malformed_notes_raise_checkpoint_error(note: str) -> None:
    with pytest.raises(CheckpointError):
        verify_signed_checkpoint(note, VKEY)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "name-only",
        VKEY.replace("+", "-", 1),
        VKEY.split("+")[0] + "+00000000+" + VKEY.split("+", 2)[2],  # key id does not match
        VKEY[:-4],  # truncated key data
        "other.example+" + VKEY.split("+", 1)[1],  # id computed for another name
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        parse_verifier_key(vkey)


def test_invalid_checkpoint_fields_are_refused() -> None:
    with pytest.raises(CheckpointError):
        Checkpoint("", 1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint("a\nb", 1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(CheckpointError):
        Checkpoint(ORIGIN, 1, ROOT[:16])
    with pytest.raises(CheckpointError):
        Checkpoint(ORIGIN, 1, ROOT, ("",))
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), "bad name", KEY)
