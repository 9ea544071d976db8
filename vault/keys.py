"""Key-encryption keys and service secrets.

A ``KeyProvider`` wraps and unwraps per-individual data keys. The local provider keeps its
key-encryption keys (KEKs) as files in the key directory; a KMS (HashiCorp Vault transit,
AWS KMS) fits the same four operations: ``current_version``, ``wrap``, ``unwrap`` and
``add_version``. The provider never sees personal data, only 32-byte data keys.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import ServiceFault

KeyOrigin = Literal["development", "operator"]

_KEK_PREFIX = "local:v"
_KEK_FILE = re.compile(r"v([1-9][0-9]*)\.json")
_NONCE_BYTES = 12


class KeyManagementError(ServiceFault, RuntimeError):
    """A key is missing, unreadable or refused; the message says what to do."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    kek_id: str
    blob: bytes


class KeyProvider(Protocol):
    def current_version(self) -> str: ...

    def wrap(self, key: bytes, aad: bytes) -> WrappedKey: ...

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes: ...

    def add_version(self) -> str: ...


def _fsync_directory(directory: Path) -> None:
    """Make the directory's entries (a new file's name) durable, not only the file's bytes."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directory(directory: Path, mode: int = 0o700) -> None:
    """Create ``directory`` (and any missing parents, with the usual mode), each made durable
    in its parent."""
    if directory.is_dir():
        return
    _make_directory(directory.parent, 0o777)
    try:
        directory.mkdir(mode=mode)
    except FileExistsError:
        return  # another process made it
    _fsync_directory(directory.parent)


def _write_secret_file(path: Path, payload: dict[str, object]) -> None:
    """Create ``path`` with mode 0600, refusing to overwrite an existing key.

    The key is written to a temporary file first, fsynced, and then linked into place, so a
    process that reads the directory meanwhile never sees a half-written key; then the
    directory is fsynced, so that once this returns (and before anything is wrapped under the
    new key) the key survives a power cut, name and all.
    """
    _make_directory(path.parent)
    _put_secret_file(path, payload, replace=False)


def _replace_secret_file(path: Path, payload: dict[str, object]) -> None:
    """Replace the existing key file ``path`` atomically with ``payload`` (mode 0600), durably:
    the new file is fsynced before it takes the old one's name, and the directory after."""
    _put_secret_file(path, payload, replace=True)


