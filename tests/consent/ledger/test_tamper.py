"""Tampering with the stored ledger is caught by `vrm ledger verify` and through the audit API.

Each test builds a real, committed deployment (SQLite file or PostgreSQL), appends 20 events,
keeps the verifier key from `vrm ledger public-key` in a file as an auditor would, and checks
that an untouched export verifies. Then it changes the stored rows with plain SQL, as someone
with write access to the database could, and re-exports:

- altering an entry (index 7), removing a row (index 5), inserting a forged row at index 9
  (the later rows shifted up) and swapping two entries (3 and 4) all fail verification, with
  and without per-entry proofs; the first bad index is reported wherever the format can tell;
- the same tampering is caught by an auditor who reads entries and inclusion proofs from the
  audit API and checks them against the signed checkpoint;
- an earlier checkpoint kept by the auditor (``--previous-checkpoint``) accepts a ledger that
  only grew, and refuses a history rewritten below its size, even one the vault re-signed.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from consent.ledger.checkpoint import verify_signed_checkpoint
from consent.ledger.merkle import canonical_json, leaf_hash, verify_inclusion
from tests.helpers import PASSWORD, sign_in, unique_email
from tests.sequencer import append
from tests.vault.conftest import Deployment
from vault.accounts.models import Role
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from vrm.app import create_app

pytestmark = pytest.mark.migrated  # the database is not the subject: start at the head

N = 20
API = "/api/audit/v1"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
VENDORS = [str(uuid.UUID(int=0xA11CE + v)) for v in range(3)]
KINDS = ["grant.given", "grant.narrowed", "grant.extended", "grant.revoked"]
FORGED_PURPOSE = "Share your address with our advertising partners."
MISMATCH = (
    "the entries do not hash to the checkpoint's root: an entry was altered, inserted, "
    "removed or reordered"
)


def event(i: int) -> dict[str, Any]:
    return {
        "event_type": KINDS[i % len(KINDS)],
        "vendor_id": VENDORS[i % len(VENDORS)],
        "subject": f"p-{i:032x}",
        "grant_id": str(uuid.UUID(int=i + 1)),
        "fields": ["email", "address"][: 1 + i % 2],
        "purpose": "Deliver your orders to your door.",
        "agreement_id": "service-only",
        "consent_text_hash": None,
    }


class Ledger:
    """One deployment with a ledger, the auditor's key file, and SQL access to its rows."""

    def __init__(self, deployment: Deployment, directory: Path) -> None:
        self.deployment = deployment
        self.dir = directory
        self.rt: Runtime = deployment.runtime()
        self.engine: Engine = deployment.engine()
        self.key = directory / "vault.pub"

    def append(self, start: int, stop: int, *, altered: int | None = None) -> None:
        """Append events ``start .. stop - 1``, one committed transaction each; the times are
        fixed, so replaying the same events gives the same entries."""
        for i in range(start, stop):
            data = event(i)
            if i == altered:
                data["purpose"] = FORGED_PURPOSE
            with self.rt.sessions() as session, session.begin():
                assert append(session, data, now=T0 + timedelta(minutes=i)).index == i

    def export(self, name: str = "export.jsonl", *, proofs: bool = False) -> Path:
        path = self.dir / name
        args = ["ledger", "export", str(path), *(["--with-proofs"] if proofs else [])]
        result = self.deployment.cli(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return path

    def verify(self, export: Path, previous: Path | None = None) -> Result:
        args = ["ledger", "verify", str(export), "--public-key", str(self.key)]
        if previous is not None:
            args += ["--previous-checkpoint", str(previous)]
        return self.deployment.cli(*args)

    def checkpoint(self, name: str) -> Path:
        """Sign (if the ledger grew) and keep the latest checkpoint, as an auditor would."""
        path = self.dir / name
        path.write_text(self.deployment.ok("ledger", "checkpoint"), encoding="utf-8")
        return path

    def sql(self, statement: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement), params)

    def entry(self, index: int) -> bytes:
        with self.engine.connect() as conn:
            return bytes(
                conn.execute(
                    text('SELECT entry FROM ledger_entries WHERE "index" = :i'), {"i": index}
                ).scalar_one()
            )


@pytest.fixture
def ledger(deployment: Deployment, tmp_path: Path) -> Ledger:
    """20 committed events, the verifier key in a file, and a first export that verifies."""
    deployment.ok("db", "upgrade")
    built = Ledger(deployment, tmp_path)
    built.append(0, N)
    built.key.write_text(deployment.ok("ledger", "public-key"), encoding="utf-8")
    for proofs in (False, True):
        result = built.verify(built.export(proofs=proofs))
        assert result.exit_code == 0, result.output
    return built


