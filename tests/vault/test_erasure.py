"""Erasure: everything about one individual gone in one transaction, with a signed receipt.

Observed as each party would: the person in the portal (what the page says, what becomes of
their sign-in), a thief with a copy of the database (raw SQLite bytes, every PostgreSQL
column), an auditor with a ledger export and an older checkpoint, the vendors at a real
webhook receiver and with their tokens, and an operator with ``vrm erase``. A failure
midway, a connection that really drops included, leaves everything as it was.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography.exceptions import InvalidSignature
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, MetaData, func, select, text
from sqlalchemy.orm import Session

from consent.grants.access import log_access
from consent.grants.events import SubjectErasedData
from consent.grants.models import Grant
from consent.grants.receipts import ReceiptError, verify_receipt
from consent.grants.service import GrantService
from consent.ledger.checkpoint import parse_verifier_key, verify_signed_checkpoint
from consent.ledger.merkle import leaf_hash, verify_inclusion
from consent.ledger.models import LedgerEntry
from consent.ledger.service import public_key_text
from consent.ledger.signer import LedgerSigner
from consent.vendors.models import VendorApp
from consent.webhooks.delivery import deliver_due
from consent.webhooks.signing import verify_signature, webhook_secret_for
from intents.blocks import BlockService
from intents.decisions import OfferDecisions
from intents.models import Intent
from intents.service import IntentService
from tests.consent.factories import account_of, bearer, connect, individual
from tests.consent.oauth_helpers import Vendor
from tests.consent.test_webhooks import expected_signature
from tests.helpers import PASSWORD, page_csrf, sign_in, sign_up, unique_email
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from tests.sequencer import sequence
from tests.vault.conftest import FAST_ARGON2, PROFILE_VALUES, Deployment
from tests.vault.test_raw_scan import (
    Individual,
    fill_in_everything,
    forms,
    hits,
    postgres_cells,
    sqlite_files,
)
from tests.webhook_receiver import Received, Receiver, serve
from vault.accounts.models import Account
from vault.crypto import Binding, DecryptionError
from vault.keystore import KeyStore
from vault.portability import erasure
from vault.portability.core import CorePart
from vault.portability.erasure import CONFIRMATION
from vault.portability.parts import ERASURE_RECEIPT_TYP, MANIFEST_TYP
from vault.profile.models import ProfileField
from vault.profile.service import ProfileService
from vault.runtime import Runtime
from vault.settings import get_settings
from vrm.app import create_app

NOT_RIGHT = "The email address or password is not right."
SESSION_COOKIE = "vrm_session"


# -- helpers: what a browser, a vendor and an auditor do ------------------------------------


def browser(rt: Runtime) -> TestClient:
    return TestClient(
        create_app(runtime=rt),
        base_url="http://testserver",
        follow_redirects=False,
        raise_server_exceptions=False,
    )


def erase_form(
    client: TestClient, password: str = PASSWORD, confirmation: str = CONFIRMATION
) -> Response:
    token = page_csrf(client, "/account/erase")
    response: Response = client.post(
        "/account/erase",
        data={"csrf_token": token, "password": password, "confirmation": confirmation},
    )
    return response


def field_error(html: str, name: str) -> str | None:
    """The message shown under the field ``name``, which must point to it (aria)."""
    found = re.search(rf'<p class="field-error" id="{name}-error">([^<]*)</p>', html)
    if found is None:
        return None
    assert re.search(rf'id="{name}"[^>]*aria-describedby="[^"]*{name}-error', html), name
    return found.group(1)


def receipt_on(page: str) -> str:
    found = re.search(r'<textarea id="receipt"[^>]*>([^<]+)</textarea>', page)
    assert found, "the page shows no receipt"
    return found.group(1).strip()


def b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def verified_receipt(token: str, public_key: str) -> dict[str, Any]:
    """Check the compact JWS as anyone with the vault's verifier key would: Ed25519 over
    ``header.payload``, recomputed with ``cryptography`` (not with the vault's code)."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64url(header_b64))
    assert header["alg"] == "Ed25519"  # RFC 9864's name, no longer the deprecated EdDSA
    assert header["typ"] == ERASURE_RECEIPT_TYP
    key = parse_verifier_key(public_key)
    assert header["kid"] == key.key_id.hex()
    key.public_key.verify(b64url(signature_b64), f"{header_b64}.{payload_b64}".encode())
    payload: dict[str, Any] = json.loads(b64url(payload_b64))
    return payload


def vendor_profile(client: TestClient, headers: dict[str, str]) -> Response:
    response: Response = client.get("/vendor/v1/profile", headers=headers)
    return response


def webhooks_to(receiver: Receiver, path: str, event_type: str) -> list[Received]:
    return [
        r for r in receiver.requests if r.path == path and json.loads(r.body)["type"] == event_type
    ]


def signed_by_the_vault(rt: Runtime, app: VendorApp, received: Received) -> dict[str, Any]:
    """What the vendor checks: the Standard Webhooks signature (recomputed with hmac here)
    and the timestamp; returns the payload."""
    secret = webhook_secret_for(rt, app)
    assert expected_signature(secret, received) in received.headers["webhook-signature"].split()
    payload: dict[str, Any] = verify_signature(secret, received.headers, received.body)
    return payload


def all_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as a thief or an auditor of the database would see it."""
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        return {
            name: sorted((tuple(row) for row in conn.execute(table.select())), key=repr)
            for name, table in sorted(tables.tables.items())
        }


def uuid_forms(value: uuid.UUID) -> set[bytes]:
    """A row id as SQLite (32 hex digits) and PostgreSQL (text) store it."""
    return {value.hex.encode(), str(value).encode()}


def postgres_uuid_cells(engine: Engine) -> dict[str, bytes]:
    """Every uuid column (which ``postgres_cells`` leaves out), keyed ``table.column#n``."""
    cells: dict[str, bytes] = {}
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type = 'uuid'"
            )
        ).all()
        for table, column in columns:
            values = conn.execute(text(f'SELECT "{column}"::text FROM "{table}"')).scalars()
            for n, value in enumerate(values):
                if value is not None:
                    cells[f"{table}.{column}#{n}"] = value.encode()
    return cells