def _put_secret_file(path: Path, payload: dict[str, object], *, replace: bool) -> None:
    """``payload`` into a fsynced 0600 temporary file beside ``path``, then given its name:
    linked (``FileExistsError`` if a key has it) or, with ``replace``, renamed over it."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic; FileExistsError if the key exists
    finally:
        tmp.unlink(missing_ok=True)  # a link leaves it behind; a rename or a failure may not
    _fsync_directory(path.parent)


def _read_secret_file(path: Path) -> dict[str, object]:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyManagementError(
            f"{path} is readable by others (mode {mode:o}); run `chmod 600 {path}`."
        )
    try:
        data = json.loads(path.read_text())
    except ValueError:
        data = None
    if not isinstance(data, dict) or "key" not in data:
        raise KeyManagementError(f"{path} is not a VRM key file.")
    return data


def _new_key_payload(origin: KeyOrigin, **extra: object) -> dict[str, object]:
    return {
        "key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "origin": origin,
        "created_at": datetime.now(UTC).isoformat(),
        **extra,
    }


class LocalKeyProvider:
    """KEKs as files ``kek/v<N>.json`` (mode 0600) in the key directory.

    Another process (``vrm keys rotate``) may add a version while this one runs: a version
    this process has not loaded is read from disk when a data key names it, and new data keys
    are wrapped under the newest version on disk.
    """

    def __init__(self, key_dir: Path) -> None:
        self._dir = key_dir / "kek"
        self._keys: dict[str, bytes] = {}
        self._origins: dict[str, str] = {}
        self._files: frozenset[str] = frozenset()
        self.reload()

    def _on_disk(self) -> frozenset[str]:
        if not self._dir.is_dir():
            return frozenset()
        return frozenset(p.name for p in self._dir.iterdir() if _KEK_FILE.fullmatch(p.name))

    def reload(self) -> None:
        keys: dict[str, bytes] = {}
        origins: dict[str, str] = {}
        files = self._on_disk()
        for name in files:
            kek_id = f"{_KEK_PREFIX}{int(name[1:-5])}"
            data = _read_secret_file(self._dir / name)
            keys[kek_id] = base64.b64decode(str(data["key"]))
            origins[kek_id] = str(data.get("origin", "operator"))
        # Replace, never mutate: request threads may be reading the old mappings.
        self._keys, self._origins, self._files = keys, origins, files

    def _refresh(self) -> None:
        if self._on_disk() != self._files:
            self.reload()

    def versions(self) -> list[str]:
        return sorted(self._keys, key=lambda kid: int(kid.removeprefix(_KEK_PREFIX)))

    def origins(self) -> dict[str, str]:
        return dict(self._origins)

    def current_version(self) -> str:
        """The newest version on disk (another process may have just added it)."""
        self._refresh()
        versions = self.versions()
        if not versions:
            raise KeyManagementError(f"No key-encryption key in {self._dir}; run `vrm keys init`.")
        return versions[-1]

    def add_version(self, origin: KeyOrigin = "operator") -> str:
        """Create the next version. A development key never follows an operator's: the new
        version is "operator" if any existing one is, whatever the caller's setting."""
        self.reload()
        if "operator" in self._origins.values():
            origin = "operator"
        versions = self.versions()
        number = int(versions[-1].removeprefix(_KEK_PREFIX)) + 1 if versions else 1
        _write_secret_file(self._dir / f"v{number}.json", _new_key_payload(origin))
        self.reload()
        return f"{_KEK_PREFIX}{number}"

    def wrap(self, key: bytes, aad: bytes) -> WrappedKey:
        kek_id = self.current_version()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        blob = nonce + AESGCM(self._keys[kek_id]).encrypt(nonce, key, aad + kek_id.encode())
        return WrappedKey(kek_id, blob)

    def unwrap(self, wrapped: WrappedKey, aad: bytes) -> bytes:
        kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            self._refresh()
            kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            raise KeyManagementError(f"Key-encryption key {wrapped.kek_id} is not available.")
        nonce, body = wrapped.blob[:_NONCE_BYTES], wrapped.blob[_NONCE_BYTES:]
        try:
            return AESGCM(kek).decrypt(nonce, body, aad + wrapped.kek_id.encode())
        except InvalidTag as exc:
            raise KeyManagementError(
                "A data key failed to unwrap: wrong key or altered data."
            ) from exc


@dataclass(frozen=True, slots=True)
class ServiceSecrets:
    """Keys that are not KEKs: the blind index, hashing of tokens, signing of cookies, and the
    master key from which each vendor app's webhook signing secret is derived."""

    blind_index_key: bytes
    token_hash_key: bytes
    cookie_key: bytes
    webhook_key: bytes
    origins: dict[str, str]

    def __repr__(self) -> str:
        return f"ServiceSecrets(origins={self.origins})"


_SECRET_FILES = ("blind-index", "token-hash", "cookie", "webhook")


@dataclass(frozen=True, slots=True)
class StoredSigningKey:
    """A signing key file as read: the private key's text form, who made it ("development" or
    "operator") and the other text fields stored with it (a ledger key's log origin, say)."""

    path: Path
    key: str
    origin: str
    fields: tuple[tuple[str, str], ...]

    def field(self, name: str) -> str | None:
        return dict(self.fields).get(name)

    def __repr__(self) -> str:
        return f"StoredSigningKey(path={self.path}, origin={self.origin}, fields={self.fields})"


_RESERVED_FIELDS = frozenset({"key", "alg", "origin", "created_at"})