def report(result: Result) -> tuple[list[str], int | None]:
    """The problems `vrm ledger verify` listed, and the first bad index it named (if any)."""
    problems = [line[4:] for line in result.stdout.splitlines() if line.startswith("  - ")]
    found = re.search(r"^first bad index: (\d+)$", result.stdout, re.MULTILINE)
    return problems, int(found.group(1)) if found else None


def verify_both(ledger: Ledger) -> dict[bool, tuple[list[str], int | None]]:
    """Export without and with proofs; both must fail. Returns the two reports by ``proofs``."""
    reports = {}
    for proofs in (False, True):
        result = ledger.verify(ledger.export(f"proofs-{proofs}.jsonl", proofs=proofs))
        assert result.exit_code == 1, result.output
        assert "FAILED:" in result.stdout
        assert "OK:" not in result.stdout
        reports[proofs] = report(result)
    return reports


# -- the audit API, used as an auditor's script would ---------------------------------------


@pytest.fixture
def auditor(ledger: Ledger) -> Iterator[TestClient]:
    """A signed-in auditor's client on the deployment's app (a committed auditor account)."""
    email = unique_email("auditor")
    with ledger.rt.sessions() as session, session.begin():
        new_account(session, ledger.rt, email, PASSWORD, role=Role.AUDITOR)
    app = create_app(runtime=ledger.deployment.runtime())
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        assert sign_in(client, email).status_code == 303
        yield client


def audit_through_api(client: TestClient, vkey: str) -> dict[int, str]:
    """Check every entry the API serves against the signed checkpoint, trusting only ``vkey``
    (the key file, not the API's copy) and recomputing each leaf hash from the entry itself.
    Returns what is wrong, by index."""
    note = client.get(f"{API}/checkpoint").json()["note"]
    checkpoint = verify_signed_checkpoint(note, vkey)
    size = checkpoint.size
    served = client.get(f"{API}/entries", params={"start": 0, "end": size})
    assert served.status_code == 200, served.text
    entries = {e["index"]: e["entry"] for e in served.json()["entries"]}
    problems: dict[int, str] = {}
    for index in range(size):
        if index not in entries:
            problems[index] = "missing"
            continue
        answer = client.get(f"{API}/proofs/inclusion", params={"index": index, "size": size})
        if answer.status_code != 200:
            problems[index] = f"no proof: HTTP {answer.status_code} {answer.json()['detail']}"
            continue
        proof = [base64.b64decode(p) for p in answer.json()["proof"]]
        leaf = leaf_hash(canonical_json(entries[index]))
        if not verify_inclusion(leaf, index, size, proof, checkpoint.root):
            problems[index] = "not in the signed tree"
    return problems


def test_an_untouched_ledger_verifies_by_command_and_through_the_api(
    ledger: Ledger, auditor: TestClient
) -> None:
    result = ledger.verify(ledger.export(proofs=True))
    assert result.exit_code == 0
    assert f"checkpoint: {N} entries" in result.stdout
    assert f"entries read: {N}" in result.stdout
    assert "OK: the export is complete, unaltered and signed by the trusted key." in result.stdout
    assert audit_through_api(auditor, ledger.key.read_text().strip()) == {}
    served_key = auditor.get(f"{API}/public-key").json()["verifier_key"]
    assert served_key == ledger.key.read_text().strip()


# -- (a) an entry altered ---------------------------------------------------------------------


def test_an_altered_entry_is_caught_and_pinpointed_with_proofs(
    ledger: Ledger, auditor: TestClient
) -> None:
    original = ledger.entry(7)
    changed = json.loads(original)
    changed["purpose"] = FORGED_PURPOSE
    ledger.sql('UPDATE ledger_entries SET entry = :e WHERE "index" = 7', e=canonical_json(changed))

    reports = verify_both(ledger)

    # Without proofs the change shows only as a root mismatch: no index can be named.
    assert reports[False] == ([MISMATCH], None)
    # With proofs (taken from the signed tree, not the altered bytes) only entry 7 fails.
    problems, first_bad = reports[True]
    assert first_bad == 7
    assert problems[0] == "entry 7 is not in the signed tree: its inclusion proof fails"
    assert problems[1:] == [MISMATCH]
    assert audit_through_api(auditor, ledger.key.read_text().strip()) == {
        7: "not in the signed tree"
    }


