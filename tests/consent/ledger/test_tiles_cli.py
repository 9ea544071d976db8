"""Auditor API tokens from the command line, and `vrm ledger verify --tiles-url` against a
served vault: a real, committed deployment, the app served by uvicorn on 127.0.0.1 (on a
thread: a process of its own starts too slowly on a busy machine), and the verifier fetching
the tiles over HTTP with an auditor token, as an auditor's script would."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from click.testing import Result
from sqlalchemy import text

from tests.helpers import PASSWORD, unique_email
from tests.sequencer import append
from tests.vault.conftest import Deployment
from vault.runtime import Runtime
from vrm.app import create_app

pytestmark = pytest.mark.migrated  # the database is not the subject: start at the head

N = 300  # > 256: full and partial level-0 tiles, a partial level-1 tile
TOKEN = re.compile(r"^vrm_at_[A-Za-z0-9_-]{43}$")
LOG_PATH = "/api/audit/v1/log/"


def add_auditor(deployment: Deployment) -> str:
    email = unique_email("auditor")
    deployment.ok("auditors", "add", "--email", email, "--password-stdin", input=PASSWORD + "\n")
    return email


def make_token(deployment: Deployment, email: str, label: str = "nightly") -> str:
    result = deployment.cli("auditors", "token", "--email", email, "--label", label)
    assert result.exit_code == 0, (result.output, result.exception)
    token = result.stdout.strip()
    assert TOKEN.match(token), result.stdout
    return token


def token_rows(deployment: Deployment, email: str) -> list[list[str]]:
    lines = deployment.ok("auditors", "tokens", "--email", email).splitlines()
    return [line.split() for line in lines[1:-1]]


def test_token_is_printed_once_listed_without_it_and_revoked(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    email = add_auditor(deployment)

    token = make_token(deployment, email, "ci")
    rows = token_rows(deployment, email)

    assert len(rows) == 1
    token_id, label, state = rows[0][:3]
    assert (label, state) == ("ci", "active")
    listing = deployment.ok("auditors", "tokens", "--email", email)
    assert token not in listing
    with deployment.engine().connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM account_api_tokens")).scalars().all()
    assert len(stored) == 1 and token.encode() not in bytes(stored[0])

    assert deployment.ok("auditors", "revoke-token", token_id).strip() == (
        f"token {token_id} revoked"
    )
    assert token_rows(deployment, email)[0][2] == "revoked"
    assert "already revoked" in deployment.ok("auditors", "revoke-token", token_id)


def test_tokens_are_only_for_auditor_accounts(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    rt = deployment.runtime()
    individual = unique_email()
    deployment.add_individual(rt, individual, full=False)

    for email in (individual, unique_email("nobody")):
        result = deployment.cli("auditors", "token", "--email", email)
        assert result.exit_code == 1
        assert "There is no auditor account with this address." in result.output
    bad = deployment.cli("auditors", "revoke-token", "not-a-uuid")
    assert bad.exit_code == 1 and "is not a token id" in bad.output


class Served:
    """uvicorn serving the app on a free port of 127.0.0.1, on a thread of its own."""

    def __init__(self, rt: Runtime) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(runtime=rt), log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@dataclass
class Log:
    deployment: Deployment
    server: Served
    key: Path
    email: str
    token: str

    def verify(self, token: str | None) -> Result:
        url = self.server.url + LOG_PATH
        args = ["ledger", "verify", "--tiles-url", url, "--public-key", str(self.key)]
        return self.deployment.cli(*args, *(["--token", token] if token else []))


@pytest.fixture
def log(deployment: Deployment, tmp_path: Path) -> Iterator[Log]:
    """A committed ledger of N entries under a signed checkpoint, an auditor with a token, the
    verifier key in a file, and the vault served at the base URL the log is named for."""
    deployment.ok("db", "upgrade")
    rt = deployment.runtime()
    with rt.sessions() as session, session.begin():
        for i in range(N):
            append(session, {"event_type": "grant.given", "vendor_id": None, "subject": f"p-{i}"})
    deployment.ok("ledger", "checkpoint")
    key = tmp_path / "vault.pub"
    key.write_text(deployment.ok("ledger", "public-key"), encoding="utf-8")
    email = add_auditor(deployment)
    token = make_token(deployment, email)
    with Served(rt) as server:
        yield Log(deployment, server, key, email, token)


def test_verify_reads_and_checks_every_tile_with_a_token(log: Log) -> None:
    result = log.verify(log.token)

    assert result.exit_code == 0, result.output
    assert f"checkpoint: {N} entries" in result.output
    assert f"entries read: {N}" in result.output
    assert f"OK: the log served at {log.server.url}{LOG_PATH} is complete" in result.output


def test_verify_without_a_token_or_with_a_revoked_one_fails(log: Log) -> None:
    anonymous = log.verify(None)
    assert anonymous.exit_code == 1
    assert "answered 401: the tiles are for auditors" in anonymous.output

    token_id = token_rows(log.deployment, log.email)[0][0]
    log.deployment.ok("auditors", "revoke-token", token_id)
    revoked = log.verify(log.token)

    assert revoked.exit_code == 1
    assert "answered 401" in revoked.output
    assert "OK:" not in revoked.output


def test_verify_from_tiles_finds_an_altered_entry(log: Log) -> None:
    with log.deployment.engine().begin() as conn:
        conn.execute(
            text('UPDATE ledger_entries SET entry = :e WHERE "index" = 261'),
            {"e": b'{"event_type":"grant.given","index":261,"subject":"p-forged"}'},
        )

    result = log.verify(log.token)

    assert result.exit_code == 1
    assert "tile/0 hash 261 is not the hash of entry 261" in result.output
    assert "first bad index: 261" in result.output


def test_verify_takes_an_export_or_a_tiles_url(deployment: Deployment, tmp_path: Path) -> None:
    key = tmp_path / "vault.pub"
    key.write_text("x", encoding="utf-8")
    neither = deployment.cli("ledger", "verify", "--public-key", str(key))
    both = deployment.cli(
        "ledger", "verify", str(key), "--tiles-url", "http://x/", "--public-key", str(key)
    )
    not_http = deployment.cli(
        "ledger", "verify", "--tiles-url", "file:///etc/passwd", "--public-key", str(key)
    )

    assert neither.exit_code == both.exit_code == not_http.exit_code == 1
    assert "give either an export file or --tiles-url" in neither.output
    assert "give either an export file or --tiles-url" in both.output
    assert "--tiles-url must be an http(s) URL" in not_http.output
