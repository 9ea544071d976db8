"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519.

A checkpoint body (c2sp.org/tlog-checkpoint) is three or more lines, each ending in ``\\n``::

    vrm-vault.example/consent-ledger
    1234
    base64(root hash, standard alphabet, padded)
    [optional extension lines]

A signed note (c2sp.org/signed-note) is the body, one blank line, then one or more signature
lines ``— <key name> <base64(key ID || signature)>\\n`` (U+2014 EM DASH, a space). For Ed25519
(signature type 0x01) the key ID is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` and
the signature is Ed25519 over the body bytes, final newline included, blank line excluded.

A verifier key is the text ``<name>+<8 hex digits of key ID>+<base64(0x01 || public key)>``,
the form Go's ``golang.org/x/mod/sumdb/note`` and the transparency-log ecosystem use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consent.ledger.merkle import HASH_SIZE
from vault.errors import VerificationFailed

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "CheckpointError",
    "NoteSignature",
    "VerifierKey",
    "key_id",
    "open_note",
    "parse_checkpoint_body",
    "parse_signed_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "split_signed_note",
    "verifier_key",
    "verify_signed_checkpoint",
]

ALG_ED25519 = 0x01
EM_DASH = "\u2014"
SIGNATURE_PREFIX = EM_DASH + " "
MAX_SIGNATURES = 100  # the signed-note spec requires accepting at least 16
MAX_NOTE_CHARS = 1_000_000

_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_RE = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


class CheckpointError(VerificationFailed, ValueError):
    """A checkpoint or signed note that is malformed, unsigned by the trusted key, or forged.

    The message is a sentence an operator or auditor can act on.
    """


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 section 4, padded): no other characters allowed."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(f"{what} is not valid base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def _check_key_name(name: str) -> None:
    """Key names are non-empty and contain no Unicode space, ``+`` or control character."""
    if not name:
        raise CheckpointError("a key name must not be empty")
    if any(ch.isspace() or ch == "+" or ord(ch) < 0x20 for ch in name):
        raise CheckpointError(f"key name {name!r} must not contain spaces, '+' or controls")


def _check_note_text(text: str) -> None:
    """Signed-note text: ends in a newline, no ASCII control characters but newline."""
    if not text.endswith("\n"):
        raise CheckpointError("note text must end with a newline")
    if _CONTROL_RE.search(text):
        raise CheckpointError("note text must not contain control characters other than newline")


# -- keys -------------------------------------------------------------------------------------


def _public_bytes(public_key: Ed25519PublicKey | bytes) -> bytes:
    raw = public_key if isinstance(public_key, bytes) else public_key.public_bytes_raw()
    if len(raw) != 32:
        raise CheckpointError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


def key_id(name: str, public_key: Ed25519PublicKey | bytes) -> bytes:
    """The 4-byte signed-note key ID: ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``."""
    _check_key_name(name)
    data = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + _public_bytes(public_key)
    return hashlib.sha256(data).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey | bytes) -> str:
    """The verifier key text ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

    This is what an auditor is given (and what ``vrm ledger verify --public-key`` reads).
    """
    raw = _public_bytes(public_key)
    keydata = base64.b64encode(bytes([ALG_ED25519]) + raw).decode("ascii")
    return f"{name}+{key_id(name, raw).hex()}+{keydata}"


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A parsed verifier key: the key name, its 4-byte key ID and the Ed25519 public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse ``<name>+<hex key ID>+<base64(0x01 || key)>``; the key ID must match the key.

    Raises :class:`CheckpointError` with the reason when the text is not such a key.
    """
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("a verifier key has the form <name>+<key id>+<base64 key>")
    name, hex_id, keydata = parts
    _check_key_name(name)
    if not _KEY_ID_RE.fullmatch(hex_id):
        raise CheckpointError("the verifier key's key id must be 8 hexadecimal digits")
    data = _b64decode(keydata, "the verifier key's key data")
    if len(data) != 33 or data[0] != ALG_ED25519:
        raise CheckpointError("the verifier key is not an Ed25519 (type 0x01) signed-note key")
    raw = data[1:]
    if key_id(name, raw) != bytes.fromhex(hex_id):
        raise CheckpointError("the verifier key's key id does not match its name and key")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise CheckpointError("the verifier key holds no valid Ed25519 public key") from None
    return VerifierKey(name, bytes.fromhex(hex_id), public_key)


# -- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's ``origin``, the tree ``size`` and its 32-byte ``root`` hash.

    ``extensions`` are optional extra body lines (opaque, non-empty; the spec advises against
    them). Construction validates every field and raises :class:`CheckpointError`.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, line in [("origin", self.origin), *(("extension", e) for e in self.extensions)]:
            if not line:
                raise CheckpointError(f"the checkpoint {what} line must not be empty")
            if "\n" in line or _CONTROL_RE.search(line):
                raise CheckpointError(f"the checkpoint {what} line must be one line of text")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise CheckpointError(f"the tree size must be a non-negative integer: {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"the root hash must be {HASH_SIZE} bytes")

    def body_text(self) -> str:
        """The note text: origin, size, base64 root and extensions, each ending in ``\\n``."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(line + "\n" for line in (*lines, *self.extensions))

    def body(self) -> bytes:
        """The exact bytes the signatures cover (UTF-8 of :meth:`body_text`)."""
        return self.body_text().encode("utf-8")


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse a checkpoint note text (the body, final newline included)."""
    if not text.endswith("\n"):
        raise CheckpointError("the checkpoint body must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has an origin, a tree size and a root hash line")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE_RE.fullmatch(size_text):
        raise CheckpointError(f"the tree size line {size_text!r} is not a decimal number")
    root = _b64decode(root_text, "the root hash line")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


# -- signed notes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note: key name, 4-byte key ID, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line as it appears in the note, newline included."""
        blob = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise CheckpointError("a signature line must start with an em dash (U+2014) and a space")
    fields = line[len(SIGNATURE_PREFIX) :].split(" ")
    if len(fields) != 2:
        raise CheckpointError("a signature line is '— <key name> <base64 signature>'")
    name, blob_text = fields
    _check_key_name(name)
    blob = _b64decode(blob_text, f"the signature by {name}")
    if len(blob) < 5:
        raise CheckpointError(f"the signature by {name} is too short")
    return NoteSignature(name, blob[:4], blob[4:])


def split_signed_note(note: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and its signature lines, checking the format only.

    The text is everything before the last blank line, its final newline included.
    Raises :class:`CheckpointError` when the note is malformed. Verifies nothing.
    """
    if len(note) > MAX_NOTE_CHARS:
        raise CheckpointError("the signed note is too large")
    _check_note_text(note)
    cut = note.rfind("\n\n")
    if cut < 0:
        raise CheckpointError("a signed note needs a blank line between text and signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block:
        raise CheckpointError("the signed note has no signature lines")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"the signed note has more than {MAX_SIGNATURES} signatures")
    return text, [_parse_signature_line(line) for line in lines]


def parse_signed_note(note: str) -> tuple[Checkpoint, list[NoteSignature]]:
    """Parse a signed checkpoint note into its checkpoint and signature lines, unverified.

    Use :func:`verify_signed_checkpoint` for anything that must be trusted.
    """
    text, signatures = split_signed_note(note)
    return parse_checkpoint_body(text), signatures


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """Sign ``text`` (non-empty lines ending in a newline) as a signed note by ``name``."""
    _check_note_text(text)
    if text.startswith("\n") or "\n\n" in text:
        raise CheckpointError("note text to sign must not contain blank lines")
    kid = key_id(name, private_key.public_key())
    signature = private_key.sign(text.encode("utf-8"))
    return text + "\n" + NoteSignature(name, kid, signature).line()


def sign_checkpoint(cp: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The full signed-note text of ``cp`` signed by the key called ``name``.

    By the tlog-checkpoint spec the key name should be the log's origin.
    """
    return sign_note(cp.body_text(), name, private_key)


def open_note(note: str, vkey: str | VerifierKey) -> str:
    """Verify a signed note against one trusted verifier key; returns the note text.

    Per c2sp.org/signed-note: signatures by other keys (another name or key ID) are ignored;
    a signature by the trusted key that does not verify rejects the whole note; a note with
    no signature by the trusted key is rejected. Raises :class:`CheckpointError`.
    """
    key = vkey if isinstance(vkey, VerifierKey) else parse_verifier_key(vkey)
    text, signatures = split_signed_note(note)
    ours = [s for s in signatures if s.name == key.name and s.key_id == key.key_id]
    if not ours:
        names = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in signatures)
        raise CheckpointError(
            f"the note is not signed by {key.name} ({key.key_id.hex()}); signed by: {names}"
        )
    for sig in ours:
        try:
            key.public_key.verify(sig.signature, text.encode("utf-8"))
        except InvalidSignature:
            raise CheckpointError(
                f"the signature by {key.name} does not verify: the note was altered or forged"
            ) from None
    return text


def verify_signed_checkpoint(
    note: str, vkey: str | VerifierKey, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note with the trusted ``vkey`` and return its checkpoint.

    When ``origin`` is given the checkpoint must name that log. Raises
    :class:`CheckpointError` on a malformed note or checkpoint, a missing signature by the
    trusted key (unknown key ID or name), or a signature that does not verify.
    """
    checkpoint = parse_checkpoint_body(open_note(note, vkey))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
