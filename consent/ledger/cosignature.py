"""Witness cosignatures (C2SP tlog-cosignature, Ed25519 ``cosignature/v1``) and quorums.

A cosignature is a signed-note signature line on a checkpoint by a witness (a *cosigner*)::

    — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

The key ID is ``SHA-256(name || 0x0A || 0x04 || public key)[:4]`` (signature type 0x04, so a
witness key can never pass for a log key of type 0x01), and the Ed25519 signature covers::

    cosignature/v1
    time <timestamp>
    <the checkpoint body, final newline included>

A witness key is given as the verifier key text ``<name>+<hex key ID>+<base64(0x04 || key)>``.
A v1 cosignature states that, at that time, the witness had seen no larger consistent tree
of the log than this one. Pure functions, no database, no network.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSignature,
    VerifierKey,
    parse_checkpoint_body,
    split_signed_note,
    verify_signed_checkpoint,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "Cosigned",
    "CosignerKey",
    "cosign",
    "cosigner_key_id",
    "cosigner_verifier_key",
    "parse_cosigner_key",
    "verify_cosignature",
    "verify_quorum",
    "with_signatures",
]

ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
FUTURE_SLACK_SECONDS = 600
"""A cosignature dated further ahead than this is refused (the spec allows refusing any)."""


def _check_name(name: str) -> None:
    if not name or any(ch.isspace() or ch == "+" or ord(ch) < 0x20 for ch in name):
        raise CheckpointError(f"witness name {name!r} must be non-empty, without spaces or '+'")


def _raw(public_key: Ed25519PublicKey | bytes) -> bytes:
    raw = public_key if isinstance(public_key, bytes) else public_key.public_bytes_raw()
    if len(raw) != 32:
        raise CheckpointError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


def cosigner_key_id(name: str, public_key: Ed25519PublicKey | bytes) -> bytes:
    """``SHA-256(name || 0x0A || 0x04 || public key)[:4]``."""
    _check_name(name)
    data = name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + _raw(public_key)
    return hashlib.sha256(data).digest()[:4]


def cosigner_verifier_key(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """The witness's verifier key text: ``<name>+<hex key ID>+<base64(0x04 || key)>``."""
    raw = _raw(public_key)
    keydata = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + raw).decode("ascii")
    return f"{name}+{cosigner_key_id(name, raw).hex()}+{keydata}"


@dataclass(frozen=True, slots=True)
class CosignerKey:
    """A parsed witness key: its name, 4-byte key ID, the Ed25519 public key, and the text."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey
    text: str


def parse_cosigner_key(vkey: str) -> CosignerKey:
    """Parse a witness verifier key (type 0x04); :class:`CheckpointError` says what is wrong."""
    text = vkey.strip()
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("a witness key has the form <name>+<key id>+<base64 key>")
    name, hex_id, keydata = parts
    _check_name(name)
    if len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
        raise CheckpointError("the witness key's key id must be 8 hexadecimal digits")
    try:
        data = base64.b64decode(keydata.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise CheckpointError("the witness key's key data is not valid base64") from None
    if len(data) != 33 or data[0] != ALG_COSIGNATURE_V1:
        raise CheckpointError(
            "this is not a witness key: a cosigner's key has signature type 0x04 "
            "(tlog-cosignature Ed25519)"
        )
    if cosigner_key_id(name, data[1:]) != bytes.fromhex(hex_id):
        raise CheckpointError("the witness key's key id does not match its name and key")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(data[1:])
    except ValueError:
        raise CheckpointError("the witness key holds no valid Ed25519 public key") from None
    return CosignerKey(name, bytes.fromhex(hex_id), public_key, text)


def signed_message(body: str, timestamp: int) -> bytes:
    """The bytes a v1 cosignature signs: header, time line, checkpoint body."""
    return f"{HEADER}time {timestamp}\n{body}".encode()


def cosign(
    checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey, *, timestamp: int
) -> NoteSignature:
    """The witness's cosignature line on ``checkpoint`` at POSIX time ``timestamp``."""
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise CheckpointError("a cosignature's timestamp must be positive and below 2^63")
    signature = private_key.sign(signed_message(checkpoint.body_text(), timestamp))
    kid = cosigner_key_id(name, private_key.public_key())
    return NoteSignature(name, kid, timestamp.to_bytes(8, "big") + signature)


