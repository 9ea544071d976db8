"""Read the database as a thief with a copy of it would: no personal value may appear in clear.

An individual fills in every standard field and a custom field through the app, committed for
real on a fresh database. Then SQLite's ``.db`` and ``-wal`` files are read as bytes, and on
PostgreSQL every text, varchar, bytea and json column of every table in ``public`` is read.
Control assertions show the scan does find what is stored in clear.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from tests.helpers import PASSWORD, api_headers, post_form, sign_up
from tests.vault.conftest import CUSTOM_LABEL, CUSTOM_VALUE, PROFILE_VALUES, Deployment
from vault.profile.catalogue import FIELDS
from vrm.app import create_app

pytestmark = pytest.mark.migrated  # the database is not the subject: start at the head

SHORT = 6  # below this, only quoted JSON forms are distinctive enough to search for


def forms(value: Any) -> set[bytes]:
    """Every encoding in which a stored value could appear: UTF-8, and JSON either way."""
    found: set[bytes] = set()
    if isinstance(value, dict):
        for leaf in value.values():
            found |= forms(leaf)
    elif isinstance(value, list):
        for leaf in value:
            found |= forms(leaf)
    if not isinstance(value, str) or len(value) >= SHORT:
        found.add(json.dumps(value, ensure_ascii=False).encode())
        found.add(json.dumps(value, ensure_ascii=True).encode())
    if isinstance(value, str):
        found.add(json.dumps(value, ensure_ascii=False).encode())
        found.add(json.dumps(value, ensure_ascii=True).encode())
        if len(value) >= SHORT:
            found.add(value.encode())
            found.add(value.lower().encode())
            found.add(json.dumps(value).strip('"').encode())  # escaped, unquoted
    return found


@dataclass
class Individual:
    email: str
    secrets: set[bytes]  # every form of every value that must never be stored in clear


def needles(email: str, cookies: list[str]) -> set[bytes]:
    values: list[Any] = [email, PASSWORD, CUSTOM_LABEL, CUSTOM_VALUE, "+31 20 794 6138"]
    values += [FIELDS[key].parse(raw) for key, raw in PROFILE_VALUES.items()]
    found: set[bytes] = set()
    for value in values:
        found |= forms(value)
    found |= {c.encode() for c in cookies if len(c) >= 16}
    return found


def fill_in_everything(deployment: Deployment) -> tuple[Engine, Individual]:
    """Through the app: sign up, fill every standard field and a custom one, sign out, fail a
    sign-in. Every request commits for real."""
    deployment.upgrade()
    rt = deployment.runtime()
    email = f"Zebulon.Quartermaine-{uuid.uuid4().hex[:6]}@Example.org"
    with TestClient(
        create_app(runtime=rt), base_url="http://testserver", follow_redirects=False
    ) as client:
        sign_up(client, email)
        headers = api_headers(client)
        for key, value in PROFILE_VALUES.items():
            response = client.put(
                f"/api/v1/profile/fields/{key}", json={"value": value}, headers=headers
            )
            assert response.status_code == 200, response.text
        response = client.post(
            "/api/v1/profile/custom",
            json={"label": CUSTOM_LABEL, "value": CUSTOM_VALUE},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        profile = client.get("/api/v1/profile").json()
        assert profile["fields"]["given_name"] == PROFILE_VALUES["given_name"]
        assert profile["custom"][0]["value"] == CUSTOM_VALUE
        cookies = [c.value for c in client.cookies.jar if c.value]
        client.cookies.clear()
        failed = post_form(client, "/signin", {"email": email, "password": "not the password"})
        assert failed.status_code < 500
    return rt.engine, Individual(email, needles(email, cookies))


def store_a_control_in_clear(engine: Engine) -> bytes:
    control = f"CONTROL-in-clear-{uuid.uuid4().hex}"
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE scan_control (note VARCHAR(100))"))
        conn.execute(text("INSERT INTO scan_control (note) VALUES (:note)"), {"note": control})
    return control.encode()


def wrapped_key_blob(engine: Engine) -> bytes:
    with engine.connect() as conn:
        return bytes(conn.execute(text("SELECT wrapped FROM data_keys")).scalar_one())


def hits(haystacks: dict[str, bytes], wanted: set[bytes]) -> dict[bytes, list[str]]:
    found: dict[bytes, list[str]] = {}
    for needle in wanted:
        places = [where for where, data in haystacks.items() if needle in data]
        if places:
            found[needle] = places
    return found


# -- SQLite: the files on disk ------------------------------------------------------------


def sqlite_files(engine: Engine) -> dict[str, bytes]:
    path = Path(str(make_url(engine.url).database))
    files = {path.name: path.read_bytes()}
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        files[wal.name] = wal.read_bytes()
    return files


def scan_sqlite_files(engine: Engine, person: Individual, control: bytes) -> None:
    files = sqlite_files(engine)  # the engine is still open: recent pages are in the WAL
    assert len(files.get(Path(str(engine.url.database)).name + "-wal", b"")) > 0
    assert hits(files, person.secrets) == {}
    # Controls: the scan sees rows wherever they are, in clear and as ciphertext.
    assert hits(files, {control, b"individual", wrapped_key_blob(engine)}).keys() == {
        control,
        b"individual",
        wrapped_key_blob(engine),
    }

    raw = engine.raw_connection()  # move every page into the main file, then look again
    try:
        busy, _log, _moved = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        raw.close()
    main_file = {k: v for k, v in sqlite_files(engine).items() if not k.endswith("-wal")}
    assert hits(main_file, person.secrets) == {}
    assert control in next(iter(main_file.values()))


# -- PostgreSQL: every text-like and binary column ----------------------------------------


SCANNED_TYPES = ("text", "character varying", "character", "bytea", "json", "jsonb")


def postgres_cells(engine: Engine) -> dict[str, bytes]:
    """Every value of every scanned column, keyed ``table.column#n``."""
    cells: dict[str, bytes] = {}
    with engine.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND data_type = ANY(:types) "
                "ORDER BY table_name, column_name"
            ),
            {"types": list(SCANNED_TYPES)},
        ).all()
        for table, column, data_type in columns:
            expr = f'"{column}"' if data_type == "bytea" else f'"{column}"::text'
            values = conn.execute(text(f'SELECT {expr} FROM "{table}"')).scalars().all()
            for n, value in enumerate(values):
                if value is not None:
                    cells[f"{table}.{column}#{n}"] = (
                        bytes(value) if data_type == "bytea" else str(value).encode()
                    )
    return cells


