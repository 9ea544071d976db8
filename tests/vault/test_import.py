"""Import: another vault's export becomes a new account here, checked before anything is written.

Two vault instances take part: A is the usual test app (``client``, ``db``, ``rt``), B is
another deployment with its own database and its own key directory, so its own ledger key
(``client_b``, ``db_b``, ``rt_b``). Both run each test in a transaction that is rolled back.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from consent.grants.access import log_access
from consent.grants.models import Grant, PreviousVendors
from consent.ledger.jose import eddsa_allowed, receipt_kid
from consent.ledger.service import signing_key
from consent.ledger.signer import LedgerSigner
from consent.terms.catalogue import set_preferred_agreement
from intents.models import Intent
from intents.portability import PROVIDED_FIELDS
from tests.consent.factories import account_of, bearer, connect
from tests.helpers import (
    PASSWORD,
    confirm_address,
    page_csrf,
    post_form,
    sign_in,
    sign_up,
    unique_email,
)
from tests.intents.factories import app_token, make_intent, market_vendor, offer_body
from tests.mail import last_queued, queued
from tests.vault.conftest import CUSTOM_LABEL, CUSTOM_VALUE, PROFILE_VALUES, make_settings
from tests.web.conftest import runtime_with
from vault.accounts.dependencies import SESSION_COOKIE
from vault.accounts.models import Account
from vault.base import utcnow
from vault.db import make_engine
from vault.migrate import upgrade
from vault.portability import importer
from vault.portability.export import DATA, MANIFEST, SIGNATURE
from vault.portability.parts import ERASURE_RECEIPT_TYP, MANIFEST_TYP
from vault.profile.service import ProfileService
from vault.runtime import Runtime
from vault.signup import purge_unconfirmed
from vrm.app import create_app
from vrm.wiring import portability

B_URL = "http://vault-b.example"

# -- archives: read, rebuild, re-sign -----------------------------------------------------------


def members(archive: bytes) -> dict[str, bytes]:
    """Every file of a ZIP, in archive order."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def zip_of(
    files: Mapping[str, bytes] | Iterable[tuple[str, bytes]], *, stored: Collection[str] = ()
) -> bytes:
    """A ZIP holding exactly these names (any name, duplicates included) and bytes; the
    ``stored`` ones uncompressed."""
    buffer = io.BytesIO()
    entries = files.items() if isinstance(files, Mapping) else files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": on purpose
        with zipfile.ZipFile(buffer, "w") as zf:
            for name, data in entries:
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
    return buffer.getvalue()


