"""The ledger read as a C2SP tlog-tiles log by a client written from the specs alone.

The client below (:class:`SpecClient`) follows c2sp.org/tlog-tiles, c2sp.org/tlog-checkpoint,
c2sp.org/signed-note and RFC 6962 section 2.1, and imports nothing of the project's ledger
code: it verifies the checkpoint's Ed25519 signature with the published verifier key, fetches
hash tiles and entry bundles, recomputes the root from the tiles (higher-level tiles for the
large subtrees) and checks inclusion of entries. The log is seeded through the project's
append path and signed by its checkpoint job, with more than 256 entries, so that level-1
tiles exist.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from consent.ledger.checkpoint import verifier_key
from consent.ledger.jobs import SIGN_CHECKPOINT
from consent.ledger.models import LedgerEntry, LedgerNode
from consent.ledger.service import public_key_text
from consent.ledger.tiles_client import verify_tiles
from tests.helpers import PASSWORD, sign_in, sign_up, unique_email
from tests.sequencer import append, append_events
from vault.accounts.models import Account, AccountStatus, ApiToken, Role
from vault.accounts.tokens import auditor_by_email, issue_token, revoke_token
from vault.errors import InvalidInput, NotFound
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from vrm.app import create_app

LOG = "/api/audit/v1/log/"
SEEDED = 300  # > 256: a full level-0 tile, a partial one, and a partial level-1 tile


# -- a tlog-tiles client from the specs ---------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(entry: bytes) -> bytes:
    return sha256(b"\x00" + entry)


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def index_path(n: int) -> str:
    """tlog-tiles: zero-padded 3-digit path elements, all but the last prefixed by x."""
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH over already-hashed leaves (or subtree roots of equal height)."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node(mth(hashes[:k]), mth(hashes[k:]))


@dataclasses.dataclass
class Checkpoint:
    origin: str
    size: int
    root: bytes


def open_checkpoint(note: str, vkey: str) -> Checkpoint:
    """signed-note + tlog-checkpoint: verify the Ed25519 signature by ``vkey``, parse the body."""
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key_data = base64.b64decode(key_b64)
    assert key_data[0] == 0x01 and len(key_data) == 33  # Ed25519 signature type
    key_id = sha256(name.encode() + b"\n" + key_data)[:4]
    assert key_id.hex() == key_id_hex
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    verified = False
    for line in signatures.rstrip("\n").split("\n"):
        assert line.startswith("\u2014 ")
        signer, blob_b64 = line[2:].split(" ")
        blob = base64.b64decode(blob_b64)
        if signer == name and blob[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(key_data[1:]).verify(blob[4:], text.encode())
            verified = True
    assert verified, "no signature by the published key"
    origin, size, root = text.rstrip("\n").split("\n")[:3]
    return Checkpoint(origin, int(size), base64.b64decode(root))


class SpecClient:
    """Reads a tiled log at ``prefix`` through ``http`` (any httpx client)."""

    def __init__(self, http: TestClient, prefix: str, headers: dict[str, str] | None = None):
        self.http, self.prefix, self.headers = http, prefix, headers or {}
        self.fetched: list[str] = []
        self.cache: dict[str, bytes] = {}

    def get(self, path: str) -> bytes:
        if path not in self.cache:
            response = self.http.get(self.prefix + path, headers=self.headers)
            assert response.status_code == 200, (path, response.status_code, response.text)
            self.fetched.append(path)
            self.cache[path] = response.content
        return self.cache[path]

    def checkpoint(self, vkey: str) -> Checkpoint:
        return open_checkpoint(self.get("checkpoint").decode(), vkey)

    def _tile(self, kind: str, n: int, size: int, level: int) -> bytes:
        """Tile n of a level (kind "0".."63" or "entries"), full or partial as ``size`` needs."""
        count = size // 256**level
        width = count - n * 256 if (n + 1) * 256 > count else 256
        assert width > 0
        suffix = "" if width == 256 else f".p/{width}"
        return self.get(f"tile/{kind}/{index_path(n)}{suffix}")

    def hash_at(self, level: int, i: int, size: int) -> bytes:
        """The i-th hash at tile level ``level``: MTH of entries [i * 256**l, (i+1) * 256**l)."""
        tile = self._tile(str(level), i // 256, size, level)
        at = (i % 256) * 32
        return tile[at : at + 32]

    def subtree(self, height: int, index: int, size: int) -> bytes:
        """MTH of the perfect subtree of ``height`` at ``index``, from the highest tile level
        whose hashes make it up."""
        level, rest = divmod(height, 8)
        first = index << rest
        return mth([self.hash_at(level, first + j, size) for j in range(1 << rest)])

    def range_hash(self, start: int, end: int, size: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC 6962 recursion produces."""
        n = end - start
        if n & (n - 1) == 0:
            return self.subtree(n.bit_length() - 1, start >> (n.bit_length() - 1), size)
        k = 1 << ((n - 1).bit_length() - 1)
        return node(self.range_hash(start, start + k, size), self.range_hash(start + k, end, size))

    def root(self, size: int) -> bytes:
        return self.range_hash(0, size, size)

    def entries(self, size: int) -> list[bytes]:
        out: list[bytes] = []
        for n in range((size + 255) // 256):
            data = self._tile("entries", n, size, 0)
            at = 0
            while at < len(data):
                length = int.from_bytes(data[at : at + 2], "big")
                out.append(data[at + 2 : at + 2 + length])
                at += 2 + length
        return out

    def inclusion_path(self, m: int, start: int, end: int, size: int) -> list[bytes]:
        """RFC 6962 2.1.1 PATH(m, D[start:end])."""
        n = end - start
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            inner, sibling = self.inclusion_path(m, start, start + k, size), (start + k, end)
        else:
            inner, sibling = self.inclusion_path(m - k, start + k, end, size), (start, start + k)
        return [*inner, self.range_hash(*sibling, size)]


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2: the root an inclusion proof leads to."""
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


# -- the log under test -------------------------------------------------------------------------


def seed(db: Session, rt: Runtime, count: int) -> None:
    """``count`` events through the project's append path, then its checkpoint job."""
    append_events(db, count)
    assert SIGN_CHECKPOINT.run(db, rt) is not None
    db.commit()


def published_key(http: TestClient, headers: dict[str, str] | None = None) -> str:
    response = http.get("/api/audit/v1/public-key", headers=headers or {})
    assert response.status_code == 200, response.text
    return str(response.json()["verifier_key"])


def make_auditor(db: Session, rt: Runtime) -> tuple[Account, str]:
    email = unique_email("auditor")
    account = new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
    db.commit()
    return account, email


@pytest.fixture
def auditor(client: TestClient, db: Session, rt: Runtime) -> TestClient:
    """``client``, signed in as a privacy auditor."""
    _, email = make_auditor(db, rt)
    assert sign_in(client, email).status_code == 303
    return client


@pytest.fixture
def token(db: Session, rt: Runtime) -> Iterator[str]:
    account, _ = make_auditor(db, rt)
    issued = issue_token(db, rt, account, label="nightly check", days=30)
    db.commit()
    yield issued.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- reading and verifying the log --------------------------------------------------------------


def test_a_spec_client_verifies_the_tiled_log_root_and_inclusion(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SEEDED)
    log = SpecClient(auditor, LOG)

    checkpoint = log.checkpoint(published_key(auditor))

    assert checkpoint.size == SEEDED
    assert checkpoint.origin == published_key(auditor).split("+")[0]
    assert log.root(checkpoint.size) == checkpoint.root
    # The 256-entry subtree came from the level-1 tile, not from the 256 leaf hashes.
    assert "tile/1/000.p/1" in log.fetched
    assert "tile/0/000" not in log.fetched
    entries = log.entries(checkpoint.size)
    assert len(entries) == SEEDED
    for index in (0, 1, 255, 256, 299):
        event = json.loads(entries[index])
        assert event["index"] == index
        assert event["subject"] == f"p-{index:032x}"
        assert leaf(entries[index]) == log.hash_at(0, index, checkpoint.size)
        path = log.inclusion_path(index, 0, checkpoint.size, checkpoint.size)
        assert root_from_inclusion(leaf(entries[index]), index, checkpoint.size, path) == (
            checkpoint.root
        )
    assert mth([leaf(e) for e in entries]) == checkpoint.root


def test_full_tiles_are_256_hashes_and_the_level_above_holds_their_root(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SEEDED)

    full = auditor.get(LOG + "tile/0/000")
    partial = auditor.get(LOG + "tile/0/001.p/44")
    above = auditor.get(LOG + "tile/1/000.p/1")
    bundle = auditor.get(LOG + "tile/entries/001.p/44")

    assert [r.status_code for r in (full, partial, above, bundle)] == [200] * 4
    assert len(full.content) == 8192
    assert len(partial.content) == 44 * 32
    tile_hashes = [full.content[i : i + 32] for i in range(0, 8192, 32)]
    assert above.content == mth(tile_hashes)
    first_of_partial = bundle.content[2 : 2 + int.from_bytes(bundle.content[:2], "big")]
    assert json.loads(first_of_partial)["index"] == 256
    assert partial.content[:32] == leaf(first_of_partial)
    for response in (full, partial, above, bundle):
        assert response.headers["content-type"] == "application/octet-stream"
    assert full.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert partial.headers["cache-control"] == "private, max-age=60"
    checkpoint = auditor.get(LOG + "checkpoint")
    assert checkpoint.headers["content-type"] == "text/plain; charset=utf-8"
    assert checkpoint.headers["cache-control"] == "private, max-age=5"


def test_tiles_beyond_the_signed_checkpoint_are_404(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SEEDED)
    for _ in range(20):  # appended, not yet in a checkpoint: 320 entries stored, 300 signed
        append(db, {"event_type": "vendor.registered", "vendor_id": None, "subject": None})
    db.commit()

    assert auditor.get(LOG + "tile/0/001.p/44").status_code == 200
    for path in (
        "tile/0/001.p/45",  # wider than the signed tree's partial tile
        "tile/0/001",  # the full tile the stored (unsigned) entries would nearly make
        "tile/entries/001.p/64",
        "tile/0/002.p/1",
        "tile/1/000",
        "tile/2/000.p/1",  # the signed tree has no hash at level 2
        "tile/0/x001/000",
    ):
        response = auditor.get(LOG + path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_an_earlier_checkpoints_partial_tiles_stay_served(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, 10)
    key = published_key(auditor)
    first = SpecClient(auditor, LOG).checkpoint(key)
    seed(db, rt, 5)

    log = SpecClient(auditor, LOG)
    assert log.checkpoint(key).size == 15
    # A client still holding the checkpoint of size 10 rebuilds its root from the tiles.
    assert log.root(first.size) == first.root
    assert "tile/0/000.p/10" in log.fetched


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/0.p/20",  # not zero-padded
        "tile/0/x000/000.p/20",  # a leading zero group
        "tile/00/000.p/20",  # the level with a leading zero
        "tile/0/000.p/020",  # the width with a leading zero
        "tile/0/000.p/20/",
        "tile/0/000/.p/20",
        "tile/0/y000.p/20",
        "tile/data/000.p/20",  # the Go checksum database's name for bundles, not this spec's
        "tile/entries/000.p",
        "tile/0/000.p/0",  # widths are 1 to 255
        "tile/64/000.p/1",  # levels are 0 to 63
    ],
)
def test_paths_that_are_not_the_specs_spelling_are_404(
    auditor: TestClient, db: Session, rt: Runtime, path: str
) -> None:
    seed(db, rt, 20)
    assert auditor.get(LOG + "tile/0/000.p/20").status_code == 200  # the spec's spelling
    response = auditor.get(LOG + path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_large_tile_indexes_use_the_x_groups(auditor: TestClient) -> None:
    assert index_path(1234067) == "x001/x234/067"
    response = auditor.get(LOG + "tile/0/x001/x234/067")
    assert response.status_code == 404  # well formed, beyond the log
    assert response.json()["detail"] == "The signed tree has no such tile (yet)."


def test_no_checkpoint_yet_means_no_checkpoint_and_no_tiles(auditor: TestClient) -> None:
    assert auditor.get(LOG + "checkpoint").status_code == 404
    assert auditor.get(LOG + "tile/0/000.p/1").status_code == 404


def test_a_tile_whose_stored_rows_were_deleted_says_the_ledger_is_damaged(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SMALL)
    db.execute(delete(LedgerEntry).where(LedgerEntry.index == 1))
    db.commit()

    response = auditor.get(LOG + "tile/0/000.p/3")

    assert response.status_code == 500
    assert response.json()["error"] == "ledger_damaged"


# -- who may read -------------------------------------------------------------------------------

SMALL = 3
READS = ["checkpoint", "tile/0/000.p/3", "tile/entries/000.p/3"]


def test_anonymous_readers_get_401(client: TestClient, db: Session, rt: Runtime) -> None:
    seed(db, rt, SMALL)
    for path in READS:
        response = client.get(LOG + path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "not_authenticated"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_individuals_get_403(client: TestClient, db: Session, rt: Runtime) -> None:
    seed(db, rt, SMALL)
    sign_up(client)
    for path in READS:
        assert client.get(LOG + path).status_code == 403, path


def test_an_auditor_token_reads_tiles_and_the_audit_api(
    client: TestClient, db: Session, rt: Runtime, token: str
) -> None:
    seed(db, rt, SMALL)
    log = SpecClient(client, LOG, bearer(token))

    checkpoint = log.checkpoint(published_key(client, bearer(token)))

    assert log.root(checkpoint.size) == checkpoint.root
    proof = client.get(
        "/api/audit/v1/proofs/inclusion", params={"index": 1, "size": 3}, headers=bearer(token)
    )
    assert proof.status_code == 200
    assert base64.b64decode(proof.json()["root"]) == checkpoint.root


def test_a_revoked_token_is_refused_at_once(
    client: TestClient, db: Session, rt: Runtime, token: str
) -> None:
    seed(db, rt, SMALL)
    assert client.get(LOG + "tile/0/000.p/3", headers=bearer(token)).status_code == 200
    token_id = db.scalars(select(ApiToken.id)).one()
    assert revoke_token(db, token_id) is True
    db.commit()

    for path in (LOG + "tile/0/000.p/3", LOG + "checkpoint", "/api/audit/v1/entries"):
        response = client.get(path, headers=bearer(token))
        assert response.status_code == 401, path
        assert response.json()["detail"] == "This API token is unknown, expired or revoked."
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_bad_token_is_refused_even_beside_an_auditor_session(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SMALL)
    assert auditor.get(LOG + "checkpoint").status_code == 200
    for header in ("Bearer vrm_at_not-a-token", "Bearer ", "Basic YXVkaXRvcjpwdw=="):
        response = auditor.get(LOG + "checkpoint", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_a_disabled_auditors_token_is_refused(client: TestClient, db: Session, rt: Runtime) -> None:
    seed(db, rt, SMALL)
    account, _ = make_auditor(db, rt)
    issued = issue_token(db, rt, account, label="ci", days=1)
    db.commit()
    assert client.get(LOG + "checkpoint", headers=bearer(issued.token)).status_code == 200
    db.execute(
        update(Account).where(Account.id == account.id).values(status=AccountStatus.DISABLED)
    )
    db.commit()
    assert client.get(LOG + "checkpoint", headers=bearer(issued.token)).status_code == 401


def test_the_public_setting_opens_tiles_and_checkpoint_only(db: Session, rt: Runtime) -> None:
    seed(db, rt, SMALL)
    public_rt = dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"ledger_public": True})
    )
    with TestClient(create_app(runtime=public_rt), follow_redirects=False) as anyone:
        log = SpecClient(anyone, LOG)
        checkpoint = log.checkpoint(public_key_text(rt))  # the key, as published out of band
        assert log.root(checkpoint.size) == checkpoint.root
        partial = anyone.get(LOG + "tile/0/000.p/3")
        assert partial.headers["cache-control"] == "public, max-age=60"
        assert anyone.get(LOG + "checkpoint").headers["cache-control"] == "public, max-age=5"
        # The rest of the audit API stays for auditors.
        for path in (
            "/api/audit/v1/entries",
            "/api/audit/v1/checkpoint",
            "/api/audit/v1/public-key",
        ):
            assert anyone.get(path).status_code == 401, path