@dataclass(frozen=True, slots=True)
class SigningKeyFile:
    """An asymmetric signing key kept in the key directory like the other keys.

    Created on first use in development (origin "development"); in production only
    `vrm keys init` creates it, and a development key is refused. Text ``fields`` given when
    the key is created are stored with it, in the same file, and never change afterwards.
    """

    filename: str
    alg: str
    generate: Callable[[], str]
    """Returns a new private key in its text form (PEM, base64, ...)."""

    def ensure(
        self, key_dir: Path, origin: KeyOrigin, fields: Mapping[str, str] | None = None
    ) -> bool:
        """Create the key if missing (never overwrites). True when this call created it."""
        if (key_dir / self.filename).exists():
            return False
        extra = dict(fields or {})
        if _RESERVED_FIELDS & set(extra):
            raise ValueError(f"fields may not be named {sorted(_RESERVED_FIELDS & set(extra))}")
        _make_directory(key_dir)
        payload: dict[str, object] = {
            "key": self.generate(),
            "alg": self.alg,
            "origin": origin,
            "created_at": datetime.now(UTC).isoformat(),
            **extra,
        }
        try:
            _write_secret_file(key_dir / self.filename, payload)
        except FileExistsError:
            return False  # another process created it first
        return True

    def read(
        self, key_dir: Path, *, production: bool, fields: Mapping[str, str] | None = None
    ) -> StoredSigningKey:
        """The key file, checked for mode and origin. In development a missing key is
        created, with ``fields`` stored beside it."""
        path = key_dir / self.filename
        if not path.exists():
            if production:
                raise KeyManagementError(f"Missing {path}; create it with `vrm keys init`.")
            self.ensure(key_dir, "development", fields)
        stat = path.stat()
        stored = _read_signing_key(path, stat.st_ino, stat.st_mtime_ns)
        if production and stored.origin == "development":
            raise KeyManagementError(
                f"{path} was generated for development; refusing it in production."
            )
        return stored

    def load(self, key_dir: Path, *, production: bool) -> str:
        """The private key's text form, checked for mode and origin."""
        return self.read(key_dir, production=production).key

    def adopt(self, key_dir: Path, name: str, value: str) -> str:
        """Store the text field ``name`` in a key file made without it; returns the value the
        file holds afterwards, which is an existing one if the file has it already.

        For keys made before a field was stored with them. The key and every other field are
        kept; the file is replaced atomically (a reader sees the old file or the new one).
        Processes that adopt at once agree: each holds an exclusive lock on the key file
        while it reads and replaces it, and one that waited reads the file anew, finding the
        value the first one stored (a replaced file is a new inode, but only a file that
        already holds the field is ever replaced, so two lock holders cannot both miss it).
        """
        if name in _RESERVED_FIELDS:
            raise ValueError(f"{name!r} is not a field that can be adopted")
        path = key_dir / self.filename
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = _read_secret_file(path)
            found = data.get(name)
            if isinstance(found, str) and found:
                return found
            _replace_secret_file(path, {**data, name: value})
            return value
        finally:
            os.close(fd)  # releases the lock


@lru_cache(maxsize=16)
def _read_signing_key(path: Path, inode: int, mtime_ns: int) -> StoredSigningKey:
    data = _read_secret_file(path)
    fields = tuple(
        sorted(
            (name, value)
            for name, value in data.items()
            if name not in _RESERVED_FIELDS and isinstance(value, str)
        )
    )
    return StoredSigningKey(
        path=path, key=str(data["key"]), origin=str(data.get("origin", "operator")), fields=fields
    )


class KeyDirectory:
    """The service's key directory: KEKs plus the secrets above, created on first start."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return all((self.path / f"{name}.json").exists() for name in _SECRET_FILES) and any(
            (self.path / "kek").glob("v*.json")
        )

    def initialise(self, origin: KeyOrigin) -> list[Path]:
        """Create whatever key is missing; never overwrite one. Returns the files created.

        Several processes may start at once: a key another one created first is kept and used.
        """
        _make_directory(self.path)
        os.chmod(self.path, 0o700)
        created: list[Path] = []
        for name in _SECRET_FILES:
            target = self.path / f"{name}.json"
            if not target.exists():
                try:
                    _write_secret_file(target, _new_key_payload(origin))
                except FileExistsError:
                    continue  # another process created it first
                created.append(target)
        if not LocalKeyProvider(self.path).versions():
            first = self.path / "kek" / "v1.json"
            try:
                _write_secret_file(first, _new_key_payload(origin))
            except FileExistsError:
                pass  # another process created it first
            else:
                created.append(first)
        return created

    def load_secrets(self) -> ServiceSecrets:
        values: dict[str, bytes] = {}
        origins: dict[str, str] = {}
        for name in _SECRET_FILES:
            target = self.path / f"{name}.json"
            if not target.exists():
                raise KeyManagementError(f"Missing {target}; run `vrm keys init`.")
            data = _read_secret_file(target)
            values[name] = base64.b64decode(str(data["key"]))
            origins[name] = str(data.get("origin", "operator"))
        return ServiceSecrets(
            blind_index_key=values["blind-index"],
            token_hash_key=values["token-hash"],
            cookie_key=values["cookie"],
            webhook_key=values["webhook"],
            origins=origins,
        )

    def development_keys(self) -> list[str]:
        """Names of keys that were generated automatically for development."""
        found = [
            name for name, origin in self.load_secrets().origins.items() if origin == "development"
        ]
        provider = LocalKeyProvider(self.path)
        found += [kid for kid, origin in provider.origins().items() if origin == "development"]
        return found