# -- (b) a row removed -------------------------------------------------------------------------


def test_a_removed_row_is_caught_as_a_missing_index(ledger: Ledger, auditor: TestClient) -> None:
    ledger.sql('DELETE FROM ledger_entries WHERE "index" = 5')

    export = ledger.dir / "removed.jsonl"
    exported = ledger.deployment.cli("ledger", "export", str(export), "--with-proofs")
    assert exported.exit_code == 0
    assert (
        "warning: the checkpoint covers 20 entries but 19 are stored, the first missing "
        "being index 5; the export will not verify" in exported.stderr
    )
    # Entry 4's proof needs entry 5's leaf hash, which went with the row: no proofs at all.
    assert "warning: proofs need every stored entry; the export has none" in exported.stderr

    for proofs in (False, True):
        result = ledger.verify(ledger.export(f"removed-{proofs}.jsonl", proofs=proofs))
        assert result.exit_code == 1
        assert report(result) == (
            ["line 7: expected index 5, found 6 (index 5 is missing or out of order)"],
            5,
        )
    problems = audit_through_api(auditor, ledger.key.read_text().strip())
    assert problems == {
        4: "no proof: HTTP 500 The stored ledger cannot give this proof "
        "(no stored subtree at level 0, index 5): its storage was damaged or altered.",
        5: "missing",
    }


# -- (c) a forged row inserted -----------------------------------------------------------------


def test_an_inserted_forged_row_is_caught(ledger: Ledger, auditor: TestClient) -> None:
    forged = json.loads(ledger.entry(9))
    forged.update(purpose=FORGED_PURPOSE, fields=["address", "birthdate"])
    forged_bytes = canonical_json(forged)
    # Make room at 9 without ever holding two rows with one primary key: move the tail far
    # up, then back down to one above where it was.
    ledger.sql('UPDATE ledger_entries SET "index" = "index" + 1000000 WHERE "index" >= 9')
    ledger.sql('UPDATE ledger_entries SET "index" = "index" - 999999 WHERE "index" >= 1000000')
    # A careful forger: the row's own leaf hash matches its entry.
    ledger.sql(
        'INSERT INTO ledger_entries ("index", entry, leaf_hash, event_type, vendor_id, subject,'
        " occurred_at) SELECT 9, :entry, :leaf, event_type, vendor_id, subject, occurred_at"
        ' FROM ledger_entries WHERE "index" = 10',
        entry=forged_bytes,
        leaf=leaf_hash(forged_bytes),
    )

    reports = verify_both(ledger)

    # The signed size is still 20: the export has entries 0..19, the tail shifted by one.
    assert reports[False] == ([MISMATCH], None)
    problems, first_bad = reports[True]
    # Entry 8's proof starts with its neighbour's leaf hash, which the forged row replaced,
    # so 8 fails with 9 and every shifted entry; 0..7 still prove.
    assert first_bad == 8
    assert problems[:-1] == [
        f"entry {i} is not in the signed tree: its inclusion proof fails" for i in range(8, N)
    ]
    assert problems[-1] == MISMATCH
    api = audit_through_api(auditor, ledger.key.read_text().strip())
    assert api == dict.fromkeys(range(8, N), "not in the signed tree")


# -- (d) two entries swapped -------------------------------------------------------------------


def test_reordered_entries_are_caught_and_pinpointed_with_proofs(
    ledger: Ledger, auditor: TestClient
) -> None:
    third, fourth = ledger.entry(3), ledger.entry(4)
    ledger.sql('UPDATE ledger_entries SET entry = :e WHERE "index" = 3', e=fourth)
    ledger.sql('UPDATE ledger_entries SET entry = :e WHERE "index" = 4', e=third)

    reports = verify_both(ledger)

    assert reports[False] == ([MISMATCH], None)
    assert reports[True] == (
        [
            "entry 3 is not in the signed tree: its inclusion proof fails",
            "entry 4 is not in the signed tree: its inclusion proof fails",
            MISMATCH,
        ],
        3,
    )
    assert audit_through_api(auditor, ledger.key.read_text().strip()) == {
        3: "not in the signed tree",
        4: "not in the signed tree",
    }


# -- an earlier checkpoint kept by the auditor -------------------------------------------------