def stored_everywhere(engine: Engine) -> dict[str, bytes]:
    """The database as bytes: SQLite's files, or every PostgreSQL cell that can hold text."""
    if engine.dialect.name == "sqlite":
        return sqlite_files(engine)
    return postgres_cells(engine) | postgres_uuid_cells(engine)


@contextmanager
def operator_env(deployment: Deployment) -> Iterator[None]:
    """The environment an operator's shell has for ``vrm`` (as the ``deployment`` fixture
    sets it), for fixtures wider than one test."""
    with pytest.MonkeyPatch.context() as env:
        for name in ("VRM_ENVIRONMENT", "VRM_BASE_URL", "VRM_SECRET_KEY"):
            env.delenv(name, raising=False)
        env.setenv("VRM_DATABASE_URL", deployment.url)
        env.setenv("VRM_KEY_DIR", str(deployment.key_dir))
        for name, value in FAST_ARGON2.items():
            env.setenv(f"VRM_{name.upper()}", str(value))
        try:
            yield
        finally:
            get_settings.cache_clear()


# -- the portal (each test in a rolled-back transaction) ------------------------------------


@pytest.fixture
def compactions(monkeypatch: pytest.MonkeyPatch) -> list[Runtime]:
    """Here the test's own transaction holds SQLite's write lock, which the WAL compaction
    after an erasure would wait for; record that it was asked for instead (the committed
    deployments below let it run)."""
    calls: list[Runtime] = []
    monkeypatch.setattr(erasure, "compact", calls.append)
    return calls


@pytest.fixture
def person(
    client: TestClient, db: Session, rt: Runtime, compactions: list[Runtime]
) -> dict[str, Any]:
    """Signed in in ``client``: three profile fields, a connection to Velo Shop that read
    once, an intent with an offer from Bidder Bikes."""
    owner = individual(client, db, rt, given_name="Zephyrine", phone="+31 20 794 6138")
    velo = market_vendor(db, rt, name="Velo Shop")
    grant = connect(db, rt, owner, velo.app, ["email", "phone"])
    log_access(db, owner.id, velo.app, ["email"])
    db.commit()
    bidder = market_vendor(db, rt, name="Bidder Bikes")
    intent = make_intent(db, rt, owner, title="Quixotic tandem bicycle")
    offered = client.post(
        f"/vendor/v1/intents/{intent.id}/offers",
        headers=app_token(db, rt, bidder),
        json=offer_body(),
    )
    assert offered.status_code == 201, offered.text
    return {
        "owner": owner,
        "owner_id": owner.id,
        "email": ProfileService(db, rt).email_of(owner.id),
        "grant": grant,
        "velo_reads": bearer(db, rt, velo.app, grant),
        "intent": intent,
        "offer_id": uuid.UUID(offered.json()["id"]),
    }


def assert_nothing_erased(client: TestClient, person: dict[str, Any]) -> None:
    """The person still has their vault, and the vendor still reads what it was allowed."""
    profile = client.get("/profile")
    assert profile.status_code == 200 and "Zephyrine" in profile.text
    assert "Quixotic tandem bicycle" in client.get("/intents").text
    read = vendor_profile(client, person["velo_reads"])
    assert read.status_code == 200 and read.json()["fields"]["phone"] == "+31207946138"


def test_the_erase_page_says_what_will_happen(client: TestClient, person: dict[str, Any]) -> None:
    page = client.get("/account/erase")
    assert page.status_code == 200
    assert "Bidder Bikes, Velo Shop can no longer read anything" in page.text
    assert "each is asked to delete the copies it holds" in page.text
    assert "1 connection, 1 recorded read, 1 intent and 1 offer are deleted" in page.text
    assert "Your profile (3 fields)" in page.text
    assert "your sign-in and 1 session" in page.text
    assert f"Type “{CONFIRMATION}” to confirm" in page.text
    assert 'name="csrf_token"' in page.text


def test_a_wrong_password_is_shown_at_the_field_and_erases_nothing(
    client: TestClient, person: dict[str, Any]
) -> None:
    response = erase_form(client, password="not the password at all")

    assert response.status_code == 400
    assert field_error(response.text, "password") == "The password is not right."
    assert field_error(response.text, "confirmation") is None
    assert "Your vault is erased" not in response.text
    assert "Bidder Bikes, Velo Shop" in response.text  # the same page, still saying what happens
    assert_nothing_erased(client, person)


@pytest.mark.parametrize("typed", ["", "erase my vault!"])
def test_a_wrong_confirmation_is_shown_at_the_field_and_erases_nothing(
    client: TestClient, person: dict[str, Any], typed: str
) -> None:
    response = erase_form(client, confirmation=typed)

    assert response.status_code == 400
    assert field_error(response.text, "confirmation") == f"Type “{CONFIRMATION}” to confirm."
    assert field_error(response.text, "password") is None
    assert_nothing_erased(client, person)


