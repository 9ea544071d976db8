"""The log's origin is fixed when its key is made, and a signer whose settings disagree refuses.

The failure this guards against: ``make run PORT=8200`` gives the server
``VRM_BASE_URL=http://127.0.0.1:8200``, while a ``vrm worker`` or ``vrm ledger checkpoint``
started in another shell has the default ``http://127.0.0.1:8000``. The origin line, the
signed-note key name and the key id all came from each process's settings, so the worker
signed checkpoints no key the audit API published could verify. Each test here is a real,
committed deployment driven through ``vrm`` as an operator would.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from consent.ledger.checkpoint import verify_signed_checkpoint
from consent.ledger.models import LedgerCheckpoint
from consent.ledger.service import (
    KEY,
    LOG_ORIGIN,
    LedgerOriginMismatch,
    ledger_key,
    origin,
    public_key_text,
)
from consent.ledger.signer import LedgerSigner
from tests.helpers import PASSWORD, sign_in, unique_email
from tests.sequencer import append
from tests.vault.conftest import Deployment
from vault.accounts.models import Role
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from vrm.app import create_app

SERVER_URL = "http://127.0.0.1:8200"
SERVER_LOG = "127.0.0.1:8200/consent-ledger"
DEFAULT_URL = "http://127.0.0.1:8000"  # a process without VRM_BASE_URL
DEFAULT_LOG = "127.0.0.1:8000/consent-ledger"
API = "/api/audit/v1"


def entry(i: int) -> dict[str, object]:
    return {
        "event_type": "grant.given",
        "vendor_id": None,
        "subject": f"p-{i:032x}",
        "grant_id": None,
        "fields": ["email"],
        "purpose": "Deliver your orders.",
        "agreement_id": "service-only",
        "consent_text_hash": None,
    }


def checkpoints(rt: Runtime) -> int:
    with rt.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(LedgerCheckpoint)) or 0)


@pytest.fixture
def served(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A deployment served at 127.0.0.1:8200: keys made by `vrm keys init` with the server's
    VRM_BASE_URL, five ledger entries; then VRM_BASE_URL is unset again, as in a shell where
    someone starts the worker without it. Yields the server's runtime."""
    deployment.ok("db", "upgrade")
    monkeypatch.setenv("VRM_BASE_URL", SERVER_URL)
    output = deployment.ok("keys", "init")
    assert f"the consent ledger's log origin is {SERVER_LOG}" in output
    monkeypatch.delenv("VRM_BASE_URL")
    server = deployment.runtime(base_url=SERVER_URL)
    for i in range(5):
        with server.sessions() as session, session.begin():
            append(session, entry(i), now=datetime(2026, 3, 2, 9, i, tzinfo=UTC))
    yield server


def published_key(deployment: Deployment, server: Runtime) -> str:
    """The verifier key the audit API gives a signed-in auditor."""
    email = unique_email("auditor")
    with server.sessions() as session, session.begin():
        new_account(session, server, email, PASSWORD, role=Role.AUDITOR)
    app = create_app(runtime=server)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as client:
        assert sign_in(client, email).status_code == 303
        answer = client.get(f"{API}/public-key")
    assert answer.status_code == 200, answer.text
    assert answer.json()["origin"] == SERVER_LOG
    return str(answer.json()["verifier_key"])


def assert_refusal(output: str) -> None:
    """The message names both logs and the setting to fix."""
    assert "refusing to sign for the consent ledger" in output
    assert f"belongs to the log '{SERVER_LOG}'" in output
    assert f"names the log '{DEFAULT_LOG}'" in output
    assert "VRM_BASE_URL" in output
    assert SERVER_URL in output  # what to set it to


def test_ledger_checkpoint_under_another_base_url_refuses_and_signs_nothing(
    deployment: Deployment, served: Runtime
) -> None:
    result = deployment.cli("ledger", "checkpoint")

    assert result.exit_code == 1, result.output
    assert_refusal(result.stderr)
    assert "—" not in result.stdout  # no signed note was printed
    assert checkpoints(served) == 0


def test_the_worker_under_another_base_url_signs_nothing_and_says_why(
    deployment: Deployment, served: Runtime
) -> None:
    result = deployment.cli("worker", "--once")

    assert result.exit_code == 0, result.output  # the worker's other jobs still run
    assert_refusal(result.stderr)
    assert "ledger checkpoint signed" not in result.output
    assert checkpoints(served) == 0