def test_a_ledger_that_only_grew_verifies_against_an_earlier_checkpoint(ledger: Ledger) -> None:
    old = ledger.checkpoint("old.note")
    ledger.append(N, N + 7)

    for proofs in (False, True):
        result = ledger.verify(ledger.export(f"grown-{proofs}.jsonl", proofs=proofs), old)
        assert result.exit_code == 0, result.output
        assert f"checkpoint: {N + 7} entries" in result.stdout
        assert f"previous checkpoint: {N} entries" in result.stdout
        assert "OK:" in result.stdout


def _wipe(ledger: Ledger, *, checkpoints: bool) -> None:
    tables = ["ledger_entries", "ledger_nodes", "ledger_head"]
    for table in tables + (["ledger_checkpoints"] if checkpoints else []):
        ledger.sql(f"DELETE FROM {table}")


@pytest.mark.parametrize(
    ("new_size", "message"),
    [
        (
            N + 5,
            f"inconsistent with previous checkpoint (size {N}): the log signed two different "
            "histories",
        ),
        (
            N - 5,
            f"the previous checkpoint has {N} entries, more than the {N - 5} of this one: "
            "the log shrank",
        ),
    ],
    ids=["longer", "shorter"],
)
def test_a_rewritten_history_the_vault_re_signed_fails_against_the_earlier_checkpoint(
    ledger: Ledger, new_size: int, message: str
) -> None:
    old = ledger.checkpoint("old.note")
    # Everything, signed checkpoints included, replaced by a history in which entry 7 says
    # something else; the vault then signs the rewritten ledger as if it were the first.
    _wipe(ledger, checkpoints=True)
    ledger.append(0, new_size, altered=7)

    for proofs in (False, True):
        export = ledger.export(f"rewritten-{proofs}.jsonl", proofs=proofs)
        alone = ledger.verify(export)
        assert alone.exit_code == 0, alone.output  # a consistent, validly signed log ...
        result = ledger.verify(export, old)  # ... that is not the one signed before
        assert result.exit_code == 1, result.output
        assert report(result) == ([message], None)


def test_an_entry_altered_below_an_earlier_checkpoint_fails_after_the_ledger_grew(
    ledger: Ledger,
) -> None:
    old = ledger.checkpoint("old.note")
    changed = json.loads(ledger.entry(7))
    changed["purpose"] = FORGED_PURPOSE
    ledger.sql('UPDATE ledger_entries SET entry = :e WHERE "index" = 7', e=canonical_json(changed))
    ledger.append(N, N + 5)

    without = ledger.verify(ledger.export("grown.jsonl"), old)
    with_proofs = ledger.verify(ledger.export("grown-proofs.jsonl", proofs=True), old)

    unsigned = f"inconsistent with previous checkpoint (size {N}): the export's first entries are "
    unsigned += "not the ones it signed"
    assert without.exit_code == with_proofs.exit_code == 1
    assert report(without) == ([MISMATCH, unsigned], None)
    assert report(with_proofs) == (
        ["entry 7 is not in the signed tree: its inclusion proof fails", MISMATCH, unsigned],
        7,
    )


def test_the_vault_refuses_to_sign_a_stored_tree_rewritten_under_its_last_checkpoint(
    ledger: Ledger,
) -> None:
    # The rows of the tree are rewritten (entry 7 altered, hashes recomputed) and grown, but
    # the signed checkpoints are left: the next checkpoint would contradict the last one.
    _wipe(ledger, checkpoints=False)
    ledger.append(0, N + 5, altered=7)

    refused = ledger.deployment.cli("ledger", "checkpoint")
    assert refused.exit_code == 1
    assert (
        f"error: the stored tree at size {N + 5} is not consistent with checkpoint {N}; "
        "refusing to sign: the stored ledger was altered" in refused.stderr
    )

    # The worker says so on every pass but keeps delivering webhooks and ending grants.
    worker = ledger.deployment.cli("worker", "--once")
    assert worker.exit_code == 0, worker.output
    assert f"is not consistent with checkpoint {N}; refusing to sign" in worker.stderr

    path = ledger.dir / "refused.jsonl"
    exported = ledger.deployment.cli("ledger", "export", str(path))
    assert exported.exit_code == 0, exported.output
    assert "exporting under the last signed checkpoint" in exported.stderr
    assert f"wrote checkpoint ({N} entries) and {N} entries" in exported.stdout
    result = ledger.verify(path)
    assert result.exit_code == 1
    assert report(result) == ([MISMATCH], None)
