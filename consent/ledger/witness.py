"""A witness (C2SP tlog-witness) that any auditor can run: it cosigns a log's checkpoints once
it has checked that each extends the last one it cosigned, and refuses (and reports) forks and
rollbacks.

- :class:`WitnessKey`: the witness's Ed25519 key and name, in a key file made on first use;
- :class:`WitnessState`: the latest cosigned checkpoint per log (origin) and the alarms, in a
  SQLite database in the state directory (``witness.db``, written with ``synchronous=FULL``;
  the check of the old size and the update are one ``BEGIN IMMEDIATE`` transaction);
- :func:`add_checkpoint`: the ``add-checkpoint`` rules of the spec, on a request body;
- :func:`make_app`: the HTTP interface (``POST /add-checkpoint``, ``GET /<sha256 of origin
  hex>/checkpoint``, ``GET /status``).

What the witness signs is a ``cosignature/v1`` (:mod:`consent.ledger.cosignature`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from consent.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    VerifierKey,
    open_note,
    parse_checkpoint_body,
    parse_verifier_key,
    split_signed_note,
)
from consent.ledger.cosignature import cosign, cosigner_verifier_key
from consent.ledger.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency
from vault.keys import SigningKeyFile

log = logging.getLogger("vrm.witness")

MAX_BODY_BYTES = 128 * 1024
MAX_PROOF_LINES = 63
MAX_ALARMS_LISTED = 100
NAME_FIELD = "witness_name"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_RE = re.compile(r"old (0|[1-9][0-9]{0,18})")


# -- the key -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """The witness's name (its key name, e.g. ``auditor.example/witness``) and private key."""

    name: str
    private_key: Ed25519PrivateKey
    path: Path

    def verifier_key(self) -> str:
        """What a log operator configures: ``<name>+<key id>+<base64(0x04 || key)>``."""
        return cosigner_verifier_key(self.name, self.private_key.public_key())

    def __repr__(self) -> str:
        return f"WitnessKey(name={self.name!r}, path={self.path})"


def _generate() -> str:
    return base64.b64encode(Ed25519PrivateKey.generate().private_bytes_raw()).decode()


def load_witness_key(path: Path, name: str | None = None) -> WitnessKey:
    """The key in ``path``, made (mode 0600, with ``name``) when the file does not exist.

    A key's name is fixed when it is made; asking for another name later is refused.
    """
    keyfile = SigningKeyFile(path.name, "Ed25519", _generate)
    if not path.exists():
        if not name:
            raise CheckpointError(f"{path} does not exist: give the witness a --name to make it")
        cosigner_verifier_key(name, bytes(32))  # checks the name before any file is made
        keyfile.ensure(path.parent, "operator", {NAME_FIELD: name})
    stored = keyfile.read(path.parent, production=False)
    stored_name = stored.field(NAME_FIELD)
    if not stored_name:
        raise CheckpointError(f"{path} is not a witness key (it names no witness)")
    if name and name != stored_name:
        raise CheckpointError(
            f"{path} is the key of witness {stored_name!r}, not {name!r}: a witness's name is "
            "fixed when its key is made"
        )
    private_key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(stored.key))
    return WitnessKey(stored_name, private_key, path)


# -- state -------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    evidence TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Known:
    """The latest checkpoint the witness cosigned for one log."""

    origin: str
    size: int
    root: bytes
    note: str
    updated_at: str


class WitnessState:
    """The witness's memory, in ``<state dir>/witness.db``: durable before any answer."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "witness.db"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _known(self, origin: str) -> Known | None:
        row = self._conn.execute(
            "SELECT origin, size, root, note, updated_at FROM logs WHERE origin = ?", (origin,)
        ).fetchone()
        return None if row is None else Known(row[0], row[1], bytes(row[2]), row[3], row[4])

    def known(self, origin: str) -> Known | None:
        with self._lock:
            return self._known(origin)

    def logs(self) -> list[Known]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT origin, size, root, note, updated_at FROM logs ORDER BY origin"
            ).fetchall()
        return [Known(r[0], r[1], bytes(r[2]), r[3], r[4]) for r in rows]

    def alarms(self, limit: int = MAX_ALARMS_LISTED) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, at, origin, kind, detail, evidence FROM alarms ORDER BY id DESC "
                "LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("id", "at", "origin", "kind", "detail", "evidence")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def alarm_count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM alarms").fetchone()[0])

    def _alarm(self, origin: str, kind: str, detail: str, evidence: str) -> None:
        self._conn.execute(
            "INSERT INTO alarms (at, origin, kind, detail, evidence) VALUES (?, ?, ?, ?, ?)",
            (_now_text(), origin, kind, detail, evidence),
        )
        log.error("witness ALARM (%s) for log %s: %s", kind, origin, detail)


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- add-checkpoint ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, text body and its content type."""

    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


