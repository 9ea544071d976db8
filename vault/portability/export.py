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
import json
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from markupsafe import escape
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
_CHUNK = 64 * 1024


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


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;
color:#1d2330;line-height:1.5}h1{font-size:1.8rem}h2{margin-top:2.5rem;font-size:1.3rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border-bottom:1px solid #d9dde6;
text-align:left;padding:.3rem .5rem;vertical-align:top}th{background:#f6f7fb}
.badge{font-size:.75rem;font-weight:700;padding:0 .4rem;border-radius:4px;background:#e7ecf7}
.observed{background:#fdf3dc}code,pre{white-space:pre-wrap;overflow-wrap:anywhere}
.note{color:#5a6275}
"""


def _html_cell(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, indent=1)
        return f"<code>{escape(text)}</code>"
    return str(escape(str(value)))


def index_html(header: dict[str, Any], sections: list[Section]) -> Iterator[bytes]:
    """A page for people, written as it goes (tables can be long)."""
    exported = escape(header["exported_at"])
    vault = escape(header["vault"]["base_url"])
    yield (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Your data from VRM Vault ({exported})</title><style>{_STYLE}</style></head>"
        "<body><h1>Your data from VRM Vault</h1>"
        f"<p>Exported from <strong>{vault}</strong> on {exported}. "
        "Every item says where it came from: <span class='badge'>provided</span> by you, or "
        "<span class='badge observed'>observed</span> by the vault. The same data is in "
        "<code>data.json</code> (described by <code>data.schema.json</code>) and, for tables, "
        "in the <code>.csv</code> files. <code>manifest.json</code> lists every file with its "
        "SHA-256; <code>manifest.jws</code> is the vault's signature over it.</p><nav><ul>"
    ).encode()
    for section in sections:
        yield f"<li><a href='#{section.name}'>{escape(section.title)}</a></li>".encode()
    yield b"</ul></nav>"
    for section in sections:
        badge = "badge observed" if section.provenance == "observed" else "badge"
        fields = list(section.item.model_fields)
        yield (
            f"<section id='{section.name}'><h2>{escape(section.title)} "
            f"<span class='{badge}'>{section.provenance}</span></h2>"
            f"<p class='note'>{escape(section.description)}</p>"
            "<table><thead><tr>"
            + "".join(f"<th scope='col'>{escape(f.replace('_', ' '))}</th>" for f in fields)
            + "</tr></thead><tbody>"
        ).encode()
        rows = 0
        for item in section.rows():
            data = item.model_dump(mode="json")
            yield ("<tr>" + "".join(f"<td>{_html_cell(data.get(f))}</td>" for f in fields)).encode()
            yield b"</tr>\n"
            rows += 1
        if not rows:
            yield f"<tr><td colspan='{len(fields)}' class='note'>None.</td></tr>".encode()
        yield b"</tbody></table></section>"
    yield b"</body></html>\n"


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
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
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
            archive.writestr(_info(MANIFEST), manifest)
            archive.writestr(
                _info(SIGNATURE),
                self.portability.signer.sign(manifest, MANIFEST_TYP).encode() + b"\n",
            )
        yield sink.drain()


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