def scan_postgres_columns(engine: Engine, person: Individual, control: bytes) -> None:
    cells = postgres_cells(engine)

    scanned_tables = {where.split(".")[0] for where in cells}
    assert {
        "accounts",
        "profile_fields",
        "data_keys",
        "account_sessions",
        "signin_throttle",
        "scan_control",
    } <= scanned_tables
    assert hits(cells, person.secrets) == {}
    found = hits(cells, {control, b"individual", wrapped_key_blob(engine)})
    assert found[control] == ["scan_control.note#0"]
    assert found[b"individual"] == ["accounts.role#0"]
    assert found[wrapped_key_blob(engine)] == ["data_keys.wrapped#0"]


def test_database_holds_no_personal_value_in_clear(deployment: Deployment, backend: str) -> None:
    engine, person = fill_in_everything(deployment)
    control = store_a_control_in_clear(engine)
    if backend == "sqlite":
        scan_sqlite_files(engine, person, control)
    else:
        scan_postgres_columns(engine, person, control)


def test_the_scan_would_catch_a_value_stored_in_clear() -> None:
    """The needles include the quoted JSON form, so even a short value would be caught."""
    stored = json.dumps(PROFILE_VALUES["clothing_size"]).encode()
    assert hits({"cell": b"..." + stored + b"..."}, needles("a@b.example", [])) != {}
    address = json.dumps(
        FIELDS["address"].parse(PROFILE_VALUES["address"]), ensure_ascii=False
    ).encode()
    assert hits({"cell": address}, needles("a@b.example", [])) != {}