def test_erasing_needs_the_csrf_token(client: TestClient, person: dict[str, Any]) -> None:
    form = {"password": PASSWORD, "confirmation": CONFIRMATION}
    assert client.post("/account/erase", data=form).status_code == 403
    assert client.post("/account/erase", data={**form, "csrf_token": "forged"}).status_code == 403
    assert_nothing_erased(client, person)


def test_erasing_shows_the_signed_receipt_and_signs_the_person_out(
    client: TestClient, rt: Runtime, person: dict[str, Any], compactions: list[Runtime]
) -> None:
    old_cookie = client.cookies.get(SESSION_COOKIE)
    assert old_cookie

    response = erase_form(client)

    assert response.status_code == 200
    assert compactions == [rt]  # the SQLite WAL is truncated once the response is out
    assert "Your vault is erased" in response.text
    payload = verified_receipt(receipt_on(response.text), public_key_text(rt))
    assert payload["subject"] in response.text
    assert 'download="erasure-receipt.jws"' in response.text
    cleared = [c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert cleared and all("max-age=0" in c.lower() for c in cleared)
    assert client.cookies.get(SESSION_COOKIE) is None
    assert client.get("/profile").headers["location"] == "/signin?next=/profile"
    # Even a browser that kept the old cookie has no session: it was deleted, not just unset.
    client.cookies.set(SESSION_COOKIE, old_cookie)
    assert client.get("/account/erase").headers["location"].startswith("/signin")


def test_erasing_signs_out_every_browser_of_the_person(
    app: FastAPI, client: TestClient, person: dict[str, Any]
) -> None:
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as phone:
        assert sign_in(phone, person["email"]).status_code == 303
        assert phone.get("/profile").status_code == 200

        assert erase_form(client).status_code == 200

        assert phone.get("/profile").headers["location"] == "/signin?next=/profile"


def test_someone_with_nothing_but_an_account_can_erase_it(
    client: TestClient, db: Session, rt: Runtime, compactions: list[Runtime]
) -> None:
    owner_id = individual(client, db, rt).id
    page = client.get("/account/erase")
    assert "no vendor can read your data now" in page.text

    response = erase_form(client)

    assert response.status_code == 200
    payload = verified_receipt(receipt_on(response.text), public_key_text(rt))
    assert payload["vendors_asked_to_delete"] == []
    assert (payload["deleted"]["accounts"], payload["deleted"]["grants"]) == (1, 0)
    assert payload["ledger"]["entry"]  # the erasure is in the ledger all the same
    db.expire_all()
    assert db.get(Account, owner_id) is None


def test_an_accepted_offer_its_grant_and_a_blocked_vendor_go_too(
    client: TestClient, db: Session, rt: Runtime, person: dict[str, Any]
) -> None:
    owner = person["owner"]
    OfferDecisions(db, rt).accept(owner, person["intent"].id, person["offer_id"], fields=["email"])
    pest = market_vendor(db, rt, name="Pest Shop")
    BlockService(db, rt).block(owner, pest.app.id)
    db.commit()

    response = erase_form(client)

    assert response.status_code == 200, response.text
    payload = verified_receipt(receipt_on(response.text), public_key_text(rt))
    deleted = payload["deleted"]
    assert (deleted["grants"], deleted["intent_offers"], deleted["intent_blocks"]) == (2, 1, 1)
    # Bidder Bikes now held a grant (from the accepted offer); Pest Shop never knew them.
    assert payload["vendors_asked_to_delete"] == ["Bidder Bikes", "Velo Shop"]
    db.expire_all()
    assert db.scalars(select(Grant).where(Grant.individual_id == person["owner_id"])).all() == []


def test_after_erasure_the_old_sign_in_fails_like_an_unknown_account(
    client: TestClient, person: dict[str, Any]
) -> None:
    assert erase_form(client).status_code == 200

    erased = sign_in(client, person["email"])
    unknown = sign_in(client, unique_email())

    assert erased.status_code == unknown.status_code == 401
    assert NOT_RIGHT in erased.text
    assert re.sub(r'value="[^"]*"', "", erased.text) == re.sub(r'value="[^"]*"', "", unknown.text)


def test_after_erasure_the_email_address_can_sign_up_afresh(
    client: TestClient, db: Session, rt: Runtime, person: dict[str, Any]
) -> None:
    assert erase_form(client).status_code == 200

    sign_up(client, person["email"])

    fresh = account_of(db, rt, person["email"])
    assert fresh.id != person["owner_id"]
    assert ProfileService(db, rt).get(fresh.id).values == {"email": person["email"]}
    assert "Quixotic tandem bicycle" not in client.get("/intents").text
    assert "Velo Shop" not in client.get("/connections").text


# -- after erasure on a committed deployment ------------------------------------------------

TITLE = "Okarina aus Walnussholz für Linkshänder"
DESCRIPTION = "Bitte mit Gravur Zephyrine-Ødegård, geliefert an die Xylophonestraat"
CITY = "Quokkahausen-Süd"
DRAFT_TITLE = "Vierzehn Meter Seidenband, mitternachtsblau"
DRAFT_DESCRIPTION = "Für das Jubiläum von Quixotebottom-Ñandú, geheim halten"
OTHER_NAME = "Bartholomeus-Kontrolle"
OTHER_TITLE = "Kontroll-Tandem für die Nachbarin"
OTHER_CITY = "Kontrollhafen-Nord"


@dataclass
class World:
    """A committed deployment where one person was erased through the portal, after which
    the worker delivered the webhooks. Everything the parties saw before is kept here."""

    deployment: Deployment
    rt: Runtime
    person: Individual
    person_id: uuid.UUID
    other_id: uuid.UUID
    other_email: str
    vendors: dict[str, Vendor]
    grant_id: uuid.UUID
    ended_grant_id: uuid.UUID
    intent_id: uuid.UUID
    velo_reads: dict[str, str]
    bystander_reads: dict[str, str]
    market: dict[str, dict[str, str]]
    sub_seen_by_velo: str
    owner_seen: dict[str, str]
    ciphertexts: list[tuple[Binding, bytes]]
    public_key: Path
    checkpoint_before: Path
    receipt: str
    receiver: Receiver
    pseudonym: str
    """The person's ledger pseudonym, as their grant's ledger entry named them before."""
    needles: set[bytes] = field(default_factory=set)
    found_before: set[bytes] = field(default_factory=set)
    """The needles a scan found before the erasure (what is stored in clear on purpose)."""

    def operator(self, *args: str) -> str:
        with operator_env(self.deployment):
            return self.deployment.ok(*args)

    def vendor(self) -> TestClient:
        return browser(self.deployment.runtime())


def build_world(deployment: Deployment, receiver: Receiver, directory: Path) -> World:
    _engine, person = fill_in_everything(deployment)  # every profile field, through the app
    rt = deployment.runtime()
    hook = receiver.url
    with rt.sessions() as db:  # set up, then closed (a SQLite writer would block the app)
        owner = account_of(db, rt, person.email)
        vendors = {
            name: market_vendor(db, rt, name=label, webhook_url=f"{hook}/{name}")
            for name, label in [
                ("velo", "Velo Shop"),
                ("ride", "Ride Along"),
                ("bidder", "Bidder Bikes"),
                ("bystander", "Bystander Books"),
            ]
        }
        grant = connect(db, rt, owner, vendors["velo"].app, ["email", "given_name", "address"])
        velo_reads = bearer(db, rt, vendors["velo"].app, grant)
        ended = connect(db, rt, owner, vendors["ride"].app, ["email"])
        GrantService(db, rt).revoke(owner.id, ended.id)
        db.commit()
        wanted = make_intent(db, rt, owner, title=TITLE, description=DESCRIPTION, city=CITY)
        make_intent(db, rt, owner, publish=False, title=DRAFT_TITLE, description=DRAFT_DESCRIPTION)

        other_email = unique_email("neighbour")
        other_id = deployment.add_individual(rt, other_email, full=False)
        other = db.get_one(Account, other_id)
        ProfileService(db, rt).set_field(other, "given_name", OTHER_NAME)
        db.commit()
        other_grant = connect(db, rt, other, vendors["bystander"].app, ["email", "given_name"])
        bystander_reads = bearer(db, rt, vendors["bystander"].app, other_grant)
        other_intent = make_intent(db, rt, other, title=OTHER_TITLE, city=OTHER_CITY)
        market = {name: app_token(db, rt, vendor) for name, vendor in vendors.items()}

        ciphertexts = [
            (Binding(owner.id, "profile_fields", "value_ct", row.id, label=row.field_key), ct)
            for row, ct in db.execute(
                select(ProfileField, ProfileField.value_ct).where(ProfileField.owner_id == owner.id)
            )
        ]
        title_ct = db.scalars(select(Intent.title_ct).where(Intent.id == wanted.id)).one()
        ciphertexts.append((Binding(owner.id, "intents", "title_ct", wanted.id), title_ct))
        keys = KeyStore(db, rt.keys)
        assert all(keys.decrypt(b, ct) for b, ct in ciphertexts)  # they open, before
        owner_id = owner.id
        sequence(db)  # the worker integrates the pending events
        db.commit()
        [pseudonym] = {
            json.loads(entry)["subject"]
            for entry in db.scalars(select(LedgerEntry.entry))
            if json.loads(entry).get("grant_id") == str(grant.id)
        }

    with browser(rt) as client:
        assert sign_in(client, person.email).status_code == 303
        cookie = client.cookies.get(SESSION_COOKIE)
        # What the vendors learn before: Velo reads the profile; offers come in.
        read = vendor_profile(client, velo_reads)
        assert read.status_code == 200, read.text
        assert read.json()["fields"]["given_name"] == PROFILE_VALUES["given_name"]
        owner_seen = {}
        for name, intent_id in [
            ("velo", wanted.id),
            ("bidder", wanted.id),
            ("bystander", other_intent.id),
        ]:
            offered = client.post(
                f"/vendor/v1/intents/{intent_id}/offers", headers=market[name], json=offer_body()
            )
            assert offered.status_code == 201, offered.text
            owner_seen[name] = offered.json()["owner"]

        world = World(
            deployment=deployment,
            rt=rt,
            person=person,
            person_id=owner_id,
            other_id=other_id,
            other_email=other_email,
            vendors=vendors,
            grant_id=grant.id,
            ended_grant_id=ended.id,
            intent_id=wanted.id,
            velo_reads=velo_reads,
            bystander_reads=bystander_reads,
            market=market,
            sub_seen_by_velo=read.json()["sub"],
            owner_seen=owner_seen,
            ciphertexts=ciphertexts,
            public_key=directory / "vault.pub",
            checkpoint_before=directory / "checkpoint-before.txt",
            receipt="",
            receiver=receiver,
            pseudonym=pseudonym,
        )
        # The auditor's copy of the verifier key and of a checkpoint before the erasure.
        world.public_key.write_text(world.operator("ledger", "public-key"), encoding="utf-8")
        world.checkpoint_before.write_text(world.operator("ledger", "checkpoint"), "utf-8")

        # Everything the person stored or was known by: every profile value, the email and
        # the password, the session cookies, the intents' words and city, the account id,
        # and the token a vendor held for them.
        world.needles = person.secrets | uuid_forms(owner_id) | {str(cookie).encode()}
        for value in (TITLE, DESCRIPTION, CITY, DRAFT_TITLE, DRAFT_DESCRIPTION):
            world.needles |= forms(value)
        world.needles.add(velo_reads["Authorization"].removeprefix("Bearer ").encode())
        world.found_before = set(hits(stored_everywhere(deployment.engine()), world.needles))

        response = erase_form(client)
        assert response.status_code == 200, response.text
        world.receipt = receipt_on(response.text)

    world.operator("worker", "--once")  # the webhook worker delivers what is due
    return world


@pytest.fixture(scope="module")
def world(
    backend: str, new_database: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    directory = tmp_path_factory.mktemp("erasure")
    deployment = Deployment(new_database(backend, migrated=True), directory / "keys")
    with serve() as receiver:
        try:
            yield build_world(deployment, receiver, directory)
        finally:
            deployment.close()


def test_no_value_the_person_stored_is_left_anywhere_in_the_database(world: World) -> None:
    engine = world.deployment.engine()
    stored = stored_everywhere(engine)

    assert hits(stored, world.needles) == {}
    # Controls: before the erasure the same scan found the person's intent city (stored in
    # clear on purpose, for vendors' searches) and their account id; afterwards it still
    # finds another person's, so an empty result means the values are gone.
    assert CITY.encode() in world.found_before
    assert world.found_before & uuid_forms(world.person_id)
    assert hits(stored, {OTHER_CITY.encode()})
    assert hits(stored, uuid_forms(world.other_id))


def test_the_persons_ciphertexts_no_longer_decrypt(world: World) -> None:
    rt = world.deployment.runtime()  # a new process, with the same key-encryption key
    with rt.sessions() as db:
        keys = KeyStore(db, rt.keys)
        for binding, ciphertext in world.ciphertexts:
            with pytest.raises(DecryptionError):
                keys.decrypt(binding, ciphertext)
        # Control: the same key store still opens another person's values.
        assert ProfileService(db, rt).get(world.other_id).values["given_name"] == OTHER_NAME


def test_the_ledger_still_verifies_offline_and_extends_the_checkpoint_from_before(
    world: World, tmp_path: Path
) -> None:
    export = tmp_path / "ledger.jsonl"
    world.operator("ledger", "export", str(export), "--with-proofs")

    with operator_env(world.deployment):
        result = world.deployment.cli(
            "ledger",
            "verify",
            str(export),
            "--public-key",
            str(world.public_key),
            "--previous-checkpoint",
            str(world.checkpoint_before),
        )

    assert result.exit_code == 0, result.output
    assert "OK: the export is complete, unaltered and signed by the trusted key." in result.output
    before = verify_signed_checkpoint(
        world.checkpoint_before.read_text("utf-8"), world.public_key.read_text("utf-8")
    )
    lines = export.read_text("utf-8").splitlines()
    entries = [json.loads(line) for line in lines[1:]]
    assert len(entries) > before.size
    [erasure_line] = [e for e in entries if e["entry"]["event_type"] == "individual.erased"]
    recorded = erasure_line["entry"]
    subject = recorded["subject"]
    assert subject.startswith("p-") and subject != world.pseudonym
    assert set(recorded) == {"event_type", "subject", "index", "time"}
    assert erasure_line["index"] >= before.size
    # The person's earlier entries with one vendor stay, under that pair's pseudonym, naming
    # no one; the erasure entry carries a pseudonym of its own.
    theirs = {
        e["entry"]["event_type"] for e in entries if e["entry"].get("subject") == world.pseudonym
    }
    assert theirs == {"grant.given", "grant.revoked"}
    assert [e for e in entries if e["entry"].get("subject") == subject] == [erasure_line]
    assert hits({"export": export.read_bytes()}, world.needles) == {}


def test_other_individuals_are_untouched(world: World) -> None:
    rt = world.deployment.runtime()
    with rt.sessions() as db:
        assert ProfileService(db, rt).get(world.other_id).values == {
            "email": world.other_email,
            "given_name": OTHER_NAME,
        }
        [intent] = IntentService(db, rt).mine(world.other_id)
        assert (intent.title, intent.intent.city, intent.intent.status) == (
            OTHER_TITLE,
            OTHER_CITY,
            "open",
        )
    with world.vendor() as vendor:
        read = vendor_profile(vendor, world.bystander_reads)
        assert read.status_code == 200, read.text
        assert read.json()["fields"]["given_name"] == OTHER_NAME
    with browser(rt) as neighbour:
        assert sign_in(neighbour, world.other_email).status_code == 303
        assert OTHER_TITLE in neighbour.get("/intents").text


def test_the_vendors_tokens_for_the_person_stop_working(world: World) -> None:
    with world.vendor() as vendor:
        assert vendor_profile(vendor, world.velo_reads).status_code == 401
        # The vendor's own (client credentials) token still works: the intent is gone.
        listed = vendor.get("/vendor/v1/intents", headers=world.market["velo"])
        assert listed.status_code == 200
        titles = {i["title"] for i in listed.json()["data"]}
        assert OTHER_TITLE in titles and TITLE not in titles


def test_every_vendor_that_knew_the_person_is_asked_to_delete_by_a_signed_webhook(
    world: World,
) -> None:
    def erased_notice(name: str) -> dict[str, Any]:
        [received] = webhooks_to(world.receiver, f"/hooks/{name}", "subject.erased")
        payload = signed_by_the_vault(world.rt, world.vendors[name].app, received)
        data: dict[str, Any] = payload["data"]
        SubjectErasedData.model_validate(data)  # as the vendor API reference documents it
        assert "Delete every copy" in data.pop("request")
        return data

    # Velo held a grant and made an offer: both names it knew the person by.
    assert erased_notice("velo") == {
        "subject": world.sub_seen_by_velo,
        "grant_ids": [str(world.grant_id)],
        "owner": world.owner_seen["velo"],
    }
    # Ride Along's grant had ended before: it is asked too, by the sub it was given.
    [granted] = webhooks_to(world.receiver, "/hooks/ride", "consent.granted")
    assert erased_notice("ride") == {
        "subject": json.loads(granted.body)["data"]["subject"],
        "grant_ids": [str(world.ended_grant_id)],
    }
    # Bidder Bikes only made an offer: it knew the intent owner's pseudonym.
    assert erased_notice("bidder") == {"owner": world.owner_seen["bidder"]}
    # A vendor that never knew the person hears nothing about them.
    assert webhooks_to(world.receiver, "/hooks/bystander", "subject.erased") == []
    payload = verified_receipt(world.receipt, world.public_key.read_text("utf-8"))
    assert payload["vendors_asked_to_delete"] == ["Bidder Bikes", "Ride Along", "Velo Shop"]
    # No webhook to anyone carries what the person stored.
    bodies = {f"{r.path}#{n}": r.body for n, r in enumerate(world.receiver.requests)}
    assert hits(bodies, world.needles) == {}


def test_the_grants_and_offers_erasure_ended_are_announced_to_their_vendors(
    world: World,
) -> None:
    [revoked] = webhooks_to(world.receiver, "/hooks/velo", "consent.revoked")
    data = signed_by_the_vault(world.rt, world.vendors["velo"].app, revoked)["data"]
    assert data["grant_id"] == str(world.grant_id)
    assert data["subject"] == world.sub_seen_by_velo and data["revoked_at"]
    for name in ("velo", "bidder"):
        [withdrawn] = webhooks_to(world.receiver, f"/hooks/{name}", "intent.withdrawn")
        data = signed_by_the_vault(world.rt, world.vendors[name].app, withdrawn)["data"]
        assert data["intent_id"] == str(world.intent_id)
    # Ride Along's grant was revoked once, before: erasure does not announce it again.
    assert len(webhooks_to(world.receiver, "/hooks/ride", "consent.revoked")) == 1


# -- the receipt (the world's, handed over by the portal) -----------------------------------


def test_the_receipt_is_a_compact_jws_signed_with_the_vaults_ledger_key(world: World) -> None:
    token, public_key = world.receipt, world.public_key.read_text("utf-8").strip()
    assert token.count(".") == 2
    payload = verified_receipt(token, public_key)
    signer = LedgerSigner(world.rt)
    assert json.loads(signer.verify(token, public_key, ERASURE_RECEIPT_TYP)) == payload
    # Signed by the same key, it is still no export manifest and no consent receipt.
    with pytest.raises(ValueError, match="not a vrm-export-manifest"):
        signer.verify(token, public_key, MANIFEST_TYP)
    with pytest.raises(ReceiptError, match="not a consent receipt"):
        verify_receipt(token, public_key)
    # Altered after signing, it no longer verifies.
    header, body, signature = token.split(".")
    forged = json.loads(b64url(body))
    forged["vendors_asked_to_delete"].append("Someone Else")
    forged_body = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    with pytest.raises(InvalidSignature):
        verified_receipt(f"{header}.{forged_body}.{signature}", public_key)
    with pytest.raises(ValueError):
        signer.verify(f"{header}.{forged_body}.{signature}", public_key, ERASURE_RECEIPT_TYP)


def test_the_receipt_says_what_was_deleted_and_which_vendors_were_asked(world: World) -> None:
    payload = verified_receipt(world.receipt, world.public_key.read_text("utf-8"))

    assert payload["type"] == "vrm-vault-erasure-receipt"
    # The ledger's names for them, and only those: the erasure entry's, and one per vendor.
    assert payload["subject"] not in (world.pseudonym, None)
    assert world.pseudonym in payload["ledger_subjects"]
    assert len(set(payload["ledger_subjects"])) == 3  # two vendors with grants, and the erasure
    assert payload["subject"] in payload["ledger_subjects"]
    assert payload["vendors_asked_to_delete"] == ["Bidder Bikes", "Ride Along", "Velo Shop"]
    assert payload["deleted"] == {
        "profile_fields": len(PROFILE_VALUES) + 2,  # and the sign-in email, a custom field
        "sessions": 2,  # the browser they signed up in, and the one they erased from
        "data_keys": 1,
        "accounts": 1,
        "grants": 2,
        "access_log": 1,
        "intents": 2,
        "intent_offers": 2,
        "intent_blocks": 0,
        "ledger_pseudonym_links": 3,
        "previous_vendor_lists": 0,
        "known_devices": 2,  # the same two browsers
        "notices": 5,  # their list: new devices, connections, offers
        "notice_switches": 0,
        "queued_mail": 5,  # not sent yet: no worker runs here
        "mailed_links": 1,  # the (used) confirmation link
    }
    assert payload["vault"]["public_key"] == world.public_key.read_text("utf-8").strip()
    erased_at = datetime.fromisoformat(payload["erased_at"])
    assert abs(erased_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert hits({"receipt": json.dumps(payload).encode()}, world.needles) == {}


def test_the_receipts_ledger_evidence_verifies_offline(world: World) -> None:
    public_key = world.public_key.read_text("utf-8")
    receipt = verified_receipt(world.receipt, public_key)
    evidence = receipt["ledger"]

    checkpoint = verify_signed_checkpoint(evidence["checkpoint"], public_key)
    entry = evidence["entry"].encode()
    assert leaf_hash(entry).hex() == evidence["leaf_hash"]
    assert checkpoint.size == evidence["tree_size"] > evidence["ledger_index"]
    proof = [bytes.fromhex(h) for h in evidence["inclusion_proof"]]
    index = evidence["ledger_index"]
    assert verify_inclusion(leaf_hash(entry), index, checkpoint.size, proof, checkpoint.root)
    assert not verify_inclusion(
        leaf_hash(entry.replace(b"erased", b"Erased")),
        index,
        checkpoint.size,
        proof,
        checkpoint.root,
    )
    recorded = json.loads(entry)
    assert recorded["event_type"] == "individual.erased"
    assert recorded["subject"] == receipt["subject"]
    assert set(recorded) == {"event_type", "subject", "index", "time"}


# -- a failure midway -----------------------------------------------------------------------


@dataclass
class Small:
    rt: Runtime
    client: TestClient
    owner_id: uuid.UUID
    ciphertext: tuple[Binding, bytes]


@pytest.fixture
def small(deployment: Deployment, receiver: Receiver) -> Iterator[Small]:
    """A committed deployment: a person with a full profile, a grant, an intent with an
    offer, signed in in the portal (which answers 500 on a server error, as served)."""
    deployment.upgrade()
    rt = deployment.runtime()
    email = unique_email()
    owner_id = deployment.add_individual(rt, email)
    with rt.sessions() as db:
        owner = db.get_one(Account, owner_id)
        vendor = market_vendor(db, rt, webhook_url=receiver.url)
        connect(db, rt, owner, vendor.app, ["email", "given_name"])
        intent = make_intent(db, rt, owner, title=TITLE)
        row = db.scalars(
            select(ProfileField).where(
                ProfileField.owner_id == owner_id, ProfileField.field_key == "given_name"
            )
        ).one()
        ciphertext = (
            Binding(owner_id, "profile_fields", "value_ct", row.id, label="given_name"),
            row.value_ct,
        )
        offer_headers = app_token(db, rt, vendor)
    with browser(rt) as client:
        offered = client.post(
            f"/vendor/v1/intents/{intent.id}/offers", headers=offer_headers, json=offer_body()
        )
        assert offered.status_code == 201, offered.text
        assert sign_in(client, email).status_code == 303
        assert deliver_due(rt.sessions, rt) >= 1  # what was queued so far is out
        yield Small(rt, client, owner_id, ciphertext)


def drop_the_connection(db: Session, backend: str, deployment: Deployment) -> None:
    """The erasure's database connection goes away mid-transaction: on PostgreSQL the server
    terminates its backend (from another connection); on SQLite the file handle is closed
    under it (what a crashed process leaves: the open transaction never commits)."""
    if backend == "postgresql":
        pid = db.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with deployment.engine().connect() as admin:
            ended = admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            assert ended.scalar_one() is True
            still = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            assert admin.execute(still, {"pid": pid}).scalar_one() == 0
    else:
        db.connection().connection.dbapi_connection.close()  # type: ignore[union-attr]


def test_failures_midway_erase_nothing_and_a_retry_completes(
    small: Small,
    deployment: Deployment,
    backend: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twice the erasure fails after every part did its deletes (the core part, last, has
    destroyed the key and deleted the account): once a part raises, once the database
    connection drops. Each time everything is still there; the third attempt completes."""
    engine, rt = deployment.engine(), deployment.runtime()
    binding, ciphertext = small.ciphertext
    before = all_rows(engine)
    erase_for_real = CorePart.erase

    for failure in ("a part raises", "the connection drops"):

        def erase_then_fail(
            self: CorePart, db: Session, *args: Any, failure: str = failure
        ) -> None:
            erase_for_real(self, db, *args)
            account = select(func.count()).where(Account.id == small.owner_id)
            assert db.scalar(account) == 0  # deleted, in the erasure's transaction
            if failure == "a part raises":
                raise RuntimeError("the disk is full")
            drop_the_connection(db, backend, deployment)

        monkeypatch.setattr(CorePart, "erase", erase_then_fail)
        failed = erase_form(small.client)

        # A dropped connection is an outage (503, try again); anything else a 500.
        assert failed.status_code == (500 if failure == "a part raises" else 503), failure
        assert "Your vault is erased" not in failed.text
        assert all_rows(engine) == before, failure
        with rt.sessions() as db:
            assert KeyStore(db, rt.keys).decrypt(binding, ciphertext)  # the key still opens
        page = small.client.get("/profile")  # still signed in, everything still there
        assert page.status_code == 200 and PROFILE_VALUES["given_name"] in page.text
        assert deliver_due(rt.sessions, rt) == 0  # no vendor was told anything

    monkeypatch.undo()
    retried = erase_form(small.client)

    assert retried.status_code == 200, retried.text
    receipt = verified_receipt(receipt_on(retried.text), public_key_text(rt))
    assert receipt["deleted"]["accounts"] == 1
    with rt.sessions() as db:
        assert db.get(Account, small.owner_id) is None
        with pytest.raises(DecryptionError):
            KeyStore(db, rt.keys).decrypt(binding, ciphertext)
    assert deliver_due(rt.sessions, rt) >= 1
    assert len(webhooks_to(receiver, "/hooks", "subject.erased")) == 1


# -- the operator's command -----------------------------------------------------------------


@pytest.fixture
def registered(deployment: Deployment) -> tuple[Runtime, str, uuid.UUID]:
    deployment.upgrade()
    rt = deployment.runtime()
    email = unique_email()
    owner_id = deployment.add_individual(rt, email)
    with rt.sessions() as db:
        vendor = market_vendor(db, rt, name="Velo Shop")
        connect(db, rt, db.get_one(Account, owner_id), vendor.app, ["email"])
    return rt, email, owner_id


def test_vrm_erase_erases_for_an_operator_and_writes_the_receipt(
    deployment: Deployment, registered: tuple[Runtime, str, uuid.UUID]
) -> None:
    rt, email, owner_id = registered
    receipt_file = deployment.key_dir.parent / "erasure-receipt.jws"

    output = deployment.ok("erase", "--email", email, "--yes", "--receipt", str(receipt_file))

    fields = len(PROFILE_VALUES) + 2  # the standard fields, the sign-in email, a custom one
    assert f"erased account {owner_id}: " in output
    for counted in (f"profile_fields {fields}", "grants 1", "accounts 1", "data_keys 1"):
        assert counted in output
    assert "vendors asked to delete their copies: 1" in output
    token = receipt_file.read_text("utf-8").strip()
    assert token in output
    payload = verified_receipt(token, deployment.ok("ledger", "public-key").strip())
    assert payload["deleted"]["profile_fields"] == fields
    assert payload["vendors_asked_to_delete"] == ["Velo Shop"]
    with browser(rt) as client:
        assert sign_in(client, email).status_code == 401
    again = deployment.cli("erase", "--email", email, "--yes")
    assert again.exit_code == 1 and "there is no individual" in again.output


def test_vrm_erase_asks_first_and_a_no_erases_nothing(
    deployment: Deployment, registered: tuple[Runtime, str, uuid.UUID]
) -> None:
    rt, email, owner_id = registered

    result = deployment.cli("erase", "--account-id", str(owner_id), input="n\n")

    assert result.exit_code == 1 and "Aborted" in result.output
    assert f"Erase account {owner_id}" in result.output
    assert Deployment.profile(rt, owner_id).values["given_name"] == PROFILE_VALUES["given_name"]
    with browser(rt) as client:
        assert sign_in(client, email).status_code == 303


def test_a_double_submitted_erasure_erases_once_and_tells_the_second_tab(
    backend: str, small: Small, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs (or a double click) submit at the same moment.

    On PostgreSQL both requests are held until both are past the password check, so the
    account-row lock decides. SQLite cannot hold them there (the first request's write lock
    makes the second wait at its first statement, so a barrier would deadlock): there the two
    race freely and the second finds its session, or the account, already gone.
    """
    if backend == "postgresql":
        both_in = threading.Barrier(2, timeout=10)
        erase_for_real = erasure.erase

        def erase_together(*args: Any) -> erasure.Erased:
            both_in.wait()
            return erase_for_real(*args)

        monkeypatch.setattr(erasure, "erase", erase_together)
    answers: list[Response] = []

    def submit(tab: TestClient, token: str) -> None:
        form = {"csrf_token": token, "password": PASSWORD, "confirmation": CONFIRMATION}
        answers.append(tab.post("/account/erase", data=form))

    with browser(small.rt) as other_tab:
        other_tab.cookies.set(SESSION_COOKIE, str(small.client.cookies.get(SESSION_COOKIE)))
        # Both tabs show the form first, as two open tabs do.
        tabs = [(tab, page_csrf(tab, "/account/erase")) for tab in (small.client, other_tab)]
        threads = [threading.Thread(target=submit, args=tab) for tab in tabs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(answers) == 2
    [done] = [a for a in answers if a.status_code == 200]
    [late] = [a for a in answers if a.status_code != 200]
    assert "Your vault is erased" in done.text
    assert "Your vault is erased" not in late.text
    if backend == "postgresql":
        assert late.status_code == 409 and "already erased" in late.text
    else:  # it waited for the first, then found its session gone (or the account)
        assert late.status_code in (401, 409), late.status_code
    with small.rt.sessions() as db:
        recorded = select(func.count()).where(LedgerEntry.event_type == "individual.erased")
        assert db.scalar(recorded) == 1
    deliver_due(small.rt.sessions, small.rt)
    assert len(webhooks_to(receiver, "/hooks", "subject.erased")) == 1


def test_vrm_erase_says_so_when_the_person_erased_their_vault_while_it_asked(
    deployment: Deployment,
    registered: tuple[Runtime, str, uuid.UUID],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt, email, owner_id = registered

    def the_person_is_quicker(text: str, **_: Any) -> bool:
        with browser(rt) as client:
            assert sign_in(client, email).status_code == 303
            assert erase_form(client).status_code == 200
        return True  # and then the operator answers yes

    monkeypatch.setattr(typer, "confirm", the_person_is_quicker)
    result = deployment.cli("erase", "--email", email)

    assert result.exit_code == 1
    assert "error: This vault was already erased" in result.output
    assert "Traceback" not in result.output and "erased account" not in result.output
    with rt.sessions() as db:  # erased once, by the person
        assert db.get(Account, owner_id) is None
        recorded = select(func.count()).where(LedgerEntry.event_type == "individual.erased")
        assert db.scalar(recorded) == 1


def test_wrong_passwords_on_the_erase_page_are_throttled_like_sign_ins(
    client_with: Any, db: Session, rt: Runtime
) -> None:
    browser = client_with(signin_max_failures_per_account=2)
    owner = individual(browser, db, rt)
    statuses = []
    for _ in range(3):
        token = page_csrf(browser, "/account/erase")
        response = browser.post(
            "/account/erase",
            data={"csrf_token": token, "password": "not the password", "confirmation": "x"},
        )
        statuses.append(response.status_code)
    assert statuses == [400, 400, 429]
    assert "Too many failed sign-in attempts" in response.text
    db.expire_all()
    assert db.get(Account, owner.id) is not None
