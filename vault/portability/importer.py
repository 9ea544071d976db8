"""Importing another vault's export into a new account, checked before anything is written.

The archive is read defensively: a size limit on the upload, at most a few dozen members,
flat names only (nothing that could escape a directory), a cap on every member's size and on
the total as the bytes are actually inflated (declared sizes can lie), and a cap on the
compression ratio (zip bombs). Then the manifest: its signature must verify under the
exporting vault's key (which the manifest names and the page shows), every file must be
listed with the right SHA-256 and size, and nothing unlisted may be present. Only then are
the parts asked to take over what they own, in one transaction with the new account: any
problem leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from vault.accounts.models import Account
from vault.errors import InvalidInput
from vault.portability.export import DATA, FORMAT, MANIFEST, SIGNATURE, VERSION
from vault.portability.parts import MANIFEST_TYP, ImportContext, Portability
from vault.runtime import Runtime
from vault.strictjson import NotText, loads

MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_RATIO = 200
"""No member may inflate to more than this many times its compressed size."""
KEPT_LIMITS = {DATA: 32 * 1024 * 1024, MANIFEST: 256 * 1024, SIGNATURE: 64 * 1024}
"""The files read into memory (the rest are only hashed) have tighter limits of their own."""
IMPORTED_SECTIONS = {
    "profile": 200,
    "preferences": 10,
    "grants": 2000,
    "previous_vendors": 2000,
    "intents": 500,
}
"""What an import takes over, and how many items of each at most."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_READ = 1024 * 1024


class ArchiveRefused(InvalidInput):
    """The uploaded archive is not a valid, intact VRM Vault export."""

    code = "archive_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="archive")


@dataclass
class VerifiedArchive:
    """An export whose signature and hashes checked out."""

    document: dict[str, Any]
    manifest: dict[str, Any]
    signer_key: str
    files: list[str] = field(default_factory=list)

    trusted: bool = False
    """Whether the signer is one of ``VRM_IMPORT_TRUSTED_KEYS`` (else only integrity is known)."""

    @property
    def source_label(self) -> str:
        """How to name the exporting vault to a person: its self-given name is only a claim
        unless the operator listed its key."""
        if self.trusted:
            return self.source
        return f"{self.source} (a name the archive gives itself; key {self.key_id})"

    @property
    def key_id(self) -> str:
        parts = self.signer_key.split("+")
        return parts[1] if len(parts) == 3 else "unknown"

    @property
    def source(self) -> str:
        """The exporting vault's name as its manifest gives it (shortened, printable)."""
        vault = self.manifest.get("vault")
        origin = vault.get("origin") if isinstance(vault, dict) else None
        if not isinstance(origin, str) or not origin.isprintable() or not origin.strip():
            return "another vault"
        return origin.strip()[:100]

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        """The sections an import takes anything from (others are only verified), each with
        at most :data:`IMPORTED_SECTIONS` items."""
        found: dict[str, list[dict[str, Any]]] = {}
        for name, section in self.document["sections"].items():
            limit = IMPORTED_SECTIONS.get(str(name))
            if limit is None:
                continue
            items = section.get("items") if isinstance(section, dict) else None
            if not isinstance(items, list):
                raise ArchiveRefused(f"data.json: section {name[:40]!r} has no list of items.")
            if len(items) > limit:
                raise ArchiveRefused(
                    f"data.json: section {name!r} has {len(items):,} items; a vault imports at "
                    f"most {limit:,}."
                )
            clean = []
            for item in items:
                if not isinstance(item, dict):
                    raise ArchiveRefused(f"data.json: an item of {name[:40]!r} is not an object.")
                clean.append({k: v for k, v in item.items() if k != "provenance"})
            found[str(name)] = clean
        return found


