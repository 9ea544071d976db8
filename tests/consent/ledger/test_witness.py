"""Witnesses cosign the consent ledger's checkpoints (C2SP tlog-witness, tlog-cosignature).

A witness runs as an auditor would run it: ``vrm witness serve`` in a process of its own, on a
free port, with its own key file and state directory, following the vault's log by its
verifier key. The vault (a real, committed deployment driven through ``vrm``) sends it each
new checkpoint with ``vrm ledger cosign`` (what the worker does on every pass).
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import text

from consent.grants.receipts import receipt_for
from consent.grants.service import Decision, GrantService
from consent.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSignature,
    open_note,
    parse_signed_note,
    sign_checkpoint,
    split_signed_note,
    verifier_key,
    verify_signed_checkpoint,
)
from consent.ledger.cosignature import (
    cosign,
    cosigner_verifier_key,
    parse_cosigner_key,
    verify_quorum,
    with_signatures,
)
from consent.ledger.merkle import EMPTY_ROOT, InMemoryTree, leaf_hash
from tests.consent.factories import make_app as make_vendor_app
from tests.consent.ledger.test_tamper import T0, N, event
from tests.helpers import PASSWORD, sign_in, unique_email
from tests.sequencer import append, run_sequencer
from tests.served import _free_port
from tests.vault.conftest import Deployment
from vault.accounts.models import Role
from vault.signup import sign_up as new_account
from vrm.app import create_app

pytestmark = pytest.mark.migrated  # the database is not the subject: start at the head

START_TIMEOUT = 30.0


# -- a witness in a process of its own ----------------------------------------------------------


@dataclass
class WitnessProcess:
    url: str
    process: subprocess.Popen[bytes]
    output: IO[bytes]

    def log(self) -> str:
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.log()

    def status(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/status", timeout=10)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def add(self, body: str) -> httpx.Response:
        return httpx.post(f"{self.url}/add-checkpoint", content=body.encode(), timeout=10)


def start_witness(
    key: Path, state: Path, *logs: str, name: str = "auditor.example/w1"
) -> WitnessProcess:
    port = _free_port()
    output = (state.parent / f"witness-{port}.log").open("w+b")
    args = [sys.executable, "-m", "vrm.cli", "witness", "serve", "--key", str(key)]
    args += ["--state", str(state), "--name", name, "--port", str(port)]
    for vkey in logs:
        args += ["--log", vkey]
    process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT)
    served = WitnessProcess(f"http://127.0.0.1:{port}", process, output)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the witness exited:\n{served.log()}")
        try:
            if httpx.get(f"{served.url}/status", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            served.stop()
            raise AssertionError(f"the witness did not start:\n{served.log()}")
        time.sleep(0.1)


class Witnessed:
    """A deployment whose ledger one witness process follows."""

    def __init__(self, deployment: Deployment, directory: Path, monkeypatch: pytest.MonkeyPatch):
        self.deployment = deployment
        self.dir = directory
        self.monkeypatch = monkeypatch
        deployment.ok("db", "upgrade")
        self.rt = deployment.runtime()
        self.engine = deployment.engine()
        self.log_vkey = deployment.ok("ledger", "public-key").strip()
        (directory / "vault.pub").write_text(self.log_vkey + "\n", encoding="utf-8")
        self.key = directory / "witness.key"
        self.state = directory / "witness-state"
        self.wvkey = deployment.ok(
            "witness", "key", "--key", str(self.key), "--name", "auditor.example/w1"
        ).strip()
        self.witness = start_witness(self.key, self.state, self.log_vkey)
        self.configure([self.witness.url], quorum=1)

    def configure(self, urls: list[str], quorum: int, vkeys: list[str] | None = None) -> None:
        keys = vkeys or [self.wvkey]
        listed = [
            {"name": f"w{i + 1}", "url": url, "vkey": vkey}
            for i, (url, vkey) in enumerate(zip(urls, keys, strict=True))
        ]
        self.monkeypatch.setenv("VRM_LEDGER_WITNESSES", json.dumps(listed))
        self.monkeypatch.setenv("VRM_LEDGER_WITNESS_QUORUM", str(quorum))
        self.monkeypatch.setenv("VRM_LEDGER_WITNESS_TIMEOUT_SECONDS", "5")

    def restart_witness(self) -> None:
        self.witness.stop()
        self.witness = start_witness(self.key, self.state, self.log_vkey)
        self.configure([self.witness.url], quorum=1)

    def append(self, start: int, stop: int, *, altered: int | None = None) -> None:
        for i in range(start, stop):
            data = event(i)
            if i == altered:
                data["purpose"] = "Share your address with our advertising partners."
            with self.rt.sessions() as session, session.begin():
                assert append(session, data, now=T0 + timedelta(minutes=i)).index == i

    def size(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one())

    def checkpoint(self) -> str:
        return self.deployment.ok("ledger", "checkpoint")

    def cosign(self) -> Result:
        return self.deployment.cli("ledger", "cosign")

    def verify(self, *args: str) -> Result:
        path = self.dir / "export.jsonl"
        self.deployment.ok("ledger", "export", str(path))
        return self.deployment.cli(
            "ledger", "verify", str(path), "--public-key", str(self.dir / "vault.pub"), *args
        )

    def sql(self, statement: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement))

    def wipe(self, *, witness_rows: bool) -> None:
        """Replace the whole stored ledger, signed checkpoints included (and, with
        ``witness_rows``, what the vault knew of its witnesses), as an operator rewriting
        history would."""
        tables = ["ledger_cosignatures", "ledger_checkpoints", "ledger_entries", "ledger_nodes"]
        tables += ["ledger_head"] + (["ledger_witnesses"] if witness_rows else [])
        for table in tables:
            self.sql(f"DELETE FROM {table}")

    def published(self) -> dict[str, Any]:
        email = unique_email("auditor")
        with self.rt.sessions() as session, session.begin():
            new_account(session, self.rt, email, PASSWORD, role=Role.AUDITOR)
        app = create_app(runtime=self.deployment.runtime())  # VRM_LEDGER_WITNESS* as set
        with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
            assert sign_in(client, email).status_code == 303
            answer = client.get("/api/audit/v1/checkpoint")
        result: dict[str, Any] = {"status": answer.status_code, **answer.json()}
        return result


@pytest.fixture
def witnessed(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Witnessed]:
    built = Witnessed(deployment, tmp_path, monkeypatch)
    yield built
    built.witness.stop()


# -- the vault and a witness process --------------------------------------------------------------


def test_a_witness_process_cosigns_a_growing_log_and_the_checkpoint_is_published_with_it(
    witnessed: Witnessed,
) -> None:
    key = parse_cosigner_key(witnessed.wvkey)
    for size in (5, 12, N):
        witnessed.append(witnessed.size(), size)
        witnessed.checkpoint()
        result = witnessed.cosign()
        assert result.exit_code == 0, result.output
        assert f"w1 cosigned size {size}" in result.stdout

        published = witnessed.published()
        assert published["status"] == 200 and published["size"] == size
        assert published["witnesses"] == 1
        cosigned = verify_quorum(published["note"], witnessed.log_vkey, [key], 1)
        assert cosigned.checkpoint.size == size
        assert list(cosigned.witnesses) == ["auditor.example/w1"]
        # What the witness says it holds: this size, and its latest cosigned checkpoint.
        status = witnessed.witness.status()
        assert [(log["origin"], log["size"]) for log in status["logs"]] == [
            (cosigned.checkpoint.origin, size)
        ]
        assert status["alarm_count"] == 0
        origin_hash = hashlib.sha256(cosigned.checkpoint.origin.encode()).hexdigest()
        held = httpx.get(f"{witnessed.witness.url}/{origin_hash}/checkpoint", timeout=10).text
        assert verify_quorum(held, witnessed.log_vkey, [key], 1).checkpoint == cosigned.checkpoint

    # The export carries the cosignature; an auditor requires it.
    ok = witnessed.verify("--witness", witnessed.wvkey, "--quorum", "1")
    assert ok.exit_code == 0, ok.output
    assert "cosigned by witnesses: auditor.example/w1" in ok.stdout
    # Nothing to do once the witness has cosigned the latest checkpoint.
    again = witnessed.cosign()
    assert again.exit_code == 0 and "no witness to ask" in again.stdout


@pytest.mark.parametrize(
    ("new_size", "forget_witness", "alarm", "refusal"),
    [
        (N, False, "fork", "HTTP 422: this tree size was cosigned with another root hash"),
        (N + 5, True, "inconsistent", "HTTP 422: the consistency proof does not verify"),
    ],
    ids=["same-size", "grown-and-resynced"],
)
def test_a_forked_log_re_signed_by_the_vault_is_refused_by_the_witness(
    witnessed: Witnessed, new_size: int, forget_witness: bool, alarm: str, refusal: str
) -> None:
    witnessed.append(0, N)
    witnessed.checkpoint()
    assert witnessed.cosign().exit_code == 0
    cosigned_root = witnessed.witness.status()["logs"][0]["root"]

    # History rewritten (entry 7 says something else) and re-signed with the vault's own key;
    # with forget_witness, what the vault knew of the witness is gone too (it resyncs on 409).
    witnessed.wipe(witness_rows=forget_witness)
    witnessed.append(0, new_size, altered=7)
    note = witnessed.checkpoint()
    assert verify_signed_checkpoint(note, witnessed.log_vkey).size == new_size  # validly signed

    refused = witnessed.cosign()
    assert refused.exit_code == 1
    assert f"w1 did not cosign size {new_size} ({refusal})" in refused.stdout

    status = witnessed.witness.status()
    assert status["logs"][0]["size"] == N and status["logs"][0]["root"] == cosigned_root
    assert status["alarm_count"] == 1 and status["alarms"][0]["kind"] == alarm
    assert "refused" in status["alarms"][0]["detail"]
    assert f"ERROR vrm.witness witness ALARM ({alarm})" in witnessed.witness.log()
    # The rewritten log has no cosignature: an auditor requiring one refuses it.
    assert witnessed.published()["status"] == 404
    failed = witnessed.verify("--witness", witnessed.wvkey)
    assert failed.exit_code == 1
    assert "witnesses: the checkpoint carries cosignatures by 0 of the trusted witnesses" in (
        failed.stdout
    )
    # `vrm witness status` says so too, and exits with 2.
    cli_status = witnessed.deployment.cli(
        "witness", "status", "--key", str(witnessed.key), "--state", str(witnessed.state)
    )
    assert cli_status.exit_code == 2
    assert "ALARM" in cli_status.stdout and alarm in cli_status.stdout


def test_a_rolled_back_log_is_refused_by_the_witness(witnessed: Witnessed) -> None:
    witnessed.append(0, N)
    witnessed.checkpoint()
    assert witnessed.cosign().exit_code == 0

    # The ledger restored to an older state (its first 10 entries), signed anew; the vault's
    # own memory of the witness is gone with it.
    witnessed.wipe(witness_rows=True)
    witnessed.append(0, 10)
    witnessed.checkpoint()

    refused = witnessed.cosign()
    assert refused.exit_code == 1
    assert f"the witness has cosigned a larger tree ({N} entries)" in refused.stdout
    status = witnessed.witness.status()
    assert status["logs"][0]["size"] == N
    assert [a["kind"] for a in status["alarms"]] == ["rollback"]
    assert "ERROR vrm.witness witness ALARM (rollback)" in witnessed.witness.log()


def test_the_witness_state_survives_a_restart(witnessed: Witnessed) -> None:
    witnessed.append(0, 10)
    witnessed.checkpoint()
    assert witnessed.cosign().exit_code == 0
    before = witnessed.witness.status()

    witnessed.restart_witness()
    after = witnessed.witness.status()
    assert after["verifier_key"] == before["verifier_key"] == witnessed.wvkey
    assert after["logs"] == before["logs"]
    # A client that knows nothing asks from 0 and is told the size the witness holds.
    note = parse_signed_note(witnessed.checkpoint())
    answer = witnessed.witness.add("old 0\n\n" + witnessed.checkpoint())
    assert answer.status_code == 409
    assert answer.text == "10\n"
    assert answer.headers["content-type"].startswith("text/x.tlog.size")
    assert note[0].size == 10

    # The vault goes on from there.
    witnessed.append(10, 15)
    witnessed.checkpoint()
    result = witnessed.cosign()
    assert result.exit_code == 0, result.output
    assert witnessed.witness.status()["logs"][0]["size"] == 15


def test_a_witness_that_is_down_never_blocks_the_ledger(witnessed: Witnessed) -> None:
    witnessed.append(0, 5)
    witnessed.witness.stop()
    witnessed.checkpoint()  # signing needs no witness
    down = witnessed.cosign()
    assert down.exit_code == 1
    assert "w1 did not cosign size 5 (no answer (ConnectError))" in down.stdout
    # The worker carries on too (and waits before asking that witness again).
    worker = witnessed.deployment.cli("worker", "--once")
    assert worker.exit_code == 0, worker.output
    witnessed.append(5, 8)
    assert verify_signed_checkpoint(witnessed.checkpoint(), witnessed.log_vkey).size == 8
    # With a quorum of 1, nothing is published until the witness has cosigned.
    assert witnessed.published()["status"] == 404
    witnessed.monkeypatch.setenv("VRM_LEDGER_WITNESS_QUORUM", "0")
    published = witnessed.published()
    assert published["status"] == 200 and published["size"] == 8 and published["witnesses"] == 0


def test_an_export_needs_the_quorum_it_is_verified_against(
    witnessed: Witnessed, tmp_path: Path
) -> None:
    other = witnessed.deployment.ok(
        "witness", "key", "--key", str(tmp_path / "w2.key"), "--name", "auditor.example/w2"
    ).strip()
    witnessed.append(0, 6)
    witnessed.checkpoint()
    assert witnessed.cosign().exit_code == 0

    both = ["--witness", witnessed.wvkey, "--witness", other]
    assert witnessed.verify(*both, "--quorum", "1").exit_code == 0
    two = witnessed.verify(*both, "--quorum", "2")
    assert two.exit_code == 1
    assert "cosignatures by 1 of the trusted witnesses; a quorum of 2 is required" in two.stdout
    only_other = witnessed.verify("--witness", other)
    assert only_other.exit_code == 1
    assert witnessed.verify().exit_code == 0  # no witness required: the log's key suffices


def test_a_receipt_can_be_required_to_carry_a_witness_quorum(
    witnessed: Witnessed, tmp_path: Path
) -> None:
    rt = witnessed.deployment.runtime()  # with VRM_LEDGER_WITNESSES and a quorum of 1
    person = witnessed.deployment.add_individual(rt, unique_email(), full=False)
    with rt.sessions() as session:
        app = make_vendor_app(session)
        grant_id = (
            GrantService(session, rt)
            .decide(person, app, Decision(["email"], "30d"), "service-only")
            .id
        )
        session.commit()
    run_sequencer(rt)  # the grant's event in the tree, as the worker would have done
    key = tmp_path / "vault.pub"

    def verify(receipt: dict[str, Any], *args: str) -> Result:
        path = tmp_path / "receipt.jws"
        path.write_text(receipt["receipt"], encoding="utf-8")
        return witnessed.deployment.cli(
            "ledger", "verify-receipt", str(path), "--public-key", str(key), *args
        )

    with rt.sessions() as session, session.begin():
        early = receipt_for(session, rt, grant_id)  # signs a checkpoint: none is witnessed yet
    assert verify(early).exit_code == 0
    unwitnessed = verify(early, "--witness", witnessed.wvkey)
    assert unwitnessed.exit_code == 1
    assert "the receipt's checkpoint is not witnessed" in unwitnessed.stderr

    assert witnessed.cosign().exit_code == 0
    with rt.sessions() as session, session.begin():
        later = receipt_for(session, rt, grant_id)
    witnessed_ok = verify(later, "--witness", witnessed.wvkey, "--quorum", "1")
    assert witnessed_ok.exit_code == 0, witnessed_ok.output
    other = witnessed.deployment.ok(
        "witness", "key", "--key", str(tmp_path / "w2.key"), "--name", "auditor.example/w2"
    ).strip()
    two = verify(later, "--witness", witnessed.wvkey, "--witness", other, "--quorum", "2")
    assert two.exit_code == 1
    assert "a quorum of 2 is required" in two.stderr


# -- the protocol, on the witness itself --------------------------------------------------

ORIGIN = "vault.example/consent-ledger"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
LOG_VKEY = verifier_key(ORIGIN, LOG_KEY.public_key())


def _tree(n: int, *, altered: int | None = None) -> InMemoryTree:
    return InMemoryTree(
        leaf_hash(b"entry %d%s" % (i, b" forged" if i == altered else b"")) for i in range(n)
    )


def _note(tree: InMemoryTree, size: int, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)), ORIGIN, key)


def _body(old: int, proof: list[bytes], note: str) -> bytes:
    return (
        "".join([f"old {old}\n", *(base64.b64encode(p).decode() + "\n" for p in proof), "\n"])
        + note
    ).encode()


@pytest.fixture
def local_witness(tmp_path: Path) -> Iterator[Any]:
    from consent.ledger.witness import Witness, WitnessState, load_witness_key

    key = load_witness_key(tmp_path / "w.key", "auditor.example/w1")
    state = WitnessState(tmp_path / "state")
    yield Witness(key, [LOG_VKEY], state)
    state.close()


def test_the_witness_answers_each_case_of_the_spec_with_its_status(local_witness: Any) -> None:
    tree = _tree(12)
    w = local_witness
    wkey = parse_cosigner_key(w.key.verifier_key())

    first = w.add_checkpoint(_body(0, [], _note(tree, 5)), now=1_700_000_000)
    assert first.status == 200
    note = with_signatures(_note(tree, 5), [first.body])
    assert verify_quorum(note, LOG_VKEY, [wkey], 1, now=1_700_000_000).witnesses == {
        "auditor.example/w1": 1_700_000_000
    }
    cases = {
        "not a request": (b"hello\n", 400),
        "old above the size": (_body(9, [], _note(tree, 8)), 400),
        "unknown origin": (
            _body(
                5,
                [],
                sign_checkpoint(
                    Checkpoint("other.example/log", 8, tree.root(8)), "other.example/log", LOG_KEY
                ),
            ),
            404,
        ),
        "signed by another key": (_body(5, [], _note(tree, 8, Ed25519PrivateKey.generate())), 403),
        "stale old size": (_body(0, [], _note(tree, 8)), 409),
        "bad proof": (_body(5, [b"\x00" * 32] * 3, _note(tree, 8)), 422),
        "old 0 with a proof, once the witness holds 5": (
            _body(0, [b"\x00" * 32], _note(tree, 8)),
            409,
        ),
    }
    for what, (body, status) in cases.items():
        assert w.add_checkpoint(body).status == status, what
    # The log's signature line on a checkpoint whose root was changed: 403, not ignored.
    root8, other = (base64.b64encode(r).decode() for r in (tree.root(8), EMPTY_ROOT))
    tampered = _note(tree, 8).replace(root8, other)
    assert w.add_checkpoint(_body(5, [], tampered)).status == 403
    # A signed checkpoint smaller than the one cosigned is a rollback: refused, and recorded.
    assert w.add_checkpoint(_body(0, [], _note(_tree(0), 0))).status == 409

    conflict = w.add_checkpoint(_body(0, [], _note(tree, 8)))
    assert (conflict.body, conflict.content_type) == ("5\n", "text/x.tlog.size")
    good = w.add_checkpoint(_body(5, tree.consistency_proof(5, 12), _note(tree, 12)))
    assert good.status == 200
    assert w.state.known(ORIGIN).size == 12
    assert [a["kind"] for a in w.state.alarms()] == ["rollback", "inconsistent"]  # newest first


def test_a_witness_cosignature_is_bound_to_the_checkpoint_and_the_time(local_witness: Any) -> None:
    tree = _tree(3)
    answer = local_witness.add_checkpoint(_body(0, [], _note(tree, 3)), now=1_700_000_123)
    key = parse_cosigner_key(local_witness.key.verifier_key())
    body, lines = split_signed_note(with_signatures(_note(tree, 3), [answer.body]))
    (line,) = [s for s in lines if s.name == key.name]
    assert (
        line.key_id
        == hashlib.sha256(
            key.name.encode() + b"\n\x04" + key.public_key.public_bytes_raw()
        ).digest()[:4]
    )
    assert int.from_bytes(line.signature[:8], "big") == 1_700_000_123
    message = f"cosignature/v1\ntime 1700000123\n{body}".encode()
    key.public_key.verify(line.signature[8:], message)  # raises if not exactly this message
    # Another checkpoint with this cosignature does not verify.
    other = with_signatures(_note(_tree(3, altered=1), 3), [answer.body])
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_quorum(other, LOG_VKEY, [key], 1, now=1_700_000_123)


def test_quorum_counts_distinct_trusted_witnesses_and_ignores_unknown_ones() -> None:
    tree = _tree(4)
    body = Checkpoint(ORIGIN, 4, tree.root(4))
    keys = {n: Ed25519PrivateKey.generate() for n in ("w1.example", "w2.example", "w3.example")}
    vkeys = {n: cosigner_verifier_key(n, k.public_key()) for n, k in keys.items()}
    line = {n: cosign(body, n, k, timestamp=1_700_000_000).line() for n, k in keys.items()}
    note = with_signatures(_note(tree, 4), [line["w1.example"], line["w2.example"]])
    trusted = [vkeys["w1.example"], vkeys["w2.example"], vkeys["w3.example"]]
    assert len(verify_quorum(note, LOG_VKEY, trusted, 2).witnesses) == 2
    with pytest.raises(CheckpointError, match="by 2 of the trusted witnesses; a quorum of 3"):
        verify_quorum(note, LOG_VKEY, trusted, 3)
    # The same witness twice counts once; an unknown witness's line is ignored.
    twice = with_signatures(_note(tree, 4), [line["w1.example"]]) + line["w1.example"]
    with pytest.raises(CheckpointError, match="by 1 of the trusted"):
        verify_quorum(twice + line["w3.example"], LOG_VKEY, trusted[:2], 2)
    # A log key is not a witness key, and a witness key is not a log key.
    with pytest.raises(CheckpointError, match="signature type 0x04"):
        parse_cosigner_key(LOG_VKEY)
    with pytest.raises(CheckpointError):
        open_note(note, vkeys["w1.example"])
    # A cosignature by a trusted witness that does not verify rejects the note, even when
    # another trusted witness's is good.
    good = next(
        sig
        for sig in split_signed_note(_note(tree, 4) + line["w1.example"])[1]
        if sig.name == "w1.example"
    )
    flipped = NoteSignature(
        good.name, good.key_id, good.signature[:-1] + bytes([good.signature[-1] ^ 1])
    )
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_quorum(
            with_signatures(_note(tree, 4), [flipped.line(), line["w2.example"]]),
            LOG_VKEY,
            trusted,
            1,
        )


# -- the cosigned checkpoint served with the tiles ------------------------------------------------


def spec_cosignature(note: str, wvkey: str) -> int:
    """c2sp.org/tlog-cosignature, from the spec alone: the line by the witness key ``wvkey``
    (``name+keyid+base64(0x04 || key)``) verifies over ``cosignature/v1``, ``time <t>`` and the
    checkpoint body; returns its timestamp."""
    name, key_id_hex, key_b64 = wvkey.split("+", 2)
    key_data = base64.b64decode(key_b64)
    assert key_data[0] == 0x04 and len(key_data) == 33
    key_id = hashlib.sha256(name.encode() + b"\n" + key_data).digest()[:4]
    assert key_id.hex() == key_id_hex
    body, _, signatures = note.rpartition("\n\n")
    body += "\n"
    for line in signatures.rstrip("\n").split("\n"):
        signer, blob_b64 = line.removeprefix("\u2014 ").split(" ")
        blob = base64.b64decode(blob_b64)
        if signer == name and blob[:4] == key_id:
            assert len(blob) == 4 + 8 + 64
            timestamp = int.from_bytes(blob[4:12], "big")
            message = f"cosignature/v1\ntime {timestamp}\n{body}".encode()
            Ed25519PublicKey.from_public_bytes(key_data[1:]).verify(blob[12:], message)
            return timestamp
    raise AssertionError(f"no cosignature by {name} on:\n{note}")


def test_the_tiles_checkpoint_carries_the_quorums_cosignatures_and_verify_can_require_them(
    witnessed: Witnessed, tmp_path: Path
) -> None:
    from tests.consent.ledger.test_tiles import LOG, SpecClient, bearer, open_checkpoint
    from tests.consent.ledger.test_tiles_cli import Served, add_auditor, make_token

    size = 300  # > 256: full and partial tiles at level 0, a partial one at level 1
    witnessed.append(0, size)
    witnessed.checkpoint()
    token = make_token(witnessed.deployment, add_auditor(witnessed.deployment))
    headers = bearer(token)
    other = witnessed.deployment.ok(
        "witness", "key", "--key", str(tmp_path / "w2.key"), "--name", "auditor.example/w2"
    ).strip()

    def verify(*args: str) -> Result:
        return witnessed.deployment.cli(
            "ledger", "verify", "--tiles-url", server.url + LOG, "--token", token,
            "--public-key", str(witnessed.dir / "vault.pub"), *args,
        )  # fmt: skip

    with Served(witnessed.deployment.runtime()) as server, httpx.Client(timeout=30) as http:
        # Signed, but not yet cosigned by the quorum of 1: nothing is published, no tile either.
        early = http.get(server.url + LOG + "checkpoint", headers=headers)
        assert early.status_code == 404
        assert "cosigned by a quorum of witnesses" in early.text
        assert http.get(server.url + LOG + "tile/0/000", headers=headers).status_code == 404
        refused = verify("--witness", witnessed.wvkey)
        assert refused.exit_code == 1 and "checkpoint rejected" in refused.output

        assert witnessed.cosign().exit_code == 0
        client = SpecClient(http, server.url + LOG, headers)  # type: ignore[arg-type]
        note = client.get("checkpoint").decode()
        checkpoint = open_checkpoint(note, witnessed.log_vkey)
        assert checkpoint.size == size
        assert len(note.rstrip("\n").rpartition("\n\n")[2].split("\n")) == 2  # vault + witness
        assert abs(spec_cosignature(note, witnessed.wvkey) - time.time()) < 600
        assert client.root(size) == checkpoint.root  # the tiles are the cosigned tree's

        ok = verify("--witness", witnessed.wvkey, "--quorum", "1")
        assert ok.exit_code == 0, ok.output
        assert "cosigned by witnesses: auditor.example/w1" in ok.stdout
        assert f"OK: the log served at {server.url}{LOG} is complete" in ok.stdout
        two = verify("--witness", witnessed.wvkey, "--witness", other, "--quorum", "2")
        assert two.exit_code == 1
        assert "a quorum of 2 is required" in two.stdout
        assert verify("--witness", other).exit_code == 1
        too_many = verify("--witness", witnessed.wvkey, "--quorum", "2")
        assert too_many.exit_code == 1 and "--quorum 2 needs at least 2" in too_many.output

        # The log grows; until the witness cosigns, the cosigned tree stays the published one.
        witnessed.append(size, size + 10)
        witnessed.checkpoint()
        assert (
            open_checkpoint(
                http.get(server.url + LOG + "checkpoint", headers=headers).text, witnessed.log_vkey
            )
            == checkpoint
        )
        grown = f"tile/entries/001.p/{size + 10 - 256}"
        assert http.get(server.url + LOG + grown, headers=headers).status_code == 404
        assert witnessed.cosign().exit_code == 0
        later = http.get(server.url + LOG + "checkpoint", headers=headers).text
        assert open_checkpoint(later, witnessed.log_vkey).size == size + 10
        spec_cosignature(later, witnessed.wvkey)
        assert http.get(server.url + LOG + grown, headers=headers).status_code == 200
        assert verify("--witness", witnessed.wvkey).exit_code == 0
