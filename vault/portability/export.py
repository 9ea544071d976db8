"""The export archive: everything about one individual, streamed as a ZIP.

Contents (every file listed with its SHA-256 and size in ``manifest.json``, which the vault
signs as a compact JWS, ``manifest.jws``, with its ledger key)::

    data.json           every section, each item with its provenance (provided / observed)
    data.schema.json    the JSON Schema of data.json
    <section>.csv       the tabular sections, one file each
    index.html          the same for people: opens offline, no scripts, no external resources
    manifest.json       files, hashes, sizes, the exporting vault and its public key
    manifest.jws        the vault's signature over manifest.json

The archive is produced while it is sent: each file is written through a hashing writer into
a ZIP stream (data descriptors, no seeking), and rows are read from the database in batches,
so memory stays flat however long the access log is. Reads run in one read-only transaction
(a snapshot), so every file shows the same moment.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import json
import logging
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from sqlalchemy.orm import Session

from vault.db import read_snapshot
from vault.portability.parts import MANIFEST_TYP, Portability, Section
from vault.runtime import Runtime

FORMAT = "vrm-vault-export"
VERSION = 1
DATA = "data.json"
SCHEMA = "data.schema.json"
INDEX = "index.html"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.jws"
INCOMPLETE = "EXPORT-INCOMPLETE.txt"
"""Written instead of the manifest when the export broke off after its first bytes."""
INCOMPLETE_TEXT = (
    "This export is incomplete.\n\n"
    "The vault stopped being able to read your data while it was making this archive (its "
    "database did not answer). The files in it may be cut short, and it has no manifest.json "
    "or manifest.jws, so no vault will import it.\n\n"
    "Nothing was lost from your vault. Please export again in a few minutes.\n"
)
_CHUNK = 64 * 1024

log = logging.getLogger("vrm.export")


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream that hands out what was written so far."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0
        """Bytes waiting to be drained (kept as a count: the compressor writes once per
        piece, mostly nothing, so summing the parts each time made the export quadratic)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if chunk:
            self._parts.append(chunk)
            self.size += len(chunk)
        return len(chunk)

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return out


def sections_of(
    db: Session, rt: Runtime, portability: Portability, owner_id: uuid.UUID
) -> list[Section]:
    found: list[Section] = []
    for part in portability.parts:
        found += part.sections(db, rt, owner_id)
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two parts export the same section name: {sorted(names)}")
    return found


def item_json(section: Section, item: BaseModel) -> dict[str, Any]:
    body: dict[str, Any] = item.model_dump(mode="json")
    body["provenance"] = section.provenance
    return body


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def data_json(header: dict[str, Any], sections: list[Section]) -> Iterator[bytes]:
    """``data.json`` in pieces: the header, then each section's items one by one."""
    head = _compact(header)
    yield head[:-1] + b',"sections":{'
    for n, section in enumerate(sections):
        meta = {
            "title": section.title,
            "description": section.description,
            "provenance": section.provenance,
        }
        prefix = b"," if n else b""
        yield prefix + _compact(section.name) + b":" + _compact(meta)[:-1] + b',"items":['
        for i, item in enumerate(section.rows()):
            yield (b",\n" if i else b"\n") + _compact(item_json(section, item))
        yield b"]}"
    yield b"}}\n"


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    """A CSV cell. Text a spreadsheet would run as a formula (it starts with = + - @, a tab
    or a carriage return: vendors write some of these texts) gets a leading apostrophe, as
    OWASP advises; data.json keeps every value exactly."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_file(section: Section) -> Iterator[bytes]:
    assert section.csv_columns is not None
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*section.csv_columns, "provenance"])
    for item in section.rows():
        row = item.model_dump(mode="json")
        writer.writerow([*(_cell(row.get(c)) for c in section.csv_columns), section.provenance])
        if buffer.tell() > _CHUNK:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


_PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
"""The archive's own templates (the vault core renders no portal page: that is ``web/``)."""
_PIECES = 4096
"""Template pieces per chunk (a piece is a tag or a value, ~20 a row): joined in C, not one
by one, so streaming the page costs no more than the strings it is made of."""


