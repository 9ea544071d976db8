"""The audit API's proofs (and its public key) for an auditor's API token on a database whose
writes commit (the sessions bound to an engine, as in a served vault, not to one rolled-back
connection).

On PostgreSQL that is the proof in the event loop (``consent.ledger.hot`` on
``vault.pgasync``'s connections): the path every served vault takes for a bearer token, which
the rolled-back tests cannot reach. On SQLite it is the threaded path in transactions of its
own. Either way an auditor sees the same answers: proofs that verify against the signed
roots, the same refusals, and a token that stops working the moment it is revoked.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any, NamedTuple

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent.ledger.merkle import canonical_json, leaf_hash, verify_consistency, verify_inclusion
from consent.ledger.models import LedgerEntry
from consent.ledger.service import create_checkpoint, public_key_text
from consent.ledger.store import StoredTree
from tests.committed import committed_engine, committed_runtime, rt
from tests.helpers import PASSWORD, sign_in, unique_email
from tests.sequencer import append_events
from vault.accounts.models import Account, AccountStatus, ApiToken, Role
from vault.accounts.tokens import issue_token, lookup_hash, revoke_token
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

API = "/api/audit/v1"


__all__ = ["committed_engine", "committed_runtime", "rt"]  # the ledger grows from test to test


def add_events(db: Session, n: int) -> None:
    append_events(db, n)
    db.commit()


class Signed(NamedTuple):
    size: int
    root: bytes


def signed(db: Session, rt: Runtime, events: int) -> Signed:
    """``events`` more events and a checkpoint over the whole ledger, committed. (Tests end
    their own transactions before each request: on SQLite an open one holds the app's up.)"""
    add_events(db, events)
    row = create_checkpoint(db, rt)
    assert row is not None
    made = Signed(row.size, bytes(row.root))
    db.commit()
    return made


def make_auditor(db: Session, rt: Runtime, label: str = "ci") -> tuple[uuid.UUID, str, str]:
    """A new auditor account with an API token: its id, its email and the token."""
    email = unique_email("auditor")
    account = new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
    issued = issue_token(db, rt, account, label=label, days=30)
    made = (account.id, email, issued.token)
    db.commit()
    return made


@pytest.fixture
def token(db: Session, rt: Runtime) -> str:
    return make_auditor(db, rt, "nightly check")[2]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def proof(client: TestClient, token: str, path: str, **params: int) -> Any:
    response = client.get(API + path, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def entry_leaf(db: Session, index: int) -> bytes:
    data = db.scalars(select(LedgerEntry.entry).where(LedgerEntry.index == index)).one()
    db.rollback()  # read only; on SQLite an open transaction would hold the app's writes up
    return leaf_hash(canonical_json(json.loads(bytes(data))))


def test_a_served_postgresql_vault_proves_in_the_event_loop(app: FastAPI, backend: str) -> None:
    assert (app.state.hot_pg is not None) == (backend == "postgresql")


def test_inclusion_proofs_for_a_token_verify_against_the_signed_roots(
    client: TestClient, db: Session, rt: Runtime, token: str
) -> None:
    old = signed(db, rt, 5)
    new = signed(db, rt, 18)

    for size, root in ((old.size, bytes(old.root)), (new.size, bytes(new.root))):
        for index in sorted({0, 1, size // 2, size - 2, size - 1}):
            body = proof(client, token, "/proofs/inclusion", index=index, size=size)
            assert body["tree_size"] == size
            assert base64.b64decode(body["root"]) == root
            path = [base64.b64decode(p) for p in body["proof"]]
            assert verify_inclusion(entry_leaf(db, index), index, size, path, root)
            assert not verify_inclusion(entry_leaf(db, index), index, size, path, bytes(32))


def test_a_consistency_proof_for_a_token_links_two_checkpoints(
    client: TestClient, db: Session, rt: Runtime, token: str
) -> None:
    first = signed(db, rt, 7)
    second = signed(db, rt, 13)

    body = proof(client, token, "/proofs/consistency", first=first.size, second=second.size)

    assert body["tree_size"] == second.size
    assert base64.b64decode(body["root"]) == bytes(second.root)
    path = [base64.b64decode(p) for p in body["proof"]]
    old_root, new_root = bytes(first.root), bytes(second.root)
    assert verify_consistency(first.size, second.size, old_root, new_root, path)
    assert not verify_consistency(first.size, second.size, new_root, old_root, path)


def test_the_public_key_for_a_token_is_the_one_a_session_gets(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    _, email, issued = make_auditor(db, rt)
    by_token = client.get(API + "/public-key", headers=bearer(issued))
    assert sign_in(client, email).status_code == 303
    by_session = client.get(API + "/public-key")

    assert by_token.status_code == by_session.status_code == 200
    assert by_token.json() == by_session.json()
    assert by_token.json()["verifier_key"] == public_key_text(rt)


def test_the_same_proof_for_a_session_and_for_a_token(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    """The portal session takes the threaded path, the token (on PostgreSQL) the event loop:
    one answer."""
    row = signed(db, rt, 9)
    _, email, issued = make_auditor(db, rt)
    params = {"index": row.size // 3, "size": row.size}
    by_token = client.get(API + "/proofs/inclusion", params=params, headers=bearer(issued))
    assert sign_in(client, email).status_code == 303
    by_session = client.get(API + "/proofs/inclusion", params=params)

    assert by_token.status_code == by_session.status_code == 200
    assert by_token.json() == by_session.json()
    consistency = {"first": 1, "second": row.size}
    assert (
        client.get(API + "/proofs/consistency", params=consistency, headers=bearer(issued)).json()
        == client.get(API + "/proofs/consistency", params=consistency).json()
    )


def test_proofs_outside_the_tree_are_400_for_a_token(
    client: TestClient, db: Session, rt: Runtime, token: str
) -> None:
    signed(db, rt, 4)
    size = StoredTree(db).size()
    db.rollback()

    def detail(path: str, **params: int) -> tuple[int, str, str | None]:
        response = client.get(API + path, params=params, headers=bearer(token))
        body = response.json()
        return response.status_code, body["detail"], body.get("field")

    below = "The index must be below the tree size."
    assert detail("/proofs/inclusion", index=size, size=size) == (400, below, "index")
    too_big = f"The ledger has only {size} entries."
    assert detail("/proofs/inclusion", index=0, size=size + 1) == (400, too_big, "size")
    assert detail("/proofs/consistency", first=1, second=size + 1) == (400, too_big, "size")
    assert detail("/proofs/consistency", first=size, second=size - 1) == (
        400,
        "The first size must not exceed the second.",
        "first",
    )
    missing = client.get(f"{API}/proofs/inclusion?index=0", headers=bearer(token))
    assert missing.status_code == 422


@pytest.mark.parametrize(
    "header", ["Bearer vrm_at_not-a-token", "Bearer not-even-the-prefix", "Bearer "]
)
def test_an_unknown_token_is_401_before_any_other_check(
    client: TestClient, db: Session, rt: Runtime, header: str
) -> None:
    signed(db, rt, 2)
    for path in (
        "/public-key",
        "/proofs/inclusion?index=0&size=1",
        "/proofs/inclusion?index=5&size=1",  # a 400 for an auditor; refused first here
        "/proofs/consistency?first=2&second=1",
    ):
        response = client.get(API + path, headers={"Authorization": header})
        assert response.status_code == 401, path
        assert response.json() == {
            "error": "not_authenticated",
            "detail": "This API token is unknown, expired or revoked.",
        }
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_a_revoked_token_is_refused_at_once(
    client: TestClient, db: Session, rt: Runtime, token: str
) -> None:
    row = signed(db, rt, 3)
    path = f"{API}/proofs/inclusion?index=0&size={row.size}"
    assert client.get(path, headers=bearer(token)).status_code == 200
    assert client.get(f"{API}/public-key", headers=bearer(token)).status_code == 200
    token_id = db.scalars(
        select(ApiToken.id).where(ApiToken.token_hash == lookup_hash(rt, token))
    ).one()
    assert revoke_token(db, token_id) is True
    db.commit()

    for refused in (
        path,
        f"{API}/proofs/consistency?first=1&second={row.size}",
        f"{API}/public-key",
    ):
        response = client.get(refused, headers=bearer(token))
        assert response.status_code == 401, refused
        assert response.json()["detail"] == "This API token is unknown, expired or revoked."


def test_a_disabled_auditors_token_is_401_and_a_non_auditors_403(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    row = signed(db, rt, 2)
    path = f"{API}/proofs/inclusion?index=0&size={row.size}"
    account, _, issued = make_auditor(db, rt)
    assert client.get(path, headers=bearer(issued)).status_code == 200

    db.execute(update(Account).where(Account.id == account).values(role=Role.INDIVIDUAL))
    db.commit()
    for refused in (path, f"{API}/public-key"):
        forbidden = client.get(refused, headers=bearer(issued))
        assert forbidden.status_code == 403
        assert forbidden.json()["detail"] == "The audit API is for privacy auditors."

    db.execute(
        update(Account)
        .where(Account.id == account)
        .values(role=Role.AUDITOR, status=AccountStatus.DISABLED)
    )
    db.commit()
    assert client.get(path, headers=bearer(issued)).status_code == 401
    assert client.get(f"{API}/public-key", headers=bearer(issued)).status_code == 401


def test_using_a_token_records_when_it_was_last_used(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    row = signed(db, rt, 2)
    _, _, issued = make_auditor(db, rt)
    token_id = db.scalars(
        select(ApiToken.id).where(ApiToken.token_hash == lookup_hash(rt, issued))
    ).one()
    assert db.get_one(ApiToken, token_id).last_used_at is None
    db.rollback()

    response = client.get(
        f"{API}/proofs/consistency?first=1&second={row.size}", headers=bearer(issued)
    )

    assert response.status_code == 200
    db.expire_all()
    assert db.get_one(ApiToken, token_id).last_used_at is not None