def verify_cosignature(
    body: str, line: NoteSignature, key: CosignerKey, *, now: float | None = None
) -> int:
    """Check one cosignature line by ``key`` over the checkpoint ``body``; its timestamp.

    Raises :class:`CheckpointError` for a line of another key, a malformed one, a timestamp
    that is zero or too far in the future, or a signature that does not verify.
    """
    if line.name != key.name or line.key_id != key.key_id:
        raise CheckpointError(f"the cosignature is not by {key.name}")
    if len(line.signature) != 8 + 64:
        raise CheckpointError(f"the cosignature by {key.name} is not 8 + 64 bytes")
    timestamp = int.from_bytes(line.signature[:8], "big")
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"the cosignature by {key.name} has no valid timestamp")
    if timestamp > (time.time() if now is None else now) + FUTURE_SLACK_SECONDS:
        raise CheckpointError(f"the cosignature by {key.name} is dated in the future")
    try:
        key.public_key.verify(line.signature[8:], signed_message(body, timestamp))
    except InvalidSignature:
        raise CheckpointError(
            f"the cosignature by {key.name} does not verify: the checkpoint was altered or the "
            "cosignature forged"
        ) from None
    return timestamp


@dataclass(frozen=True, slots=True)
class Cosigned:
    """A checkpoint verified with the log's key, and the witnesses whose cosignatures on it
    verified (name -> timestamp)."""

    checkpoint: Checkpoint
    witnesses: dict[str, int]


def verify_quorum(
    note: str,
    log_key: str | VerifierKey,
    witnesses: Sequence[str | CosignerKey],
    quorum: int,
    *,
    now: float | None = None,
) -> Cosigned:
    """Verify a checkpoint note by the log's key and a quorum of the trusted witnesses.

    Signature lines of keys not trusted are ignored (signed-note). A line whose name and key
    ID are a trusted witness's but which does not verify rejects the note: such a note is
    malformed. Raises :class:`CheckpointError` when fewer than ``quorum`` distinct trusted
    witnesses cosigned.
    """
    checkpoint = verify_signed_checkpoint(note, log_key)
    keys = [w if isinstance(w, CosignerKey) else parse_cosigner_key(w) for w in witnesses]
    if quorum < 0 or quorum > len(keys):
        raise CheckpointError(f"a quorum of {quorum} needs at least {quorum} witness keys")
    body, lines = split_signed_note(note)
    by_id = {(k.name, k.key_id): k for k in keys}
    found: dict[str, int] = {}
    for line in lines:
        key = by_id.get((line.name, line.key_id))
        if key is not None:
            found[key.text] = verify_cosignature(body, line, key, now=now)
    if len(found) < quorum:
        raise CheckpointError(
            f"the checkpoint carries cosignatures by {len(found)} of the trusted witnesses; "
            f"a quorum of {quorum} is required"
        )
    names = {k.text: k.name for k in keys}
    return Cosigned(checkpoint, {names[text]: ts for text, ts in found.items()})


def with_signatures(note: str, lines: Iterable[str]) -> str:
    """The signed note with more signature lines appended (each ``— name base64\\n``), those
    it already carries left out: a log's checkpoint with its witnesses' cosignatures."""
    _body, _existing = split_signed_note(note)  # checks the note's form
    have = set(note.split("\n"))
    extra = [line for line in lines if line.rstrip("\n") not in have]
    return note + "".join(extra)


def body_of(note: str) -> Checkpoint:
    """The checkpoint in a signed note, unverified (for matching, never for trusting)."""
    return parse_checkpoint_body(split_signed_note(note)[0])
