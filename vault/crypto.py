"""Field encryption (AES-256-GCM under per-individual data keys), blind index, token hashing.

Ciphertext format, version 1::

    0x01 || data key id (16 bytes) || nonce (12 bytes) || ciphertext || tag (16 bytes)

The associated data binds a value to its owner, table, column and row, so a ciphertext copied
to another owner, another field or another row fails to decrypt.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import unicodedata
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import ServiceFault

FORMAT_VERSION = 1
_NONCE_BYTES = 12
_HEADER = 1 + 16 + _NONCE_BYTES


class DecryptionError(ServiceFault):
    """A value failed to decrypt: altered, moved to another place, or its key is gone."""


@dataclass(frozen=True, slots=True)
class Binding:
    """Where an encrypted value lives; becomes the AEAD associated data."""

    owner_id: uuid.UUID
    table: str
    column: str
    row_id: uuid.UUID
    label: str = ""
    """What the row says the value is (e.g. a profile field key), so relabelling is caught."""

    def associated_data(self) -> bytes:
        """Each part prefixed by its length (two bytes, big-endian): ``vrm-field``, the owner's
        id, the table, the column, the row's id, the label."""
        return b"".join(
            (
                _FIELD,
                _ID,
                self.owner_id.bytes,
                _part(self.table),
                _part(self.column),
                _ID,
                self.row_id.bytes,
                _part(self.label),
            )
        )


_FIELD = len(b"vrm-field").to_bytes(2, "big") + b"vrm-field"
_ID = (16).to_bytes(2, "big")


@functools.lru_cache(maxsize=1024)
def _part(name: str) -> bytes:
    """A name as a length-prefixed part (table, column and field names: a handful)."""
    encoded = name.encode()
    return len(encoded).to_bytes(2, "big") + encoded


@dataclass(frozen=True, slots=True)
class DataKey:
    id: uuid.UUID
    owner_id: uuid.UUID
    material: bytes
    _aead: AESGCM = field(init=False, repr=False, compare=False)
    """The cipher keyed once (its key schedule costs as much as a short value's decryption)."""

    _id_bytes: bytes = field(init=False, repr=False, compare=False)
    """The id as its ciphertexts carry it (``UUID.bytes`` is computed on every use)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_aead", AESGCM(self.material))
        object.__setattr__(self, "_id_bytes", self.id.bytes)

    def __repr__(self) -> str:
        return f"DataKey(id={self.id}, owner_id={self.owner_id})"

    def encrypt(self, plaintext: bytes, binding: Binding) -> bytes:
        if binding.owner_id != self.owner_id:
            raise ValueError("a data key encrypts only its owner's values")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        body = self._aead.encrypt(nonce, plaintext, binding.associated_data())
        return bytes([FORMAT_VERSION]) + self._id_bytes + nonce + body

    def decrypt(self, ciphertext: bytes, binding: Binding) -> bytes:
        if len(ciphertext) < _HEADER + 16 or ciphertext[0] != FORMAT_VERSION:
            raise DecryptionError("unknown ciphertext format")
        if ciphertext[1:17] != self._id_bytes:
            raise DecryptionError("value was encrypted under another key")
        nonce = ciphertext[17:_HEADER]
        try:
            return self._aead.decrypt(nonce, ciphertext[_HEADER:], binding.associated_data())
        except InvalidTag as exc:
            raise DecryptionError("value is altered or does not belong here") from exc


def key_id_of(ciphertext: bytes) -> uuid.UUID:
    """The data key id a ciphertext names (no secret needed)."""
    if len(ciphertext) < _HEADER or ciphertext[0] != FORMAT_VERSION:
        raise DecryptionError("unknown ciphertext format")
    return uuid.UUID(bytes=ciphertext[1:17])


def wrap_associated_data(key_id: uuid.UUID, owner_id: uuid.UUID) -> bytes:
    return b"vrm-dek/v1" + key_id.bytes + owner_id.bytes


def normalise_email(address: str) -> str:
    """Canonical form for the blind index: NFKC, trimmed, lower case."""
    return unicodedata.normalize("NFKC", address).strip().lower()


def blind_index(key: bytes, purpose: str, value: str) -> bytes:
    """Keyed HMAC-SHA256 of a normalised value, domain-separated by ``purpose``."""
    return hmac.digest(key, purpose.encode() + b"\x00" + value.encode(), "sha256")


def hash_token(key: bytes, token: str) -> bytes:
    """Keyed hash of a random secret (session ids, codes, tokens): compare, never store."""
    return hmac.digest(key, b"token\x00" + token.encode(), "sha256")


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