def _html_cell(value: Any) -> tuple[bool, str]:
    """A table cell: whether it is JSON (shown as code) and its text (escaped by the page)."""
    if value is None or value == "":
        return False, ""
    if isinstance(value, (dict, list)):
        return True, json.dumps(value, ensure_ascii=False, indent=1)
    return False, str(value)


def _html_rows(section: Section, fields: list[str]) -> Iterator[list[tuple[bool, str]]]:
    for item in section.rows():
        data = item.model_dump(mode="json")
        yield [_html_cell(data.get(f)) for f in fields]


def index_html(header: dict[str, Any], sections: list[Section]) -> Iterator[bytes]:
    """A page for people (``templates/export_index.html``), written as it goes: tables can be
    long, so rows are read while the page is rendered, and sent on a few thousand of the
    template's pieces at a time (a few dozen KiB)."""
    pages = []
    for section in sections:
        fields = list(section.item.model_fields)
        pages.append(
            {
                "name": section.name,
                "title": section.title,
                "description": section.description,
                "provenance": section.provenance,
                "columns": [f.replace("_", " ") for f in fields],
                "rows": _html_rows(section, fields),
            }
        )
    rendered = _PAGES.get_template("export_index.html").generate(
        exported_at=header["exported_at"], vault=header["vault"]["base_url"], sections=pages
    )
    while pieces := list(itertools.islice(rendered, _PIECES)):
        yield "".join(pieces).encode()


def json_schema(header: dict[str, Any], sections: list[Section]) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``data.json``, from the items' own models."""

    _, defs = models_json_schema(
        [(s.item, "serialization") for s in sections], ref_template="#/$defs/{model}"
    )
    properties: dict[str, Any] = {}
    for section in sections:
        item_ref = {"$ref": f"#/$defs/{section.item.__name__}"}
        properties[section.name] = {
            "type": "object",
            "required": ["title", "description", "provenance", "items"],
            "properties": {
                "title": {"type": "string"},
                "description": {"type": "string"},
                "provenance": {"const": section.provenance},
                "items": {
                    "type": "array",
                    "items": {
                        "allOf": [
                            item_ref,
                            {
                                "properties": {"provenance": {"const": section.provenance}},
                                "required": ["provenance"],
                            },
                        ]
                    },
                },
            },
        }
    for model in defs.get("$defs", {}).values():
        # Items carry their provenance next to the model's own fields.
        model.setdefault("properties", {})["provenance"] = {"enum": ["provided", "observed"]}
        model.pop("additionalProperties", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{header['vault']['base_url']}/schemas/export/v{VERSION}",
        "title": "VRM Vault export (data.json)",
        "type": "object",
        "required": ["format", "version", "exported_at", "vault", "sections"],
        "properties": {
            "format": {"const": FORMAT},
            "version": {"const": VERSION},
            "exported_at": {"type": "string", "format": "date-time"},
            "vault": {
                "type": "object",
                "properties": {
                    "base_url": {"type": "string"},
                    "origin": {"type": "string"},
                    "public_key": {"type": "string"},
                },
            },
            "sections": {
                "type": "object",
                "properties": properties,
                "required": [s.name for s in sections],
            },
        },
        "$defs": defs.get("$defs", {}),
    }


_FIXED_BYTES = 16_000
"""The compressed archive of a person with one connection and no reads: schema, manifest,
signature, page skeleton, profile."""
_ITEM_BYTES = {"access_log": 30}
"""Compressed bytes an item adds (JSON, CSV and HTML together): the access log's rows repeat
themselves and deflate to ~30 bytes (measured with bench/export_memory.py); the rest carry
signatures, hashes and proofs, which do not compress."""
_OTHER_ITEM_BYTES = 1_000


def estimate(sections: list[Section]) -> int:
    """A rough size of the archive in bytes, for the page's progress bar (not a promise).

    It is compared with the bytes the browser receives, which are compressed: counting the
    uncompressed size would leave the bar at a few percent until it jumps to the end.
    """
    return _FIXED_BYTES + sum(
        s.count() * _ITEM_BYTES.get(s.name, _OTHER_ITEM_BYTES) for s in sections
    )