def _bad(status: int, message: str) -> Answer:
    return Answer(status, message.rstrip("\n") + "\n")


@dataclass(frozen=True, slots=True)
class AddRequest:
    old: int
    proof: list[bytes]
    note: str


def parse_request(body: bytes) -> AddRequest | Answer:
    """The request body: ``old <size>``, proof lines (base64 hashes), a blank line, the note."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _bad(400, "the request body is not UTF-8 text")
    first, sep, rest = text.partition("\n")
    if not sep or not _OLD_RE.fullmatch(first):
        return _bad(400, "the request must start with a line 'old <tree size>'")
    if rest.startswith("\n"):  # no proof lines
        proof_text, sep, note = "", "\n", rest[1:]
    else:
        proof_text, sep, note = rest.partition("\n\n")
    if not sep:
        return _bad(400, "the proof lines must be followed by a blank line and the checkpoint")
    lines = proof_text.split("\n") if proof_text else []
    if len(lines) > MAX_PROOF_LINES:
        return _bad(400, f"a consistency proof has at most {MAX_PROOF_LINES} lines")
    proof = []
    for line in lines:
        try:
            digest = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return _bad(400, "each proof line must be one base64 hash")
        if len(digest) != HASH_SIZE:
            return _bad(400, f"each proof line must be a {HASH_SIZE}-byte hash")
        proof.append(digest)
    return AddRequest(int(first[4:]), proof, note)


class Witness:
    """The witness: its key, the logs it trusts (origin -> verifier keys) and its state."""

    def __init__(self, key: WitnessKey, logs: Iterable[str | VerifierKey], state: WitnessState):
        self.key = key
        self.state = state
        self.logs: dict[str, list[VerifierKey]] = {}
        for vkey in logs:
            parsed = vkey if isinstance(vkey, VerifierKey) else parse_verifier_key(vkey)
            self.logs.setdefault(parsed.name, []).append(parsed)

    def add_checkpoint(self, body: bytes, *, now: int | None = None) -> Answer:
        """The ``add-checkpoint`` rules of c2sp.org/tlog-witness, in the spec's order."""
        parsed = parse_request(body)
        if isinstance(parsed, Answer):
            return parsed
        try:
            text, signatures = split_signed_note(parsed.note)
            checkpoint = parse_checkpoint_body(text)
        except CheckpointError as exc:
            return _bad(400, f"the checkpoint is malformed: {exc}")
        trusted = self.logs.get(checkpoint.origin)
        if not trusted:
            return _bad(404, f"this witness does not follow the log {checkpoint.origin!r}")
        verified: list[str] = []
        for vkey in trusted:
            try:
                open_note(parsed.note, vkey)
            except CheckpointError as exc:
                if any(s.name == vkey.name and s.key_id == vkey.key_id for s in signatures):
                    return _bad(403, f"the log's signature does not verify: {exc}")
                continue
            verified.extend(
                s.line() for s in signatures if (s.name, s.key_id) == (vkey.name, vkey.key_id)
            )
        if not verified:
            return _bad(403, "the checkpoint carries no signature by a key this log is known by")
        if parsed.old > checkpoint.size:
            with self.state._lock:
                known = self.state._known(checkpoint.origin)
                if known is not None and checkpoint.size < known.size:
                    self._rollback(checkpoint, known, parsed.note)
            return _bad(400, "the old size is larger than the checkpoint's")
        if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
            return _bad(422, "a checkpoint of size 0 must have the empty tree's root")
        with self.state._lock:
            conn = self.state._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                answer = self._decide(checkpoint, parsed, verified, now)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return answer

    def _rollback(self, checkpoint: Checkpoint, known: Known, note: str) -> None:
        self.state._alarm(
            checkpoint.origin,
            "rollback",
            f"the log presented a signed checkpoint of size {checkpoint.size}, smaller than "
            f"the size {known.size} this witness cosigned: refused",
            note,
        )

    def _decide(
        self, checkpoint: Checkpoint, request: AddRequest, verified: list[str], now: int | None
    ) -> Answer:
        known = self.state._known(checkpoint.origin)
        known_size = known.size if known is not None else 0
        if known is not None:
            if checkpoint.size < known.size:
                self._rollback(checkpoint, known, request.note)
            elif checkpoint.size == known.size and checkpoint.root != known.root:
                self.state._alarm(
                    checkpoint.origin,
                    "fork",
                    f"the log signed two different trees of size {known.size}: the one this "
                    f"witness cosigned (root {base64.b64encode(known.root).decode()}) and "
                    f"another (root {base64.b64encode(checkpoint.root).decode()}): refused",
                    known.note + "\n" + request.note,
                )
                if request.old == known_size:
                    return _bad(422, "this tree size was cosigned with another root hash")
        if request.old != known_size:
            return Answer(409, f"{known_size}\n", SIZE_CONTENT_TYPE)
        if request.old == 0 and request.proof:
            return _bad(422, "from old size 0 the consistency proof must be empty")
        old_root = known.root if known is not None else EMPTY_ROOT
        if request.old == checkpoint.size:
            if request.proof:
                return _bad(422, "between equal sizes the consistency proof must be empty")
        elif request.old > 0 and not verify_consistency(
            request.old, checkpoint.size, old_root, checkpoint.root, request.proof
        ):
            assert known is not None
            self.state._alarm(
                checkpoint.origin,
                "inconsistent",
                f"the checkpoint of size {checkpoint.size} does not extend the tree of size "
                f"{known.size} this witness cosigned (the consistency proof fails): refused",
                known.note + "\n" + request.note,
            )
            return _bad(422, "the consistency proof does not verify")
        timestamp = now if now is not None else int(time.time())
        line = cosign(checkpoint, self.key.name, self.key.private_key, timestamp=timestamp).line()
        stored = checkpoint.body_text() + "\n" + "".join(dict.fromkeys(verified)) + line
        self.state._conn.execute(
            "INSERT INTO logs (origin, size, root, note, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
            "note = excluded.note, updated_at = excluded.updated_at",
            (checkpoint.origin, checkpoint.size, checkpoint.root, stored, _now_text()),
        )
        log.info("cosigned %s at size %d", checkpoint.origin, checkpoint.size)
        return Answer(200, line)

    def status(self) -> dict[str, Any]:
        """What the witness knows and every alarm it raised (newest first)."""
        return {
            "witness": self.key.name,
            "verifier_key": self.key.verifier_key(),
            "logs": [
                {
                    "origin": k.origin,
                    "trusted": k.origin in self.logs,
                    "size": k.size,
                    "root": base64.b64encode(k.root).decode(),
                    "updated_at": k.updated_at,
                }
                for k in self.state.logs()
            ],
            "followed": sorted(self.logs),
            "alarm_count": self.state.alarm_count(),
            "alarms": self.state.alarms(),
        }


