"""Consent events reach the ledger: one canonical entry each, in the change's own transaction.

Every grant change (given, narrowed, extended, revoked, expired), refresh-token reuse and
vendor app change (registered, changed, deleted) appends exactly one entry of its type. Rolled
back, the change takes its entry with it and the next append reuses the index. Entries made on
the consent screen carry the hash of what the screen said.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent import scopes
from consent.grants.models import Grant
from consent.grants.service import Decision, GrantService, delete_app
from consent.ledger.merkle import canonical_json, leaf_hash
from consent.ledger.models import LedgerEntry, LedgerPending
from consent.ledger.store import StoredTree, vendor_pseudonym_for
from consent.oauth.tokens import TokenService
from consent.vendors.models import VendorApp
from consent.vendors.service import AppInput, register_app, update_app
from tests.consent.factories import account_of, make_app
from tests.consent.oauth_helpers import authorize_url, consent, make_vendor, new_verifier
from tests.consent.oauth_helpers import oauth_client as vendor_client
from tests.helpers import PASSWORD, sign_up, unique_email
from tests.sequencer import sequence
from vault.accounts.models import Account
from vault.base import utcnow
from vault.runtime import Runtime
from vault.signup import sign_up as new_account
from web.consent import consent_text_hash

ENTRY_KEYS = {
    "index",
    "time",
    "event_type",
    "vendor_id",
    "subject",
    "fields",
    "purpose",
    "agreement_id",
    "consent_text_hash",
}


def count(db: Session) -> int:
    """Entries in the tree, once the sequencer integrated what is pending."""
    sequence(db)
    return int(db.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


def pending(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(LedgerPending)) or 0)


def entries_from(db: Session, start: int) -> list[LedgerEntry]:
    sequence(db)
    return list(
        db.scalars(
            select(LedgerEntry).where(LedgerEntry.index >= start).order_by(LedgerEntry.index)
        )
    )


def app_input(purpose: str = "Deliver your orders to your door.") -> AppInput:
    return AppInput(
        name="Ledger Shop",
        homepage_url="https://shop.example",
        privacy_policy_url="https://shop.example/privacy",
        redirect_uris=["https://shop.example/callback"],
        purpose=purpose,
        accepted_agreements=["service-only"],
    )


# -- one case per event -----------------------------------------------------------------------


@dataclass
class Setup:
    person: Account | None = None
    app: VendorApp | None = None
    grant: Grant | None = None
    token_id: uuid.UUID | None = None


def person(db: Session, rt: Runtime) -> Account:
    return new_account(db, rt, unique_email(), PASSWORD)


def granted(fields: list[str], duration: str = "30d") -> Callable[[Session, Runtime], Setup]:
    def setup(db: Session, rt: Runtime) -> Setup:
        who, app = person(db, rt), make_app(db)
        grant = GrantService(db, rt).decide(who.id, app, Decision(fields, duration), "service-only")
        return Setup(who, app, grant)

    return setup


def nobody(db: Session, rt: Runtime) -> Setup:
    return Setup(person(db, rt), make_app(db))


def registered(db: Session, rt: Runtime) -> Setup:
    app, _ = register_app(db, rt, app_input(), owner_id=None, registered_via="cli")
    return Setup(app=app)


def with_refresh_token(db: Session, rt: Runtime) -> Setup:
    setup = granted(["email"])(db, rt)
    assert setup.app is not None
    row = TokenService(db, rt).issue(
        setup.app, "profile:email", grant=setup.grant, refresh_token="refresh-" + uuid.uuid4().hex
    )
    setup.token_id = row.id
    return setup


def reuse(db: Session, rt: Runtime, s: Setup) -> None:
    from consent.grants.models import OAuthToken

    row = db.get(OAuthToken, s.token_id)
    assert row is not None
    TokenService(db, rt).reuse_detected(row)


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def later(days: int) -> datetime:
    return utcnow() + timedelta(days=days)


def _ids(s: Setup) -> tuple[uuid.UUID, uuid.UUID]:
    assert s.person is not None and s.grant is not None
    return s.person.id, s.grant.id


@dataclass
class Case:
    event_type: str
    setup: Callable[[Session, Runtime], Setup]
    act: Callable[[Session, Runtime, Setup], Any]


CASES = {
    "grant.given": Case(
        "grant.given",
        nobody,
        lambda db, rt, s: GrantService(db, rt).decide(
            s.person.id, s.app, Decision(["email"], "30d"), "service-only"
        ),
    ),
    "grant.given (widened)": Case(
        "grant.given",
        granted(["email"]),
        lambda db, rt, s: GrantService(db, rt).decide(
            s.person.id, s.app, Decision(["email", "given_name"], "30d"), "service-only"
        ),
    ),
    "grant.narrowed": Case(
        "grant.narrowed",
        granted(["email", "given_name"]),
        lambda db, rt, s: GrantService(db, rt).narrow(*_ids(s), ["given_name"]),
    ),
    "grant.narrowed (consent screen)": Case(
        "grant.narrowed",
        granted(["email", "given_name"]),
        lambda db, rt, s: GrantService(db, rt).decide(
            s.person.id, s.app, Decision(["email"], "30d"), "service-only"
        ),
    ),
    "grant.extended": Case(
        "grant.extended",
        granted(["email"], "30d"),
        lambda db, rt, s: GrantService(db, rt).decide(
            s.person.id, s.app, Decision(["email"], "1y"), "service-only"
        ),
    ),
    "grant.revoked": Case(
        "grant.revoked",
        granted(["email"]),
        lambda db, rt, s: GrantService(db, rt).revoke(*_ids(s)),
    ),
    "grant.expired": Case(
        "grant.expired",
        granted(["email"], "1d"),
        lambda db, rt, s: GrantService(db, rt).expire_due(now=later(2)),
    ),
    "token.reuse_detected": Case("token.reuse_detected", with_refresh_token, reuse),
    "vendor.registered": Case(
        "vendor.registered",
        lambda db, rt: Setup(),
        lambda db, rt, s: register_app(db, rt, app_input(), owner_id=None, registered_via="cli"),
    ),
    "vendor.changed": Case(
        "vendor.changed",
        registered,
        lambda db, rt, s: update_app(db, s.app, app_input("Send you a catalogue twice a year.")),
    ),
    "vendor.deleted": Case(
        "vendor.deleted", registered, lambda db, rt, s: delete_app(db, s.app, rt)
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_event_appends_one_entry_in_the_same_transaction(
    name: str, db: Session, rt: Runtime
) -> None:
    case = CASES[name]
    state = case.setup(db, rt)
    db.commit()
    before = count(db)
    assert StoredTree(db).size() == before

    # Rolled back: the change and its pending event go together.
    attempt = db.begin_nested()
    case.act(db, rt, state)
    db.flush()
    assert pending(db) == 1
    attempt.rollback()
    assert pending(db) == 0
    assert count(db) == before
    assert StoredTree(db).size() == before

    # Committed: pending (no index) until the sequencer runs; then exactly one entry of the
    # right type, at the next index (no gap left).
    case.act(db, rt, state)
    db.commit()
    assert pending(db) == 1
    assert StoredTree(db).size() == before
    [row] = entries_from(db, before)
    assert row.index == before
    assert row.event_type == case.event_type
    entry = json.loads(row.entry)
    assert set(entry) >= ENTRY_KEYS
    assert entry["event_type"] == case.event_type
    assert entry["index"] == row.index
    assert bytes(row.leaf_hash) == leaf_hash(bytes(row.entry))
    assert StoredTree(db).size() == before + 1
    app_id = state.app.id if state.app is not None else row.vendor_id
    assert entry["vendor_id"] == str(app_id) == str(row.vendor_id)
    if case.event_type.startswith("vendor."):
        assert entry["subject"] is None and row.subject is None
        assert entry["agreement_id"] is None and entry["fields"] == []
    else:
        assert state.person is not None
        assert entry["subject"] == row.subject
        assert row.subject == vendor_pseudonym_for(db, rt, state.person.id, app_id)


def test_deleting_an_app_with_an_active_grant_records_the_revocation_first(
    db: Session, rt: Runtime
) -> None:
    setup = registered(db, rt)
    who = person(db, rt)
    assert setup.app is not None
    GrantService(db, rt).decide(who.id, setup.app, Decision(["email"], "30d"), "service-only")
    db.commit()
    before = count(db)

    delete_app(db, setup.app, rt)
    db.commit()

    assert [e.event_type for e in entries_from(db, before)] == ["grant.revoked", "vendor.deleted"]


def test_a_decision_that_changes_nothing_appends_nothing(db: Session, rt: Runtime) -> None:
    setup = granted(["email"])(db, rt)
    db.commit()
    assert setup.person is not None and setup.app is not None
    grant = setup.grant
    assert grant is not None
    before = count(db)
    GrantService(db, rt).decide(
        setup.person.id, setup.app, Decision(["email"], "revoked"), "service-only"
    )
    db.commit()
    assert count(db) == before + 1  # 30 days -> until revoked: extended
    GrantService(db, rt).decide(
        setup.person.id, setup.app, Decision(["email"], "revoked"), "service-only"
    )
    GrantService(db, rt).revoke(setup.person.id, grant.id)
    GrantService(db, rt).revoke(setup.person.id, grant.id)  # already ended: no second entry
    db.commit()
    assert [e.event_type for e in entries_from(db, before)] == ["grant.extended", "grant.revoked"]


# -- the entry format -------------------------------------------------------------------------


def test_entries_are_canonical_json(db: Session, rt: Runtime) -> None:
    setup = nobody(db, rt)
    assert setup.person is not None and setup.app is not None
    before = count(db)
    service = GrantService(db, rt)
    grant = service.decide(
        setup.person.id, setup.app, Decision(["email", "address"], "1y"), "service-only"
    )
    service.narrow(setup.person.id, grant.id, ["address"])
    register_app(db, rt, app_input("Café ✓ — “quoted”"), owner_id=None, registered_via="cli")
    db.commit()

    rows = entries_from(db, before)
    assert [r.event_type for r in rows] == ["grant.given", "grant.narrowed", "vendor.registered"]
    for row in rows:
        data = bytes(row.entry)
        obj = json.loads(data)
        assert data == canonical_json(obj)
        assert data == json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        assert list(obj) == sorted(obj)
        assert set(obj) >= ENTRY_KEYS
        assert obj["index"] == row.index
        assert obj["time"].endswith("Z")
        assert naive_utc(datetime.fromisoformat(obj["time"])) == naive_utc(row.occurred_at)
        assert bytes(row.leaf_hash) == leaf_hash(data)
    given = json.loads(rows[0].entry)
    assert given["fields"] == ["email", "address"]
    assert given["purpose"] == setup.app.purpose
    assert given["agreement_id"] == "service-only"
    assert given["grant_id"] == str(grant.id)
    assert given["consent_text_hash"] is None  # not made on the consent screen
    assert json.loads(rows[1].entry)["fields"] == ["email"]
    assert "Café ✓ — “quoted”".encode() in bytes(rows[2].entry)  # UTF-8, not \\u escapes


# -- the consent screen's hash ----------------------------------------------------------------


def test_grants_made_on_the_consent_screen_carry_the_screen_hash(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    vendor = make_vendor(db, rt)
    account = account_of(db, rt, sign_up(client))
    before = count(db)

    def decide(scope: str) -> dict[str, Any]:
        url, _ = authorize_url(vendor_client(client, vendor, scope), new_verifier())
        assert "code=" in consent(client, url)
        return json.loads(entries_from(db, count(db) - 1)[0].entry)

    first = decide("openid profile:email")
    wider = decide("openid profile:email profile:given_name")

    grant = GrantService(db, rt).current(account.id, vendor.app.id)
    assert grant is not None
    assert [e.event_type for e in entries_from(db, before)] == ["grant.given", "grant.given"]
    for entry, scope in (
        (first, "openid profile:email"),
        (wider, "openid profile:email profile:given_name"),
    ):
        expected = consent_text_hash(vendor.app, scopes.fields_in(scope), grant.agreement_id)
        assert entry["consent_text_hash"] == expected
        assert len(expected) == 64 and int(expected, 16) >= 0
        assert entry["subject"] == vendor_pseudonym_for(db, rt, account.id, vendor.app.id)
        assert entry["agreement_id"] == grant.agreement_id
    assert first["fields"] == ["email"]
    assert sorted(wider["fields"]) == ["email", "given_name"]
    assert first["consent_text_hash"] != wider["consent_text_hash"]
