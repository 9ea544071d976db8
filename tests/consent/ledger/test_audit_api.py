"""The audit API (``/api/audit/v1``) as a signed-in privacy auditor uses it.

Checkpoints verify with the served key, entries come by range (at most 1000), proofs verify
against the signed root with the RFC 9162 verifiers, only auditors get in, and entries name an
individual only by pseudonym: no email, no profile value.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from consent.grants.service import Decision, GrantService
from consent.ledger.checkpoint import verify_signed_checkpoint
from consent.ledger.merkle import canonical_json, leaf_hash, verify_consistency, verify_inclusion
from consent.ledger.models import LedgerCheckpoint
from consent.ledger.service import create_checkpoint, origin, public_key_text
from consent.ledger.store import StoredTree, vendor_pseudonym_for
from tests.consent.factories import make_app
from tests.helpers import PASSWORD, sign_in, sign_up, unique_email
from tests.sequencer import append_events, sequence
from vault.accounts.models import Role
from vault.profile.service import ProfileService
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

API = "/api/audit/v1"
ENDPOINTS = [
    "/checkpoint",
    "/public-key",
    "/entries?start=0&end=5",
    "/proofs/inclusion?index=0&size=1",
    "/proofs/consistency?first=1&second=2",
]


def add_events(db: Session, n: int) -> None:
    append_events(db, n, lambda i: "vendor.registered" if i % 3 == 0 else "grant.given")
    db.commit()


def signed(db: Session, rt: Runtime) -> LedgerCheckpoint:
    row = create_checkpoint(db, rt)
    assert row is not None
    db.commit()
    return row


def b64decode(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


@pytest.fixture
def auditor(client: TestClient, db: Session, rt: Runtime) -> TestClient:
    """``client``, signed in as a privacy auditor."""
    email = unique_email("auditor")
    new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
    db.commit()
    assert sign_in(client, email).status_code == 303
    return client


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(API + path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# -- who gets in ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_anonymous_callers_get_401(client: TestClient, path: str) -> None:
    response = client.get(API + path)
    assert response.status_code == 401
    assert response.json() == {
        "error": "not_authenticated",
        "detail": "Sign in with an auditor account first.",
    }


@pytest.mark.parametrize("path", ENDPOINTS)
def test_individuals_get_403(client: TestClient, path: str) -> None:
    sign_up(client)
    response = client.get(API + path)
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "The audit API is for privacy auditors.",
    }


# -- checkpoint and key ---------------------------------------------------------------------


def test_no_checkpoint_yet_is_404(auditor: TestClient, db: Session) -> None:
    db.execute(delete(LedgerCheckpoint))
    db.commit()
    response = auditor.get(f"{API}/checkpoint")
    assert response.status_code == 404
    assert response.json()["detail"] == "No checkpoint has been signed yet."


def test_the_checkpoint_verifies_with_the_served_public_key(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    add_events(db, 11)
    row = signed(db, rt)

    key = get(auditor, "/public-key")
    body = get(auditor, "/checkpoint")

    assert key == {
        "origin": origin(rt),
        "algorithm": "Ed25519",
        "verifier_key": public_key_text(rt),
    }
    root = base64.b64encode(row.root).decode()
    # No witness configured: the note is the vault's alone.
    assert body == {"size": row.size, "root": root, "note": row.note, "witnesses": 0}
    checkpoint = verify_signed_checkpoint(body["note"], key["verifier_key"], origin=key["origin"])
    assert checkpoint.size == row.size == StoredTree(db).size()
    assert checkpoint.root == base64.b64decode(body["root"]) == StoredTree(db).root(row.size)


def test_the_latest_checkpoint_is_served(auditor: TestClient, db: Session, rt: Runtime) -> None:
    add_events(db, 3)
    signed(db, rt)
    add_events(db, 4)
    latest = signed(db, rt)
    assert get(auditor, "/checkpoint")["size"] == latest.size


# -- entries --------------------------------------------------------------------------------


def test_entries_by_range_carry_their_leaf_hashes(auditor: TestClient, db: Session) -> None:
    base = StoredTree(db).size()
    add_events(db, 12)

    body = get(auditor, "/entries", start=base + 2, end=base + 7)

    assert body["tree_size"] == base + 12
    assert [e["index"] for e in body["entries"]] == list(range(base + 2, base + 7))
    for item in body["entries"]:
        assert item["entry"]["index"] == item["index"]
        assert item["leaf_hash"] == leaf_hash(canonical_json(item["entry"])).hex()


def test_entries_default_to_100_and_stop_at_the_tree_size(auditor: TestClient, db: Session) -> None:
    base = StoredTree(db).size()
    add_events(db, 5)
    assert [e["index"] for e in get(auditor, "/entries", start=base)["entries"]] == list(
        range(base, base + 5)
    )
    assert get(auditor, "/entries", start=base + 5)["entries"] == []
    assert len(get(auditor, "/entries", start=base, end=base + 1000)["entries"]) == 5


def test_more_than_1000_entries_at_a_time_is_400(auditor: TestClient, db: Session) -> None:
    add_events(db, 2)
    response = auditor.get(f"{API}/entries", params={"start": 0, "end": 1001})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_input",
        "detail": "Ask for at most 1000 entries at a time.",
        "field": "end",
    }
    assert auditor.get(f"{API}/entries", params={"start": 5, "end": 1005}).status_code == 200


@pytest.mark.parametrize("query", ["start=-1", "end=0", "start=x"])
def test_malformed_ranges_are_422(auditor: TestClient, query: str) -> None:
    assert auditor.get(f"{API}/entries?{query}").status_code == 422


BIG = 2**63  # one past the largest index a BIGINT column holds
HUGE = 67382396045834911744


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/entries", {"start": HUGE}, "start"),
        ("/entries", {"start": BIG}, "start"),
        ("/entries", {"start": 0, "end": HUGE}, "end"),
        ("/proofs/inclusion", {"index": HUGE, "size": HUGE + 1}, "index"),
        ("/proofs/inclusion", {"index": 0, "size": HUGE}, "size"),
        ("/proofs/consistency", {"first": 1, "second": HUGE}, "second"),
        ("/proofs/consistency", {"first": HUGE, "second": HUGE}, "first"),
    ],
)
def test_an_index_or_size_beyond_what_the_ledger_can_hold_is_422(
    auditor: TestClient, path: str, params: dict[str, int], named: str
) -> None:
    response = auditor.get(API + path, params=params)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert f"{named}: Input should be less than or equal to {BIG - 1}" in body["detail"]


def test_the_largest_index_is_a_range_with_nothing_in_it(auditor: TestClient, db: Session) -> None:
    add_events(db, 1)
    assert get(auditor, "/entries", start=BIG - 1)["entries"] == []
    assert get(auditor, "/entries", start=BIG - 101, end=BIG - 1)["entries"] == []


# -- proofs ---------------------------------------------------------------------------------


def test_inclusion_proofs_verify_against_the_checkpoint_root(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    add_events(db, 23)
    row = signed(db, rt)
    served = get(auditor, "/checkpoint")
    size, root = served["size"], base64.b64decode(served["root"])
    entries = {
        e["index"]: e["entry"] for e in get(auditor, "/entries", start=0, end=size)["entries"]
    }

    for index in sorted({0, 1, size // 2, size - 2, size - 1}):
        body = get(auditor, "/proofs/inclusion", index=index, size=size)
        assert body["tree_size"] == size == row.size
        assert base64.b64decode(body["root"]) == root
        leaf = leaf_hash(canonical_json(entries[index]))
        proof = b64decode(body["proof"])
        assert verify_inclusion(leaf, index, size, proof, root)
        assert not verify_inclusion(leaf, (index + 1) % size, size, proof, root)


def test_an_inclusion_proof_at_an_older_size_verifies_against_that_checkpoint(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    add_events(db, 6)
    old = signed(db, rt)
    add_events(db, 9)
    signed(db, rt)
    entry = get(auditor, "/entries", start=old.size - 1, end=old.size)["entries"][0]["entry"]

    body = get(auditor, "/proofs/inclusion", index=old.size - 1, size=old.size)

    assert body["tree_size"] == old.size
    proof = b64decode(body["proof"])
    assert verify_inclusion(
        leaf_hash(canonical_json(entry)), old.size - 1, old.size, proof, bytes(old.root)
    )


def test_a_consistency_proof_links_two_checkpoints(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    add_events(db, 5)
    first = signed(db, rt)
    add_events(db, 13)
    second = signed(db, rt)

    body = get(auditor, "/proofs/consistency", first=first.size, second=second.size)

    assert body["tree_size"] == second.size
    assert base64.b64decode(body["root"]) == bytes(second.root)
    proof = b64decode(body["proof"])
    assert verify_consistency(first.size, second.size, bytes(first.root), bytes(second.root), proof)
    assert not verify_consistency(
        first.size, second.size, bytes(second.root), bytes(first.root), proof
    )


def test_proofs_outside_the_tree_are_400(auditor: TestClient, db: Session) -> None:
    add_events(db, 4)
    size = StoredTree(db).size()

    def detail(path: str, **params: int) -> tuple[int, str, str | None]:
        response = auditor.get(API + path, params=params)
        body = response.json()
        return response.status_code, body["detail"], body.get("field")

    below = "The index must be below the tree size."
    assert detail("/proofs/inclusion", index=size, size=size) == (400, below, "index")
    assert detail("/proofs/inclusion", index=size + 3, size=size) == (400, below, "index")
    too_big = f"The ledger has only {size} entries."
    assert detail("/proofs/inclusion", index=0, size=size + 1) == (400, too_big, "size")
    assert detail("/proofs/consistency", first=1, second=size + 1) == (400, too_big, "size")
    assert detail("/proofs/consistency", first=size, second=size - 1) == (
        400,
        "The first size must not exceed the second.",
        "first",
    )
    assert auditor.get(f"{API}/proofs/inclusion?index=0").status_code == 422
    assert auditor.get(f"{API}/proofs/inclusion?index=-1&size=2").status_code == 422


# -- no personal data -----------------------------------------------------------------------


def test_entries_name_the_individual_only_by_pseudonym(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    email = unique_email("zephyrine.quixotebottom")
    given_name = "Zephyrine-Ødegård"
    person = new_account(db, rt, email, PASSWORD)
    ProfileService(db, rt).set_field(person, "given_name", given_name)
    app = make_app(db)
    grants = GrantService(db, rt)
    grant = grants.decide(person.id, app, Decision(["email", "given_name"], "30d"), "service-only")
    grants.narrow(person.id, grant.id, ["given_name"])
    grants.revoke(person.id, grant.id)
    db.commit()
    pseudonym = vendor_pseudonym_for(db, rt, person.id, app.id)

    # Recorded, not yet integrated: shown as pending, with no index, and not as entries.
    waiting = auditor.get(f"{API}/pending")
    assert waiting.status_code == 200, waiting.text
    body = waiting.json()
    mine = [e for e in body["events"] if e["entry"]["subject"] == pseudonym]
    assert [e["entry"]["event_type"] for e in mine] == [
        "grant.given",
        "grant.narrowed",
        "grant.revoked",
    ]
    assert all("index" not in e["entry"] for e in mine) and body["pending"] >= 3
    listed = auditor.get(f"{API}/entries", params={"start": 0, "end": 1000}).text
    assert pseudonym not in listed
    for secret in (email, given_name, json.dumps(given_name)[1:-1], str(person.id)):
        assert secret.lower() not in waiting.text.lower()
    sequence(db)
    db.commit()
    assert auditor.get(f"{API}/pending").json()["pending"] == 0

    response = auditor.get(f"{API}/entries", params={"start": 0, "end": 1000})

    assert response.status_code == 200
    mine = [e["entry"] for e in response.json()["entries"] if e["entry"]["subject"] == pseudonym]
    assert [e["event_type"] for e in mine] == ["grant.given", "grant.narrowed", "grant.revoked"]
    assert all(e["grant_id"] == str(grant.id) for e in mine)
    assert pseudonym.startswith("p-") and pseudonym in response.text
    raw = response.content.decode()
    for secret in (email, given_name, json.dumps(given_name)[1:-1], str(person.id)):
        assert secret not in raw
        assert secret.lower() not in raw.lower()