def test_a_token_for_an_unknown_email_or_a_non_auditor_is_not_made(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    with pytest.raises(NotFound):
        auditor_by_email(db, rt, unique_email("nobody"))
    email = sign_up(client)
    with pytest.raises(NotFound):
        auditor_by_email(db, rt, email)
    account, _ = make_auditor(db, rt)
    with pytest.raises(InvalidInput):
        issue_token(db, rt, account, label="", days=30)
    with pytest.raises(InvalidInput):
        issue_token(db, rt, account, label="x", days=0)


# -- the project's own tiles verifier (`vrm ledger verify --tiles-url`) ------------------------


def test_the_tiles_verifier_finds_a_higher_tile_that_lies(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SEEDED)
    assert verify_tiles(auditor, LOG, public_key_text(rt)).ok
    # The entries and the root stay right; only the level-1 tile a client would use is wrong.
    db.execute(update(LedgerNode).where(LedgerNode.level == 8).values(hash=b"\x07" * 32))
    db.commit()

    report = verify_tiles(auditor, LOG, public_key_text(rt))

    assert not report.ok
    assert report.problems == [
        "tile/1/000.p/1 does not hold the hashes of the level 0 tiles below it "
        "(subtrees of height 8 from entry 0)"
    ]


def test_the_tiles_verifier_refuses_a_checkpoint_signed_by_another_key(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    seed(db, rt, SMALL)
    other = Ed25519PrivateKey.generate().public_key()
    name = public_key_text(rt).split("+", 1)[0]

    report = verify_tiles(auditor, LOG, verifier_key(name, other))

    assert not report.ok
    assert report.problems[0].startswith("checkpoint rejected: the note is not signed by")