class Archive:
    """Builds the export ZIP as a stream of byte chunks."""

    def __init__(self, rt: Runtime, portability: Portability, sections: list[Section]) -> None:
        self.rt = rt
        self.portability = portability
        self.sections = sections
        now = datetime.now(UTC).replace(microsecond=0)
        signer = portability.signer
        self.header: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "exported_at": now.isoformat().replace("+00:00", "Z"),
            "vault": {
                "base_url": rt.settings.base_url,
                "origin": signer.origin(),
                "public_key": signer.public_key(),
            },
        }
        self.files: list[dict[str, Any]] = []

    def chunks(self) -> Iterator[bytes]:
        """The archive's bytes. A failure before the first chunk (the database away) is
        raised: nothing was sent, the caller can answer with an error. A failure after it
        ends the archive cleanly instead of breaking the connection: the file being written
        is closed where it stopped, :data:`INCOMPLETE` says what happened, and there is no
        manifest or signature, so no importer takes it for a whole export."""
        sink = _Sink()
        sent = False
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            try:
                for chunk in self._members(archive, sink):
                    sent = True
                    yield chunk
            except Exception as exc:
                if not sent:
                    raise
                # The type only: messages can carry bound SQL parameters.
                log.warning(
                    "export stopped after %d of its files (%s): ended the archive with %s",
                    len(self.files),
                    type(exc).__name__,
                    INCOMPLETE,
                )
                archive.writestr(_info(INCOMPLETE), INCOMPLETE_TEXT.encode())
        yield sink.drain()

    def _members(self, archive: zipfile.ZipFile, sink: _Sink) -> Iterator[bytes]:
        produce: list[tuple[str, Callable[[], Iterable[bytes]]]] = [
            (DATA, lambda: data_json(self.header, self.sections)),
            (SCHEMA, lambda: [_pretty(json_schema(self.header, self.sections))]),
        ]
        for section in self.sections:
            if section.csv_columns is not None:
                produce.append((f"{section.name}.csv", functools.partial(csv_file, section)))
        produce.append((INDEX, lambda: index_html(self.header, self.sections)))
        for name, make in produce:
            digest, size = hashlib.sha256(), 0
            with archive.open(_info(name), "w", force_zip64=True) as member:
                for piece in make():
                    member.write(piece)
                    digest.update(piece)
                    size += len(piece)
                    if sink.size >= _CHUNK:
                        yield sink.drain()
            self.files.append({"path": name, "sha256": digest.hexdigest(), "bytes": size})
            yield sink.drain()
        manifest = _pretty(
            {
                "format": FORMAT,
                "version": VERSION,
                "created_at": self.header["exported_at"],
                "vault": self.header["vault"],
                "files": self.files,
            }
        )
        signature = self.portability.signer.sign(manifest, MANIFEST_TYP).encode() + b"\n"
        archive.writestr(_info(MANIFEST), manifest)
        archive.writestr(_info(SIGNATURE), signature)


def _pretty(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False).encode() + b"\n"


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=datetime.now(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    return info


def filename(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"vrm-vault-export-{moment:%Y%m%d-%H%M%S}.zip"


def prepare(db: Session, rt: Runtime, portability: Portability, owner_id: uuid.UUID) -> int:
    """Let every part write what the export needs first (in the caller's transaction, which
    must commit before :func:`stream` starts), and estimate the archive's size."""
    for part in portability.parts:
        part.prepare_export(db, rt, owner_id)
    db.flush()
    return estimate(sections_of(db, rt, portability, owner_id))


def stream(rt: Runtime, portability: Portability, owner_id: uuid.UUID) -> Iterator[bytes]:
    """The archive's bytes, read from one snapshot, produced while they are sent."""
    with read_snapshot(rt.sessions) as db:
        sections = sections_of(db, rt, portability, owner_id)
        yield from Archive(rt, portability, sections).chunks()