def _size_of(fileobj: IO[bytes]) -> int:
    position = fileobj.tell()
    try:
        return fileobj.seek(0, 2)
    finally:
        fileobj.seek(position)


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> tuple[bytes, int]:
    """Read one member, refusing as soon as it inflates past its limits."""
    keep = info.filename in (DATA, MANIFEST, SIGNATURE)
    ceiling = KEPT_LIMITS.get(info.filename, MAX_MEMBER_BYTES)
    limit = min(ceiling, budget, max(info.compress_size, 1) * MAX_RATIO)
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(_READ)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise ArchiveRefused(
                        f"{info.filename} inflates to more than its limit: the archive looks "
                        "like a zip bomb, or is too large to import."
                    )
                digest.update(chunk)
                if keep:
                    chunks.append(chunk)
    except zipfile.BadZipFile as exc:
        raise ArchiveRefused(f"{info.filename} is corrupt ({exc}).") from None
    except zlib.error:
        raise ArchiveRefused(f"{info.filename} is corrupt (it does not inflate).") from None
    except (EOFError, zipfile.LargeZipFile, NotImplementedError, OSError) as exc:
        raise ArchiveRefused(f"{info.filename} cannot be read ({type(exc).__name__}).") from None
    return b"".join(chunks) if keep else digest.digest(), size


