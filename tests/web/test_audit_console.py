"""The auditor console (/audit): the signed checkpoint, entries with their inclusion checked
against it, filters, per-vendor summaries, exports, who gets in, and no personal data."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from consent.grants.service import Decision, GrantService
from consent.ledger.merkle import canonical_json
from consent.ledger.models import LedgerCheckpoint, LedgerEntry
from consent.ledger.service import create_checkpoint, public_key_text
from consent.ledger.store import vendor_pseudonym_for
from consent.ledger.verify import verify_export
from consent.vendors.models import VendorApp
from tests.consent.factories import make_app
from tests.helpers import PASSWORD, sign_in, sign_up, unique_email
from tests.sequencer import append, sequence
from vault.accounts.models import Role
from vault.profile.service import ProfileService
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
_ROW = re.compile(r'<tr id="entry-(\d+)">(.*?)</tr>', re.S)
_INCLUSION = re.compile(r'<td class="inclusion">(.*?)</td>', re.S)


@pytest.fixture
def auditor(client: TestClient, db: Session, rt: Runtime) -> TestClient:
    email = unique_email("auditor")
    new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
    db.commit()
    response = sign_in(client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/audit"
    return client


def event(event_type: str, vendor: uuid.UUID | None, **extra: Any) -> dict[str, Any]:
    return {
        "event_type": event_type,
        "vendor_id": str(vendor) if vendor else None,
        "subject": extra.pop("subject", None),
        "grant_id": extra.pop("grant_id", None),
        "fields": extra.pop("fields", []),
        "purpose": None,
        "agreement_id": None,
        "consent_text_hash": None,
        **extra,
    }


def signed(db: Session, rt: Runtime) -> LedgerCheckpoint:
    row = create_checkpoint(db, rt)
    assert row is not None
    db.commit()
    return row


def inclusion(html: str) -> dict[int, str]:
    """Index -> the text of its inclusion cell, for every entry row on the page."""
    out = {}
    for index, body in _ROW.findall(html):
        cell = _INCLUSION.search(body)
        assert cell, body
        out[int(index)] = re.sub(r"<[^>]+>", "", cell.group(1)).strip()
    return out


def scenario(db: Session) -> tuple[VendorApp, VendorApp]:
    """Two vendors, events at known times: shop has 3 ended grants (2h, 4h, 6h) and 2 reuses."""
    shop, other = make_app(db, name="Grocer Shop"), make_app(db, name="Other App")
    g1, g2, g3 = (str(uuid.uuid4()) for _ in range(3))
    subject = "p-" + "a" * 32
    timeline = [
        (T0, event("grant.given", shop.id, grant_id=g1, subject=subject, fields=["email"])),
        (T0, event("grant.given", shop.id, grant_id=g2, fields=["given_name"])),
        (T0 + timedelta(hours=1), event("grant.given", shop.id, grant_id=g3)),
        (T0 + timedelta(hours=2), event("grant.revoked", shop.id, grant_id=g1, subject=subject)),
        (T0 + timedelta(hours=4), event("grant.expired", shop.id, grant_id=g2)),
        (T0 + timedelta(hours=7), event("grant.revoked", shop.id, grant_id=g3)),
        (T0 + timedelta(days=2), event("token.reuse_detected", shop.id)),
        (T0 + timedelta(days=3), event("token.reuse_detected", shop.id)),
        (T0 + timedelta(days=3), event("vendor.registered", other.id)),
    ]
    for when, ev in timeline:
        append(db, ev, now=when)
    db.commit()
    return shop, other


# -- who gets in ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/audit", "/audit/vendors", "/audit/export"])
def test_anonymous_visitors_are_sent_to_sign_in(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/signin?next=" + path)


@pytest.mark.parametrize("path", ["/audit", "/audit/vendors", "/audit/export"])
def test_individuals_get_403(client: TestClient, path: str) -> None:
    sign_up(client)
    response = client.get(path)
    assert response.status_code == 403
    assert "privacy auditors" in response.text
    assert 'href="/audit"' not in client.get("/profile").text


def test_auditor_nav_links_to_the_console(auditor: TestClient) -> None:
    page = auditor.get("/audit")
    assert page.status_code == 200
    assert '<a href="/audit" aria-current="page">Audit</a>' in page.text


# -- checkpoint and entries ------------------------------------------------------------------------


def test_auditor_sees_the_checkpoint_key_and_verified_entries(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    shop, _ = scenario(db)
    checkpoint = signed(db, rt)
    append(db, event("vendor.changed", shop.id))  # after the checkpoint
    db.commit()

    page = auditor.get("/audit")
    assert page.status_code == 200
    html = page.text
    assert f"{checkpoint.size} entries" in html
    assert checkpoint.note.splitlines()[0] in html
    assert '<pre class="signed-note">' in html
    assert public_key_text(rt) in html
    rows = inclusion(html)
    assert len(rows) == checkpoint.size + 1
    assert rows[checkpoint.size] == "not yet in a checkpoint"
    assert {rows[i] for i in range(checkpoint.size)} == {"verified"}
    assert "FAILED" not in html
    assert "Grocer Shop" in html  # the vendor by its name while the app exists


def test_no_checkpoint_yet(auditor: TestClient, db: Session) -> None:
    append(db, event("vendor.registered", None))
    db.commit()
    html = auditor.get("/audit").text
    assert "No checkpoint has been signed yet." in html
    assert set(inclusion(html).values()) == {"not yet in a checkpoint"}
    assert auditor.get("/audit/export").status_code == 404


def test_a_tampered_entry_fails_its_inclusion_check_alone(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    scenario(db)
    checkpoint = signed(db, rt)
    stored = db.get(LedgerEntry, 3)
    assert stored is not None
    forged = {**json.loads(stored.entry), "event_type": "grant.given"}
    db.execute(
        update(LedgerEntry).where(LedgerEntry.index == 3).values(entry=canonical_json(forged))
    )
    db.commit()

    html = auditor.get("/audit").text
    rows = inclusion(html)
    assert rows[3] == "FAILED"
    assert all(rows[i] == "verified" for i in range(checkpoint.size) if i != 3)
    assert '<strong class="warning">FAILED</strong>' in html
    assert "FAILED the inclusion check" in html


def test_deleted_vendor_shows_its_id(auditor: TestClient, db: Session) -> None:
    gone = uuid.uuid4()
    append(db, event("vendor.deleted", gone))
    db.commit()
    assert f"<code>{gone}</code>" in auditor.get("/audit").text


# -- filters and pages -----------------------------------------------------------------------------


def test_filters(auditor: TestClient, db: Session) -> None:
    shop, other = scenario(db)

    def indexes(**params: str) -> set[int]:
        response = auditor.get("/audit", params=params)
        assert response.status_code == 200, response.text
        return set(inclusion(response.text))

    assert indexes() == set(range(9))
    assert indexes(vendor=str(other.id)) == {8}
    assert indexes(vendor=str(shop.id)) == set(range(8))
    assert indexes(event_type="grant.revoked") == {3, 5}
    assert indexes(event_type="token.reuse_detected", vendor=str(shop.id)) == {6, 7}
    assert indexes(subject="p-" + "a" * 32) == {0, 3}
    assert indexes(**{"from": "2026-03-12"}) == {6, 7, 8}
    assert indexes(**{"to": "2026-03-10"}) == set(range(6))
    assert indexes(**{"from": "2026-03-12", "to": "2026-03-12"}) == {6}

    bad = auditor.get("/audit", params={"vendor": "nope", "event_type": "x", "from": "yesterday"})
    assert bad.status_code == 400
    assert "Choose an event type from the list." in bad.text
    assert "Give a date as YYYY-MM-DD." in bad.text
    assert inclusion(bad.text) == {}


def test_pages_of_fifty(auditor: TestClient, db: Session) -> None:
    for _ in range(60):
        append(db, event("vendor.changed", None))
    append(db, event("vendor.registered", None))
    db.commit()
    first = auditor.get("/audit")
    assert set(inclusion(first.text)) == set(range(11, 61))
    assert 'href="/audit?page=2"' in first.text
    second = auditor.get("/audit", params={"page": 2})
    assert set(inclusion(second.text)) == set(range(11))
    assert 'href="/audit?page=1"' in second.text
    filtered = auditor.get("/audit", params={"event_type": "vendor.changed"})
    assert 'href="/audit?event_type=vendor.changed&amp;page=2"' in filtered.text


# -- vendor summary --------------------------------------------------------------------------------


def test_vendor_summary(auditor: TestClient, db: Session, rt: Runtime) -> None:
    shop, other = scenario(db)
    person = new_account(db, rt, unique_email(), PASSWORD)
    GrantService(db, rt).decide(person.id, shop, Decision(["email"], "30d"), "service-only")
    db.commit()

    html = auditor.get("/audit/vendors").text
    row = re.search(rf'<tr id="vendor-{shop.id}">(.*?)</tr>', html, re.S)
    assert row, html
    cells = dict(re.findall(r'<td class="(\w+)">(.*?)</td>', row.group(1), re.S))
    assert cells["active"] == "1"
    assert cells["revocations"] == "2"
    assert cells["expiries"] == "1"
    assert cells["median"] == "0d 4h 0m 0s"
    assert "2" in cells["reuse"] and "warning" in cells["reuse"]
    assert "Grocer Shop" in row.group(1)
    other_row = re.search(rf'<tr id="vendor-{other.id}">(.*?)</tr>', html, re.S)
    assert other_row
    assert '<td class="median">—</td>' in other_row.group(1)


# -- export ----------------------------------------------------------------------------------------


def test_export_downloads_jsonl_with_the_checkpoint_first(
    auditor: TestClient, db: Session, rt: Runtime
) -> None:
    scenario(db)
    checkpoint = signed(db, rt)
    response = auditor.get("/audit/export")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;")
    assert ".jsonl" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert json.loads(lines[0]) == {"checkpoint": checkpoint.note}
    assert [json.loads(line)["index"] for line in lines[1:]] == list(range(checkpoint.size))
    report = verify_export(response.text.splitlines(keepends=True), public_key_text(rt))
    assert report.ok, report.problems

    part = auditor.get("/audit/export", params={"start": 2, "end": 5})
    part_lines = part.text.splitlines()
    assert json.loads(part_lines[0]) == {"checkpoint": checkpoint.note}
    assert [json.loads(line)["index"] for line in part_lines[1:]] == [2, 3, 4]
    assert all("proof" in json.loads(line) for line in part_lines[1:])
    assert auditor.get("/audit/export", params={"start": 5, "end": 2}).status_code == 400


@pytest.mark.parametrize(
    "params", [{"start": 2**63}, {"end": 2**63}, {"start": 67382396045834911744, "end": 2**70}]
)
def test_an_export_range_beyond_what_the_ledger_can_hold_is_refused(
    auditor: TestClient, db: Session, rt: Runtime, params: dict[str, int]
) -> None:
    scenario(db)
    signed(db, rt)
    response = auditor.get("/audit/export", params=params)
    assert response.status_code == 400
    assert "The form was not filled in as expected." in response.text


# -- no personal data ------------------------------------------------------------------------------


def test_auditor_pages_show_no_personal_data(auditor: TestClient, db: Session, rt: Runtime) -> None:
    email = unique_email("zephyrine.quixotebottom")
    given_name = "Zephyrine-Ødegård"
    person = new_account(db, rt, email, PASSWORD)
    ProfileService(db, rt).set_field(person, "given_name", given_name)
    app = make_app(db)
    grants = GrantService(db, rt)
    grant = grants.decide(person.id, app, Decision(["email", "given_name"], "30d"), "service-only")
    grants.narrow(person.id, grant.id, ["given_name"])
    sequence(db)
    db.commit()
    signed(db, rt)
    pseudonym = vendor_pseudonym_for(db, rt, person.id, app.id)
    db.commit()

    for path in ("/audit", "/audit/vendors", f"/audit?subject={pseudonym}"):
        html = auditor.get(path).text
        for secret in (email, email.split("@")[0], "zephyrine", "Zephyrine", "Ødegård"):
            assert secret not in html, (path, secret)
    assert pseudonym in auditor.get("/audit").text