def listing(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """The manifest's ``files``: every file but the manifest and its signature."""
    return [
        {"path": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in files.items()
        if name not in (MANIFEST, SIGNATURE)
    ]


def seal(files: dict[str, bytes], manifest: dict[str, Any], signer: LedgerSigner) -> None:
    """Write ``manifest`` and a signature over it by ``signer`` into ``files``."""
    body = json.dumps(manifest, ensure_ascii=False, indent=2).encode() + b"\n"
    files[MANIFEST] = body
    files[SIGNATURE] = signer.sign(body, MANIFEST_TYP).encode() + b"\n"


def resealed(
    archive: bytes,
    signer: LedgerSigner,
    edit: Callable[[dict[str, bytes]], None] = lambda files: None,
    manifest_edit: Callable[[dict[str, Any]], None] = lambda manifest: None,
    *,
    stored: Collection[str] = (),
) -> bytes:
    """The archive after ``edit`` changed its files, with a manifest that lists them truly
    (then ``manifest_edit``), signed by ``signer``: tampered, but signed."""
    files = members(archive)
    manifest = json.loads(files[MANIFEST])
    edit(files)
    manifest["files"] = listing(files)
    manifest_edit(manifest)
    seal(files, manifest, signer)
    return zip_of(files, stored=stored)


def with_data(
    archive: bytes, signer: LedgerSigner, change: Callable[[dict[str, Any]], None]
) -> bytes:
    """The archive with ``data.json`` changed by ``change``, correctly re-signed."""

    def edit(files: dict[str, bytes]) -> None:
        document = json.loads(files[DATA])
        change(document)
        files[DATA] = json.dumps(document, ensure_ascii=False).encode()

    return resealed(archive, signer, edit)


def items(document: dict[str, Any], section: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = document["sections"][section]["items"]
    return found


def bomb(archive: bytes, signer: LedgerSigner, inflated: int, name: str = "notes.txt") -> bytes:
    """The archive plus a listed, signed member of ``inflated`` zero bytes that deflate to a
    thousandth of that. Written and hashed in chunks, so nothing big is ever in memory."""
    files = members(archive)
    manifest = json.loads(files[MANIFEST])
    chunk = bytes(1024 * 1024)
    digest = hashlib.sha256()
    for _ in range(inflated // len(chunk)):
        digest.update(chunk)
    manifest["files"] = [
        *listing(files),
        {"path": name, "sha256": digest.hexdigest(), "bytes": inflated},
    ]
    seal(files, manifest, signer)
    buffer = io.BytesIO(zip_of(files))
    with zipfile.ZipFile(buffer, "a") as zf:
        info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as member:
            for _ in range(inflated // len(chunk)):
                member.write(chunk)
    return buffer.getvalue()


def patch_central_size(archive: bytes, name: str, size: int) -> bytes:
    """The archive whose central directory declares ``size`` bytes for ``name`` (a lie)."""
    data = bytearray(archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = zf.getinfo(name)
    at = data.find(b"PK\x01\x02")  # the first central directory entry
    while at != -1:
        (name_len,) = struct.unpack_from("<H", data, at + 28)
        if data[at + 46 : at + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, at + 24, size)
            return bytes(data)
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name} ({info.file_size} bytes) not in the central directory")


def garble_member(archive: bytes, name: str) -> bytes:
    """The archive with the first bytes of ``name``'s compressed data overwritten (an
    invalid deflate block: the ZIP's directory is intact, the member is not)."""
    data = bytearray(archive)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = zf.getinfo(name)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    data[start : start + 8] = b"\xff" * 8
    return bytes(data)


def provided(archive: bytes) -> dict[str, Any]:
    """What the person provided, as an export shows it (custom fields' random keys aside,
    and intents without what became of them)."""
    document = json.loads(members(archive)[DATA])
    return {
        "profile": [
            (i["label"], i["value"])
            if i["key"].startswith("custom.")
            else (i["key"], i["label"], i["value"])
            for i in items(document, "profile")
        ],
        "preferences": items(document, "preferences"),
        "intents": [{f: i[f] for f in PROVIDED_FIELDS} for i in items(document, "intents")],
    }


# -- the two vaults, and the browser's side ---------------------------------------------------


def export_bytes(client: TestClient) -> bytes:
    """The archive a signed-in person downloads from the export page."""
    token = page_csrf(client, "/account/export")
    response = client.post("/account/export", data={"csrf_token": token})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return response.content


def upload(
    browser: TestClient,
    archive: bytes,
    email: str | None = None,
    *,
    csrf: str | None = None,
    password: str = PASSWORD,
) -> Response:
    """Submit the import form as a browser would (multipart, with the page's CSRF token)."""
    token = page_csrf(browser, "/signup/import") if csrf is None else csrf
    return browser.post(
        "/signup/import",
        data={
            "email": email or unique_email("imported"),
            "password": password,
            "password_confirm": password,
            "csrf_token": token,
        },
        files={"archive": ("vrm-vault-export.zip", archive, "application/zip")},
    )


def accepted(response: Response) -> bool:
    """The import was taken: the answer sign-up gives (whether or not the address was free)."""
    return response.status_code == 200 and "Check your email to finish" in response.text


def imported(browser: TestClient, archive: bytes, email: str | None = None) -> Response:
    """Import ``archive`` as a new account, confirm its address from the mail, sign in."""
    email = email or unique_email("imported")
    response = upload(browser, archive, email)
    assert accepted(response), response.text[:3000]
    assert sign_in(browser, email).status_code == 401  # not before the address is confirmed
    confirm_address(browser, email)
    signed_in = sign_in(browser, email)
    assert signed_in.status_code == 303, signed_in.text
    return signed_in


def archive_error(response: Response) -> str:
    """The message shown next to the file field."""
    marker = '<p class="field-error" id="archive-error">'
    assert marker in response.text, response.text[:2000]
    message = response.text.split(marker, 1)[1].split("</p>", 1)[0]
    assert 'aria-describedby="archive-hint archive-error"' in response.text
    return message.replace("&#39;", "'").replace("&#34;", '"')


@pytest.fixture(scope="session")
def vault_b_base(
    backend: str, new_database: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    """Vault B: its own database (same backend) and its own key directory."""
    engine = make_engine(new_database(backend, migrated=True))
    upgrade(engine)
    key_dir = tmp_path_factory.mktemp("vault-b") / "keys"
    settings = make_settings(
        key_dir, engine.url.render_as_string(hide_password=False), base_url=B_URL
    )
    yield Runtime.from_settings(settings, engine=engine)
    engine.dispose()


@pytest.fixture
def rt_b(vault_b_base: Runtime) -> Iterator[Runtime]:
    with vault_b_base.engine.connect() as conn:
        trans = conn.begin()
        factory = sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        yield dataclasses.replace(vault_b_base, sessions=factory)
        trans.rollback()


@pytest.fixture
def db_b(rt_b: Runtime) -> Iterator[Session]:
    with rt_b.sessions() as session:
        yield session


@pytest.fixture(scope="session")
def vault_b_apps(vault_b_base: Runtime) -> dict[str, FastAPI]:
    """B's apps, one per variant of settings, made once: a new app's first request builds
    every route (a fifth of a second). Each test hands them its own rolled-back runtime."""
    return {}


@pytest.fixture
def vault_b(rt_b: Runtime, vault_b_apps: dict[str, FastAPI]) -> Iterator[Callable[..., TestClient]]:
    """Factory: a new browser on vault B (optionally with other settings)."""
    with ExitStack() as stack:

        def open_browser(**settings: Any) -> TestClient:
            runtime = runtime_with(rt_b, **settings) if settings else rt_b
            key = repr(sorted(settings.items()))
            if key not in vault_b_apps:
                vault_b_apps[key] = create_app(runtime=runtime)
            app = vault_b_apps[key]
            app.state.runtime = runtime
            client = TestClient(app, base_url=B_URL, follow_redirects=False)
            return stack.enter_context(client)

        yield open_browser


@pytest.fixture
def client_b(vault_b: Callable[..., TestClient]) -> TestClient:
    return vault_b()


@pytest.fixture
def accounts_b(db_b: Session) -> Callable[[], int]:
    def count() -> int:
        db_b.expire_all()
        return int(db_b.scalar(select(func.count()).select_from(Account)) or 0)

    return count


@pytest.fixture
def signer_a(rt: Runtime, rt_b: Runtime) -> LedgerSigner:
    signer = LedgerSigner(rt)
    assert signer.public_key() != LedgerSigner(rt_b).public_key(), "B must have its own key"
    return signer


@pytest.fixture
def person(client: TestClient, db: Session, rt: Runtime) -> dict[str, Any]:
    """Someone in vault A with every profile field, two custom fields, a preferred agreement,
    two intents (one open with an offer, one draft), a connection and reads by the vendor."""
    email = sign_up(client)
    owner = account_of(db, rt, email)
    profile = ProfileService(db, rt)
    for key, value in PROFILE_VALUES.items():
        profile.set_field(owner, key, value)
    profile.add_custom(owner, CUSTOM_LABEL, CUSTOM_VALUE)
    profile.add_custom(owner, "Lucky number", "1729")
    set_preferred_agreement(owner, "no-tracking")
    db.commit()
    vendor = market_vendor(db, rt, name="Velo Shop")
    grant = connect(db, rt, owner, vendor.app, ["email", "phone"])
    for _ in range(2):
        log_access(db, owner.id, vendor.app, ["email", "phone"])
    db.commit()
    today = date.today()
    bike = make_intent(
        db,
        rt,
        owner,
        title="Quixotic tandem bicycle",
        needed_by=(today + timedelta(days=40)).isoformat(),
        expires_on=(today + timedelta(days=20)).isoformat(),
    )
    make_intent(
        db,
        rt,
        owner,
        publish=False,
        title="Ünicycle for a giraffe",
        description="Very tall; delivered to Zürich.",
        quantity="3",
        budget="1234.56",
        country="CH",
        city="Zürich",
        online="",
    )
    offer = client.post(
        f"/vendor/v1/intents/{bike.id}/offers",
        headers=app_token(db, rt, vendor),
        json=offer_body("850.00"),
    )
    assert offer.status_code == 201, offer.text
    return {"email": email, "owner": owner, "vendor": vendor, "grant": grant}


@pytest.fixture(scope="session")
def archive_a(base_runtime: Runtime) -> bytes:
    """A small, valid export from vault A (a phone number and one intent), made once per
    backend in a transaction of its own that is rolled back: only the bytes remain."""
    with base_runtime.engine.connect() as conn:
        trans = conn.begin()
        factory = sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        rt = dataclasses.replace(base_runtime, sessions=factory)
        app = create_app(runtime=rt)
        with TestClient(app, follow_redirects=False) as client, factory() as db:
            owner = account_of(db, rt, sign_up(client))
            ProfileService(db, rt).set_field(owner, "phone", "+31 20 794 6138")
            db.commit()
            make_intent(db, rt, owner, title="Quixotic tandem bicycle")
            archive = export_bytes(client)
        trans.rollback()
    return archive


# -- round trip ---------------------------------------------------------------------------------


def test_export_import_export_keeps_everything_the_person_provided(
    client: TestClient,
    person: dict[str, Any],
    vault_b: Callable[..., TestClient],
    accounts_b: Callable[[], int],
) -> None:
    from_a = export_bytes(client)
    before = accounts_b()
    browser = vault_b()

    response = imported(browser, from_a, person["email"])

    assert response.headers["location"] == "/profile"
    assert accounts_b() == before + 1
    from_b = export_bytes(browser)
    assert provided(from_b) == provided(from_a)
    # Every standard field came across (the email is the one chosen on import, here the same).
    assert {k[0] for k in provided(from_b)["profile"] if len(k) == 3} == {
        "email",
        *PROFILE_VALUES,
    }
    assert len(provided(from_b)["intents"]) == 2
    statuses_a = {i["status"] for i in items(json.loads(members(from_a)[DATA]), "intents")}
    statuses_b = {i["status"] for i in items(json.loads(members(from_b)[DATA]), "intents")}
    assert statuses_a == {"open", "draft"} and statuses_b == {"draft"}
    # B signed its own export with its own key.
    manifest_a = json.loads(members(from_a)[MANIFEST])
    manifest_b = json.loads(members(from_b)[MANIFEST])
    assert manifest_a["vault"]["public_key"] != manifest_b["vault"]["public_key"]


def test_the_imported_person_confirms_the_address_first_and_is_told_what_came_across(
    client: TestClient, rt: Runtime, person: dict[str, Any], client_b: TestClient
) -> None:
    response = upload(client_b, export_bytes(client), person["email"])
    assert accepted(response), archive_error(response)
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    said = response.text.split('<p id="imported">', 1)[1].split("</p>")[0]
    assert LedgerSigner(rt).origin() in said
    assert "11 profile fields" in said  # every field but the email, chosen on import
    assert "2 intents (as drafts)" in said
    assert "1 vendor you had" in said and "must ask you again" in said
    # Not usable before the address is confirmed; then the password chosen on import signs in.
    assert sign_in(client_b, person["email"]).status_code == 401
    confirm_address(client_b, person["email"])
    assert sign_in(client_b, person["email"]).status_code == 303

    page = client_b.get("/profile")

    assert page.status_code == 200
    assert PROFILE_VALUES["given_name"] in page.text


def test_grants_do_not_transfer_and_the_vendors_are_listed_to_ask_again(
    client: TestClient,
    db: Session,
    rt: Runtime,
    person: dict[str, Any],
    client_b: TestClient,
    db_b: Session,
) -> None:
    token = bearer(db, rt, person["vendor"].app, person["grant"])
    assert client.get("/vendor/v1/profile", headers=token).status_code == 200  # valid in A
    grants_before = int(db_b.scalar(select(func.count()).select_from(Grant)) or 0)

    imported(client_b, export_bytes(client), person["email"])

    db_b.expire_all()
    assert int(db_b.scalar(select(func.count()).select_from(Grant)) or 0) == grants_before
    # A's vendor token means nothing in B.
    assert client_b.get("/vendor/v1/profile", headers=token).status_code == 401
    assert items(json.loads(members(export_bytes(client_b))[DATA]), "grants") == []
    page = client_b.get("/connections")
    assert page.status_code == 200
    section = page.text.split('id="previous-heading"', 1)[1].split("</section>", 1)[0]
    assert "Velo Shop" in section and "it could read" in section
    assert "ask you again" in section
    # Stored encrypted: the vendor's name is not in the row in clear.
    row = db_b.scalars(select(PreviousVendors)).one()
    assert b"Velo Shop" not in bytes(row.vendors_ct)


def test_the_list_of_vendors_you_had_travels_on_with_the_next_export(
    client: TestClient, person: dict[str, Any], client_b: TestClient, vault_b: Callable[..., Any]
) -> None:
    imported(client_b, export_bytes(client), person["email"])
    from_b = export_bytes(client_b)
    [had] = items(json.loads(members(from_b)[DATA]), "previous_vendors")
    assert had["vendor_name"] == "Velo Shop"

    third = vault_b()  # the next vault (B again, as a new account): B's export names them
    imported(third, from_b)
    [again] = items(json.loads(members(export_bytes(third))[DATA]), "previous_vendors")
    assert again == had


def test_vrm_import_creates_the_account_from_an_export(
    client: TestClient, person: dict[str, Any], deployment: Any, tmp_path: Path
) -> None:
    deployment.upgrade()
    source = tmp_path / "from-a.zip"
    source.write_bytes(export_bytes(client))
    target = tmp_path / "from-cli.zip"

    output = deployment.ok(
        "import", str(source), "--email", person["email"], "--password-stdin", input=PASSWORD
    )

    assert "created from" in output and "intents 2" in output and "profile 11" in output
    deployment.ok("export", str(target), "--email", person["email"])
    assert provided(target.read_bytes()) == provided(source.read_bytes())


def test_vrm_import_refuses_a_tampered_or_missing_archive_and_writes_nothing(
    archive_a: bytes, deployment: Any, tmp_path: Path
) -> None:
    deployment.upgrade()
    files = members(archive_a)
    files[DATA] = files[DATA].replace(b"Quixotic", b"Quixotix")
    tampered = tmp_path / "tampered.zip"
    tampered.write_bytes(zip_of(files))
    email = unique_email()

    altered = deployment.cli(
        "import", str(tampered), "--email", email, "--password-stdin", input=PASSWORD
    )
    missing = deployment.cli(
        "import", str(tmp_path / "nowhere.zip"), "--email", email, "--password-stdin"
    )

    assert altered.exit_code == 1
    assert "data.json does not match its SHA-256" in altered.output
    assert missing.exit_code == 1 and isinstance(missing.exception, SystemExit)
    assert "cannot read" in missing.output and "nowhere.zip" in missing.output
    rt = deployment.runtime()
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 0


# -- refused archives: a message next to the file field, nothing written -------------------------


def refused(
    browser: TestClient, archive: bytes, accounts: Callable[[], int], status: int = 400
) -> str:
    """Upload ``archive``; assert it is refused with ``status`` and nothing written, and that
    the email stays free for a normal sign-up. Returns the message next to the file field."""
    email = unique_email("refused")
    before = accounts()
    response = upload(browser, archive, email)
    assert response.status_code == status, response.text[:2000]
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    message = archive_error(response)
    assert accounts() == before
    assert f'value="{email}"' in response.text  # the form keeps what was typed
    sign_up(browser, email)  # the address was not taken
    return message


def test_a_file_that_is_not_a_zip_is_refused(
    client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    message = refused(client_b, b"%PDF-1.7 not an archive at all", accounts_b)
    assert "not a ZIP archive" in message


def test_a_truncated_archive_is_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    message = refused(client_b, archive_a[: len(archive_a) * 2 // 3], accounts_b)
    assert "truncated" in message


def test_an_archive_with_a_corrupt_member_is_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    message = refused(client_b, garble_member(archive_a, DATA), accounts_b)
    assert "data.json" in message and "corrupt" in message


def test_a_member_altered_under_an_unchanged_manifest_is_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = members(archive_a)
    files[DATA] = files[DATA].replace(b"+31207946138", b"+31207946139")
    message = refused(client_b, zip_of(files), accounts_b)
    assert message == "data.json does not match its SHA-256 in the manifest: altered."


def test_a_manifest_edited_under_its_old_signature_is_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = members(archive_a)
    files[DATA] = files[DATA].replace(b"+31207946138", b"+31207946139")
    manifest = json.loads(files[MANIFEST])
    manifest["files"] = listing(files)  # the new hash, under the signature of the old manifest
    files[MANIFEST] = json.dumps(manifest, indent=2).encode() + b"\n"
    message = refused(client_b, zip_of(files), accounts_b)
    assert "does not sign this manifest.json" in message


def test_a_manifest_signed_as_another_kind_of_document_is_refused(
    archive_a: bytes, base_runtime: Runtime, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    """The vault's own key, its own manifest, but signed as an erasure receipt: one kind of
    signed document is never taken for another."""
    files = members(archive_a)
    signed = LedgerSigner(base_runtime).sign(files[MANIFEST], ERASURE_RECEIPT_TYP)
    files[SIGNATURE] = signed.encode() + b"\n"
    message = refused(client_b, zip_of(files), accounts_b)
    assert "signature over manifest.json does not verify" in message


def test_an_archive_signed_before_manifests_named_their_type_still_imports(
    archive_a: bytes, base_runtime: Runtime, client_b: TestClient
) -> None:
    files = members(archive_a)
    header = {"alg": "EdDSA", "kid": receipt_kid(base_runtime)}  # no typ, as exports used to be
    with eddsa_allowed():
        untyped = jws.serialize_compact(
            header,
            files[MANIFEST],
            OKPKey.import_key(signing_key(base_runtime)),
            algorithms=["EdDSA"],
        )
    files[SIGNATURE] = untyped.encode() + b"\n"
    response = upload(client_b, zip_of(files))
    assert accepted(response), archive_error(response)


def test_an_export_manifest_is_signed_under_rfc_9864s_ed25519(archive_a: bytes) -> None:
    header_b64 = members(archive_a)[SIGNATURE].decode().split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    assert header["alg"] == "Ed25519"
    assert header["typ"] == MANIFEST_TYP


def test_an_archive_signed_with_eddsa_before_rfc_9864_still_imports(
    archive_a: bytes, base_runtime: Runtime, client_b: TestClient
) -> None:
    """Archives exported before the vault moved to ``Ed25519`` name the deprecated ``EdDSA``
    (typed, same key): they still import."""
    files = members(archive_a)
    header = {"alg": "EdDSA", "typ": MANIFEST_TYP, "kid": receipt_kid(base_runtime)}
    with eddsa_allowed():
        old = jws.serialize_compact(
            header,
            files[MANIFEST],
            OKPKey.import_key(signing_key(base_runtime)),
            algorithms=["EdDSA"],
        )
    files[SIGNATURE] = old.encode() + b"\n"
    response = upload(client_b, zip_of(files))
    assert accepted(response), archive_error(response)


def test_a_signature_by_another_key_than_the_manifest_names_is_refused(
    archive_a: bytes, rt_b: Runtime, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = members(archive_a)
    files[SIGNATURE] = LedgerSigner(rt_b).sign(files[MANIFEST], MANIFEST_TYP).encode() + b"\n"
    message = refused(client_b, zip_of(files), accounts_b)
    assert "signature over manifest.json does not verify" in message


def test_with_no_trusted_list_an_archive_signed_by_the_key_it_names_is_taken(
    archive_a: bytes, rt_b: Runtime, client_b: TestClient
) -> None:
    """The signature proves the archive intact, not who made it: with no
    ``VRM_IMPORT_TRUSTED_KEYS`` any vault's export is taken (the trusted-keys test below
    shows the operator's restriction)."""
    other = LedgerSigner(rt_b)

    def rename(manifest: dict[str, Any]) -> None:
        manifest["vault"]["public_key"] = other.public_key()
        manifest["vault"]["origin"] = other.origin()

    response = upload(client_b, resealed(archive_a, other, manifest_edit=rename))
    assert accepted(response), archive_error(response)
    # The person is told the vault's name is only what the archive claims.
    assert "a name the archive gives itself" in response.text


def test_a_manifest_naming_another_vault_than_its_key_is_refused(
    archive_a: bytes, rt_b: Runtime, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    other = LedgerSigner(rt_b)

    def claim(manifest: dict[str, Any]) -> None:
        manifest["vault"]["public_key"] = other.public_key()  # B's key, A's name

    message = refused(client_b, resealed(archive_a, other, manifest_edit=claim), accounts_b)
    assert "not the one its key belongs to" in message


def test_a_file_not_in_the_manifest_is_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = members(archive_a)
    files["evil.txt"] = b"not listed anywhere"
    message = refused(client_b, zip_of(files), accounts_b)
    assert "not listed: evil.txt" in message


def test_a_file_missing_from_the_archive_is_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = members(archive_a)
    del files["index.html"]
    message = refused(client_b, zip_of(files), accounts_b)
    assert "missing: index.html" in message


@pytest.mark.parametrize("name", [DATA, MANIFEST, SIGNATURE])
def test_an_archive_without_its_required_files_is_refused(
    name: str, archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = members(archive_a)
    del files[name]
    message = refused(client_b, zip_of(files), accounts_b)
    assert f"has no {name}" in message


@pytest.mark.parametrize(
    "name", ["../evil.txt", "/abs.txt", "a/b.txt", "a\\b.txt", "..\\evil.txt", "C:evil.txt"]
)
def test_a_path_that_could_escape_the_archive_is_refused(
    name: str, archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    def add(files: dict[str, bytes]) -> None:
        files[name] = b"escape"

    # Listed and signed, so only the name itself can be the reason.
    message = refused(client_b, resealed(archive_a, signer_a, add), accounts_b)
    assert "a path that is not allowed" in message


def test_duplicate_member_names_are_refused(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    files = list(members(archive_a).items())
    data = dict(files)[DATA]
    twice = zip_of([*files, (DATA, data.replace(b"Quixotic", b"Quixotix"))])
    assert [n for n in zipfile.ZipFile(io.BytesIO(twice)).namelist() if n == DATA] == [DATA, DATA]
    message = refused(client_b, twice, accounts_b)
    assert "holds 'data.json' twice" in message


def test_a_zip_bomb_is_refused_before_it_inflates(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    archive = bomb(archive_a, signer_a, 64 * 1024 * 1024)
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo("notes.txt")
    assert info.file_size > info.compress_size * importer.MAX_RATIO  # really a bomb
    assert len(archive) < 1024 * 1024  # and small to upload
    message = refused(client_b, archive, accounts_b)
    assert "notes.txt inflates to more than its limit" in message and "zip bomb" in message


def test_a_bomb_that_declares_a_harmless_size_is_refused(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    archive = patch_central_size(bomb(archive_a, signer_a, 4 * 1024 * 1024), "notes.txt", 1000)
    message = refused(client_b, archive, accounts_b)
    assert message.startswith("notes.txt is corrupt")  # it inflated past what it declared


def test_a_member_larger_than_the_member_limit_is_refused(
    archive_a: bytes,
    signer_a: LedgerSigner,
    client_b: TestClient,
    accounts_b: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importer, "MAX_MEMBER_BYTES", 256 * 1024)

    def add(files: dict[str, bytes]) -> None:
        files["photo.bin"] = os.urandom(512 * 1024)  # incompressible: the ratio is honest

    archive = resealed(archive_a, signer_a, add)
    message = refused(client_b, archive, accounts_b)
    assert "photo.bin inflates to more than its limit" in message


def test_an_archive_declaring_more_than_the_total_limit_is_refused(
    archive_a: bytes,
    signer_a: LedgerSigner,
    client_b: TestClient,
    accounts_b: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importer, "MAX_TOTAL_BYTES", len(archive_a))
    message = refused(client_b, bomb(archive_a, signer_a, 1024 * 1024), accounts_b)
    assert "too large to import" in message


def test_an_archive_with_too_many_files_is_refused(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    def add(files: dict[str, bytes]) -> None:
        for n in range(importer.MAX_MEMBERS):
            files[f"extra-{n}.txt"] = b"x"

    message = refused(client_b, resealed(archive_a, signer_a, add), accounts_b)
    assert f"more than {importer.MAX_MEMBERS} files" in message


def test_an_upload_over_the_import_limit_is_413(
    archive_a: bytes,
    signer_a: LedgerSigner,
    vault_b: Callable[..., TestClient],
    accounts_b: Callable[[], int],
) -> None:
    browser = vault_b(max_import_bytes=1024 * 1024)

    def pad(files: dict[str, bytes]) -> None:
        files["padding.bin"] = os.urandom(1280 * 1024)  # incompressible

    big = resealed(archive_a, signer_a, pad)
    assert len(big) > 1024 * 1024
    before = accounts_b()

    response = upload(browser, big)

    assert response.status_code == 413
    assert "larger than the limit of 1024 KiB" in response.text
    assert accounts_b() == before
    # Within the limit, the same vault takes an archive.
    assert accepted(upload(browser, archive_a))


def test_a_streamed_upload_over_the_limit_is_413(
    archive_a: bytes, vault_b: Callable[..., TestClient], accounts_b: Callable[[], int]
) -> None:
    browser = vault_b(max_import_bytes=1024 * 1024)
    token = page_csrf(browser, "/signup/import")
    boundary = "vrmboundary"

    def body() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f'{token}\r\n--{boundary}\r\nContent-Disposition: form-data; name="archive"; '
            'filename="big.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        for _ in range(20):
            yield bytes(128 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    before = accounts_b()
    response = browser.post(
        "/signup/import",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert accounts_b() == before


def test_an_export_of_another_format_version_is_refused(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    def version_2(manifest: dict[str, Any]) -> None:
        manifest["version"] = 2

    message = refused(client_b, resealed(archive_a, signer_a, manifest_edit=version_2), accounts_b)
    assert "format version 2" in message and "reads version 1" in message


def test_only_trusted_vaults_exports_are_taken_when_the_operator_lists_them(
    archive_a: bytes,
    signer_a: LedgerSigner,
    rt_b: Runtime,
    vault_b: Callable[..., TestClient],
    accounts_b: Callable[[], int],
) -> None:
    only_b = vault_b(import_trusted_keys=[LedgerSigner(rt_b).public_key()])
    message = refused(only_b, archive_a, accounts_b)
    assert "has not listed as a vault to import from" in message

    trusts_a = vault_b(import_trusted_keys=[signer_a.public_key()])
    assert accepted(upload(trusts_a, archive_a))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: items(d, "profile")[0].pop("value"), id="profile-item-no-value"),
        pytest.param(
            lambda d: items(d, "profile")[0].update(colour="red"), id="profile-item-extra-key"
        ),
        pytest.param(
            lambda d: items(d, "intents")[0].update(quantity="many"), id="intent-quantity-text"
        ),
        pytest.param(lambda d: items(d, "intents").append("an intent"), id="item-not-an-object"),
        pytest.param(lambda d: d["sections"].update(profile=[]), id="section-without-items"),
        pytest.param(lambda d: d.update(sections=[]), id="sections-not-an-object"),
        pytest.param(
            lambda d: items(d, "grants").append({"vendor_name": "X"}), id="grant-missing-fields"
        ),
    ],
)
def test_a_signed_archive_with_items_of_the_wrong_shape_is_refused(
    change: Callable[[dict[str, Any]], None],
    archive_a: bytes,
    signer_a: LedgerSigner,
    client_b: TestClient,
    accounts_b: Any,
) -> None:
    message = refused(client_b, with_data(archive_a, signer_a, change), accounts_b)
    assert message.startswith("data.json")


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("phone", "+1 000", "'phone' is not valid here"),
        ("birthdate", "1947-02-30", "'birthdate' is not valid here"),
        ("address", "Xylophonestraat 4471", "'address' is not valid here"),
        ("dietary", 42, "'dietary' is not valid here"),
        ("given_name", {"first": "Zephyrine"}, "'given_name' is not valid here"),
    ],
)
def test_a_signed_archive_with_an_invalid_profile_value_is_refused(
    key: str,
    value: Any,
    said: str,
    archive_a: bytes,
    signer_a: LedgerSigner,
    client_b: TestClient,
    accounts_b: Any,
) -> None:
    def change(document: dict[str, Any]) -> None:
        profile = items(document, "profile")
        profile[:] = [i for i in profile if i["key"] != key]
        profile.append({"key": key, "label": key, "value": value, "provenance": "provided"})

    message = refused(client_b, with_data(archive_a, signer_a, change), accounts_b)
    assert said in message


def test_a_signed_archive_with_an_invalid_intent_is_refused(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    def change(document: dict[str, Any]) -> None:
        items(document, "intents")[0]["currency"] = "XXX"

    message = refused(client_b, with_data(archive_a, signer_a, change), accounts_b)
    assert "intent 'Quixotic tandem bicycle' is not valid here" in message


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m["files"][0].update(bytes="many"), id="size-not-a-number"),
        pytest.param(lambda m: m["files"][0].update(bytes=None), id="size-null"),
        pytest.param(lambda m: m.update(files={"data.json": "x"}), id="files-not-a-list"),
        pytest.param(lambda m: m.update(vault="A"), id="vault-not-an-object"),
    ],
)
def test_a_signed_manifest_of_the_wrong_shape_is_refused(
    edit: Callable[[dict[str, Any]], None],
    archive_a: bytes,
    signer_a: LedgerSigner,
    client_b: TestClient,
    accounts_b: Any,
) -> None:
    message = refused(client_b, resealed(archive_a, signer_a, manifest_edit=edit), accounts_b)
    assert "manifest.json" in message


@pytest.mark.parametrize("escaped", [True, False], ids=["escaped", "utf8_like_bytes"])
def test_a_signed_archive_with_text_that_is_not_unicode_is_refused(
    escaped: bool, archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    def edit(files: dict[str, bytes]) -> None:
        document = json.loads(files[DATA])
        items(document, "profile").append(
            {
                "key": "given_name",
                "label": "Given name",
                "value": "Zephy\ud800rine",
                "provenance": "provided",
            }
        )
        text = json.dumps(document)  # ensure_ascii: the lone surrogate goes as \ud800
        files[DATA] = (
            text.encode()
            if escaped
            else text.replace("\\ud800", "\ud800").encode("utf-8", "surrogatepass")
        )

    message = refused(client_b, resealed(archive_a, signer_a, edit), accounts_b)
    assert message.startswith("data.json is not valid JSON")
    assert "holds a lone UTF-16 surrogate" in message


@pytest.mark.parametrize("name", [MANIFEST, DATA])
def test_json_nested_too_deep_to_parse_is_refused(
    name: str, archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Any
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # stored: deflated, it would look like a bomb
    if name == MANIFEST:
        files = members(archive_a)
        files[MANIFEST] = deep
        archive = zip_of(files, stored=[MANIFEST])
    else:
        archive = resealed(archive_a, signer_a, lambda f: f.update({DATA: deep}), stored=[DATA])
    message = refused(client_b, archive, accounts_b)
    assert message == f"{name} is not valid JSON."


# -- the form ---------------------------------------------------------------------------------


def test_the_upload_needs_the_csrf_token(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    before = accounts_b()
    client_b.get("/signup/import")
    for token in ("", "forged"):
        response = upload(client_b, archive_a, csrf=token)
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert accounts_b() == before


@pytest.mark.parametrize(
    ("signup", "home"), [("/signup", "/profile"), ("/signup/vendor", "/console")]
)
def test_a_signed_in_browser_is_sent_home_from_the_import_page(
    signup: str, home: str, client_b: TestClient
) -> None:
    email = unique_email()
    form = {"email": email, "password": PASSWORD, "password_confirm": PASSWORD}
    assert post_form(client_b, signup, form).status_code == 200
    confirm_address(client_b, email)
    assert sign_in(client_b, email).headers["location"] == home
    response = client_b.get("/signup/import")
    assert response.status_code == 303
    assert response.headers["location"] == home


def test_the_import_page_says_what_comes_across_and_the_size_limit(
    vault_b: Callable[..., TestClient],
) -> None:
    page = vault_b(max_import_bytes=3 * 1024 * 1024).get("/signup/import")
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.text
    assert "at most 3 MB" in page.text
    assert "vendors must ask you again" in page.text


def test_an_upload_without_a_file_asks_for_one(
    client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    before = accounts_b()
    token = page_csrf(client_b, "/signup/import")
    response = client_b.post(
        "/signup/import",
        data={"email": unique_email(), "password": PASSWORD, "password_confirm": PASSWORD},
        files={"csrf_token": (None, token)},
    )
    assert response.status_code == 400
    assert archive_error(response) == "Choose the export archive (.zip) to import."
    assert accounts_b() == before


def test_different_passwords_are_refused_next_to_the_confirmation(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    before = accounts_b()
    token = page_csrf(client_b, "/signup/import")
    response = client_b.post(
        "/signup/import",
        data={
            "email": unique_email(),
            "password": PASSWORD,
            "password_confirm": PASSWORD + "!",
            "csrf_token": token,
        },
        files={"archive": ("export.zip", archive_a, "application/zip")},
    )
    assert response.status_code == 400
    assert 'id="password_confirm-error"' in response.text
    assert accounts_b() == before


def test_an_email_already_used_here_gets_the_same_answer_and_nothing_is_imported(
    archive_a: bytes,
    client_b: TestClient,
    rt_b: Runtime,
    db_b: Session,
    accounts_b: Callable[[], int],
) -> None:
    taken = sign_up(client_b)
    client_b.cookies.clear()
    before = accounts_b()
    intents_before = db_b.scalar(select(func.count()).select_from(Intent))
    free = upload(client_b, archive_a, unique_email("free"))

    response = upload(client_b, archive_a, taken)

    assert accepted(response) and accepted(free)
    said = response.text.split('<p id="imported">', 1)[1].split("</p>")[0]
    assert said == free.text.split('<p id="imported">', 1)[1].split("</p>")[0]
    assert accounts_b() == before + 1  # the free address's, waiting for confirmation
    db_b.expire_all()
    assert db_b.scalar(select(func.count()).select_from(Intent)) == intents_before + 1
    told = last_queued(rt_b, taken, "signup_taken")
    assert told["Subject"] == "Someone tried to sign up to VRM Vault with your address"
    assert len(queued(rt_b, taken, "confirm_signup")) == 1  # its own sign-up's, no other
    # The owner's vault is as it was: the same password, nothing imported into it.
    assert sign_in(client_b, taken).status_code == 303
    assert "Quixotic tandem bicycle" not in client_b.get("/intents").text


def test_an_import_refused_for_its_data_is_refused_the_same_for_a_taken_address(
    archive_a: bytes,
    signer_a: LedgerSigner,
    client_b: TestClient,
    rt_b: Runtime,
    accounts_b: Callable[[], int],
) -> None:
    """A free address would show the data's error: a taken one must show it too, or the
    error would tell a prober which addresses have an account."""
    taken = sign_up(client_b)
    client_b.cookies.clear()

    def bad_phone(files: dict[str, bytes]) -> None:
        data = json.loads(files[DATA])
        for item in items(data, "profile"):
            if item["key"] == "phone":
                item["value"] = "not a phone number"
        files[DATA] = json.dumps(data).encode()

    archive = resealed(archive_a, signer_a, bad_phone)
    before = accounts_b()
    free = upload(client_b, archive, unique_email("free"))
    response = upload(client_b, archive, taken)

    assert (free.status_code, response.status_code) == (400, 400)
    assert archive_error(response) == archive_error(free)
    assert "phone" in archive_error(response)
    assert accounts_b() == before
    assert queued(rt_b, taken, "signup_taken") == []  # rolled back with the refused import


# -- limits an unauthenticated uploader cannot get around -------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_a_member_compressed_with_bzip2_or_lzma_is_refused_before_it_is_inflated(
    archive_a: bytes, client_b: TestClient, accounts_b: Callable[[], int], method: int
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members(archive_a).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method if name == "index.html" else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    message = refused(client_b, buffer.getvalue(), accounts_b)
    assert "compression method exports never use" in message


def test_a_section_with_more_items_than_a_vault_imports_is_refused(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    from vault.portability.importer import IMPORTED_SECTIONS

    def flood(document: dict[str, Any]) -> None:
        [first] = items(document, "intents")[:1]
        document["sections"]["intents"]["items"] = [first] * (IMPORTED_SECTIONS["intents"] + 1)

    message = refused(client_b, with_data(archive_a, signer_a, flood), accounts_b)
    assert "a vault imports at most 500" in message


def test_a_profile_field_listed_twice_is_refused(
    archive_a: bytes, signer_a: LedgerSigner, client_b: TestClient, accounts_b: Callable[[], int]
) -> None:
    def twice(document: dict[str, Any]) -> None:
        profile = items(document, "profile")
        profile.append(dict(next(i for i in profile if i["key"] != "email")))

    message = refused(client_b, with_data(archive_a, signer_a, twice), accounts_b)
    assert "twice" in message


def test_refused_uploads_count_against_the_sign_in_throttle(
    vault_b: Callable[..., TestClient], accounts_b: Callable[[], int]
) -> None:
    browser = vault_b(signin_max_failures_per_address=2)
    statuses = [upload(browser, b"not a zip", unique_email()).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


# -- notices, and an import never confirmed ----------------------------------------------------


def test_notices_are_exported_and_an_import_leaves_them_behind(
    client: TestClient, person: dict[str, Any], client_b: TestClient
) -> None:
    from_a = json.loads(members(export_bytes(client))[DATA])
    listed_a = items(from_a, "notices")
    kinds_a = {n["kind"] for n in listed_a}
    assert {"new_device", "new_connection"} <= kinds_a
    assert all(n["text"] and n["created_at"] for n in listed_a)
    assert {s["provenance"] for s in listed_a} == {"observed"}
    assert "notice_switches" in from_a["sections"]

    imported(client_b, export_bytes(client), person["email"])

    from_b = json.loads(members(export_bytes(client_b))[DATA])
    # B lists only what happened in B: the first sign-in there.
    assert [n["kind"] for n in items(from_b, "notices")] == ["new_device"]
    assert "A vendor was connected" not in client_b.get("/notices").text


def test_an_import_never_confirmed_is_erased_with_its_data(
    archive_a: bytes,
    client_b: TestClient,
    rt_b: Runtime,
    db_b: Session,
    accounts_b: Callable[[], int],
) -> None:
    before = accounts_b()
    intents_before = db_b.scalar(select(func.count()).select_from(Intent))
    email = unique_email("never")
    assert accepted(upload(client_b, archive_a, email))
    assert accounts_b() == before + 1
    later = utcnow() + timedelta(hours=25)

    with rt_b.sessions() as db, db.begin():
        assert purge_unconfirmed(db, rt_b, portability(rt_b), now=later) == 1

    assert accounts_b() == before
    db_b.expire_all()
    assert db_b.scalar(select(func.count()).select_from(Intent)) == intents_before
    assert sign_in(client_b, email).status_code == 401