def verify(
    fileobj: IO[bytes], portability: Portability, trusted_keys: Sequence[str] = ()
) -> VerifiedArchive:
    """Check everything about the archive; raise :class:`ArchiveRefused` with the reason.

    ``trusted_keys`` (``VRM_IMPORT_TRUSTED_KEYS``): if given, only exports signed by one of
    these vault keys are accepted; otherwise the signature is checked against the key the
    manifest names, which proves the archive intact, and the page names that vault.
    """
    try:
        archive = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile:
        raise ArchiveRefused(
            "This is not a ZIP archive, or it is truncated. Upload the .zip file the export "
            "gave you, unchanged."
        ) from None
    except (OSError, EOFError, ValueError):
        raise ArchiveRefused("The archive cannot be read.") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArchiveRefused(f"The archive holds more than {MAX_MEMBERS} files.")
        names: set[str] = set()
        for info in infos:
            name = info.filename
            if not _NAME.fullmatch(name) or ".." in name:
                raise ArchiveRefused(
                    f"The archive holds a path that is not allowed: {name[:80]!r}. An export "
                    "holds plain file names only."
                )
            if name in names:
                raise ArchiveRefused(f"The archive holds {name!r} twice.")
            if info.flag_bits & 0x1:
                raise ArchiveRefused("The archive is encrypted; exports never are.")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # bzip2 and LZMA inflate a whole read at once, before any limit can apply.
                raise ArchiveRefused(
                    f"{name} uses a compression method exports never use; it is refused."
                )
            names.add(name)
        for required in (MANIFEST, SIGNATURE, DATA):
            if required not in names:
                raise ArchiveRefused(f"The archive has no {required}: it is not a vault export.")
        declared = sum(i.file_size for i in infos)
        if declared > MAX_TOTAL_BYTES:
            raise ArchiveRefused("The archive is too large to import.")
        # The ratio limit trusts each member's compressed size: they must fit in the file.
        if sum(i.compress_size for i in infos) > _size_of(fileobj):
            raise ArchiveRefused("The archive's directory does not match its contents.")
        contents: dict[str, bytes] = {}
        hashes: dict[str, tuple[str, int]] = {}
        budget = MAX_TOTAL_BYTES
        for info in infos:
            data, size = _inflate(archive, info, budget)
            budget -= size
            if info.filename in (DATA, MANIFEST, SIGNATURE):
                contents[info.filename] = data
                hashes[info.filename] = (hashlib.sha256(data).hexdigest(), size)
            else:
                hashes[info.filename] = (data.hex(), size)
    try:
        manifest = loads(contents[MANIFEST])
    except NotText as exc:
        raise ArchiveRefused(f"manifest.json is not valid JSON: {exc.msg}.") from None
    except (ValueError, RecursionError):
        raise ArchiveRefused("manifest.json is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveRefused("manifest.json is not a VRM Vault export manifest.")
    if manifest.get("version") != VERSION:
        raise ArchiveRefused(
            f"This export has format version {manifest.get('version')!r}; this vault reads "
            f"version {VERSION}."
        )
    key = (
        manifest.get("vault", {}).get("public_key")
        if isinstance(manifest.get("vault"), dict)
        else None
    )
    if not isinstance(key, str) or len(key) > 300:
        raise ArchiveRefused("manifest.json does not name the exporting vault's public key.")
    origin = manifest["vault"].get("origin")
    if not isinstance(origin, str) or key.split("+", 1)[0] != origin:
        raise ArchiveRefused(
            "manifest.json names a vault that is not the one its key belongs to: altered."
        )
    trusted = [k.strip() for k in trusted_keys]
    if trusted and key.strip() not in trusted:
        raise ArchiveRefused(
            f"This export was signed by {key.split('+', 1)[0][:100]!r}, which this vault's "
            "operator has not listed as a vault to import from."
        )
    try:
        # Archives exported before manifests named their typ still import.
        signed = portability.signer.verify(
            contents[SIGNATURE].decode("ascii", "replace"), key, MANIFEST_TYP, untyped_ok=True
        )
    except ValueError:
        raise ArchiveRefused(
            "The signature over manifest.json does not verify: the archive was altered."
        ) from None
    if signed != contents[MANIFEST]:
        raise ArchiveRefused("manifest.jws does not sign this manifest.json: it was altered.")
    listed = manifest.get("files")
    if not isinstance(listed, list):
        raise ArchiveRefused("manifest.json lists no files.")
    expected: dict[str, tuple[str, int]] = {}
    for entry in listed:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("path"), str)
            or not isinstance(entry.get("sha256"), str)
            or not isinstance(entry.get("bytes"), int)
            or isinstance(entry.get("bytes"), bool)
        ):
            raise ArchiveRefused("manifest.json lists a file it does not describe.")
        expected[entry["path"]] = (entry["sha256"], entry["bytes"])
    present = set(hashes) - {MANIFEST, SIGNATURE}
    if present != set(expected):
        extra = sorted(present - set(expected))
        missing = sorted(set(expected) - present)
        raise ArchiveRefused(
            "The archive's files do not match its manifest"
            + (f"; not listed: {', '.join(extra)[:200]}" if extra else "")
            + (f"; missing: {', '.join(missing)[:200]}" if missing else "")
            + "."
        )
    for name, (digest, size) in expected.items():
        if hashes[name] != (digest, size):
            raise ArchiveRefused(f"{name} does not match its SHA-256 in the manifest: altered.")
    try:
        document = loads(contents[DATA])
    except NotText as exc:
        raise ArchiveRefused(f"data.json is not valid JSON: {exc.msg}.") from None
    except (ValueError, RecursionError):
        raise ArchiveRefused("data.json is not valid JSON.") from None
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or not isinstance(document.get("sections"), dict)
    ):
        raise ArchiveRefused("data.json is not a VRM Vault export.")
    return VerifiedArchive(document, manifest, key, sorted(hashes), trusted=bool(trusted))


def import_into(
    db: Session,
    rt: Runtime,
    portability: Portability,
    owner: Account,
    archive: VerifiedArchive,
) -> ImportContext:
    """Every part takes over what it owns (the caller's transaction; nothing is committed)."""

    context = ImportContext(source=archive.source)
    sections = archive.sections()
    for part in portability.parts:
        try:
            part.import_data(db, rt, owner, sections, context)
        except ValidationError as exc:
            errors = exc.errors()
            where = ".".join(str(p) for p in errors[0]["loc"]) if errors else "item"
            why = errors[0]["msg"] if errors else "invalid"
            raise ArchiveRefused(
                f"data.json: an item does not have the shape this vault expects ({where}: {why})."
            ) from None
    return context