def origin_hash(origin: str) -> str:
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


# -- HTTP ----------------------------------------------------------------------------------------


async def _read_body(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        return None
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(witness: Witness) -> Starlette:
    """The witness's HTTP interface (c2sp.org/tlog-witness), and ``GET /status``."""

    async def add_checkpoint(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return PlainTextResponse(f"the body is larger than {MAX_BODY_BYTES} bytes\n", 413)
        answer = await run_in_threadpool(witness.add_checkpoint, body)
        return Response(answer.body, answer.status, media_type=answer.content_type)

    async def checkpoint(request: Request) -> Response:
        wanted = request.path_params["origin_hash"]
        for known in await run_in_threadpool(witness.state.logs):
            if origin_hash(known.origin) == wanted:
                return PlainTextResponse(known.note)
        return PlainTextResponse("this witness has cosigned no checkpoint of that log\n", 404)

    async def status(request: Request) -> Response:
        report = await run_in_threadpool(witness.status)
        return JSONResponse(report, headers={"cache-control": "no-store"})

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/status", status, methods=["GET"]),
            Route("/{origin_hash:str}/checkpoint", checkpoint, methods=["GET"]),
        ]
    )


def status_text(report: dict[str, Any]) -> str:
    """The status as lines for a person (``vrm witness status``)."""
    out = [f"witness {report['witness']}", f"verifier key {report['verifier_key']}"]
    for entry in report["logs"]:
        out.append(f"log {entry['origin']}: size {entry['size']} root {entry['root']}")
    out.append(f"alarms: {report['alarm_count']}")
    for alarm in report["alarms"]:
        out.append(f"  ALARM {alarm['at']} {alarm['kind']} {alarm['origin']}: {alarm['detail']}")
    return "\n".join(out)


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