def test_a_signer_with_the_servers_settings_signs_what_the_published_key_verifies(
    deployment: Deployment, served: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VRM_BASE_URL", SERVER_URL)
    note = deployment.ok("ledger", "checkpoint")
    vkey = published_key(deployment, served)

    checkpoint = verify_signed_checkpoint(note, vkey, origin=SERVER_LOG)
    assert checkpoint.size == 5
    key_file = tmp_path / "vault.pub"
    key_file.write_text(vkey + "\n", encoding="utf-8")
    export = tmp_path / "export.jsonl"
    deployment.ok("ledger", "export", str(export))
    verified = deployment.cli("ledger", "verify", str(export), "--public-key", str(key_file))
    assert verified.exit_code == 0, verified.output
    assert "OK: the export is complete" in verified.stdout


def test_the_audit_api_publishes_the_stored_origin_whatever_the_servers_settings(
    deployment: Deployment, served: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server started without VRM_BASE_URL still publishes the log's own key (and would
    refuse to sign), so an auditor is never handed a key for a log that does not exist."""
    monkeypatch.setenv("VRM_BASE_URL", SERVER_URL)
    note = deployment.ok("ledger", "checkpoint")
    misconfigured = deployment.runtime(base_url=DEFAULT_URL)

    vkey = published_key(deployment, misconfigured)

    assert public_key_text(misconfigured) == public_key_text(served) == vkey
    assert verify_signed_checkpoint(note, vkey).origin == SERVER_LOG
    with pytest.raises(LedgerOriginMismatch, match="refusing to sign"):
        LedgerSigner(misconfigured).sign(b"{}", "export-manifest+jws")


def test_a_key_made_before_origins_were_stored_adopts_the_first_users_and_keeps_it(
    deployment: Deployment,
) -> None:
    deployment.ok("db", "upgrade")
    assert KEY.ensure(deployment.key_dir, "operator")  # a key file as it used to be made
    path = deployment.key_dir / KEY.filename
    before = json.loads(path.read_text())
    assert LOG_ORIGIN not in before

    server = deployment.runtime(base_url=SERVER_URL)
    assert origin(server) == SERVER_LOG

    after = json.loads(path.read_text())
    assert after == {**before, LOG_ORIGIN: SERVER_LOG}  # the key itself is unchanged
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    other = deployment.runtime(base_url=DEFAULT_URL)
    assert ledger_key(other).origin == SERVER_LOG
    with pytest.raises(LedgerOriginMismatch):
        LedgerSigner(other).sign(b"{}", "export-manifest+jws")
    assert deployment.ok("keys", "ledger-origin").splitlines()[0] == SERVER_LOG


def test_keys_ledger_origin_records_an_origin_for_an_old_key_on_purpose(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    KEY.ensure(deployment.key_dir, "operator")
    monkeypatch.setenv("VRM_BASE_URL", SERVER_URL)

    assert deployment.ok("keys", "ledger-origin").strip() == SERVER_LOG

    monkeypatch.delenv("VRM_BASE_URL")
    result = deployment.cli("keys", "ledger-origin")
    assert result.exit_code == 0
    assert result.stdout.strip() == SERVER_LOG  # recorded once, never re-derived
    assert "warning: refusing to sign" in result.stderr


def test_an_old_key_in_a_directory_that_cannot_be_written_keeps_working_as_before(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording the origin needs to replace the key file; where that fails (a read-only
    mount), the process signs under its own settings as before the upgrade, and says how to
    make the origin stick, rather than stop signing."""
    KEY.ensure(deployment.key_dir, "operator")

    def read_only(path: Path, payload: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("vault.keys._replace_secret_file", read_only)
    server = deployment.runtime(base_url=SERVER_URL)

    assert ledger_key(server).origin == SERVER_LOG
    LedgerSigner(server).sign(b"{}", "export-manifest+jws")
    assert "vrm keys ledger-origin" in caplog.text
    assert LOG_ORIGIN not in json.loads((deployment.key_dir / KEY.filename).read_text())
    refused = deployment.cli("keys", "ledger-origin")
    assert refused.exit_code == 1
    assert "could not record the log origin" in refused.stderr
