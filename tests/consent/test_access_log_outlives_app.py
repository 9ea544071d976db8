"""The access log is the individual's record of who read what: it survives the vendor
deleting its app. The rows keep the app's name; the portal, the export and the batched
writer all keep them; erasure still removes the person's rows."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import jsonschema
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.access import log_access
from consent.grants.models import AccessLogEntry
from consent.grants.service import delete_app
from tests.consent.factories import bearer, connect, individual, make_app
from tests.helpers import page_csrf
from vault.portability.erasure import erase
from vault.runtime import Runtime

PROFILE = "/vendor/v1/profile"


def read_then_delete(client: TestClient, db: Session, rt: Runtime) -> None:
    """A person whose profile Acme Shoes read three times (twice through the vendor API, once
    through the access module), then Acme Shoes' vendor deletes the app."""
    person = individual(client, db, rt, given_name="Ada", phone="+31201234567")
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name", "phone"])
    headers = bearer(db, rt, app, grant)
    assert client.get(PROFILE, headers=headers).status_code == 200
    assert client.get(PROFILE, headers=headers).status_code == 200
    log_access(db, person.id, app, ["phone"])
    db.commit()
    delete_app(db, app, rt)
    db.commit()


def test_reads_by_a_deleted_app_stay_in_the_log_with_its_name(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    read_then_delete(client, db, rt)

    rows = db.execute(select(AccessLogEntry.app_id, AccessLogEntry.app_name)).all()
    assert sorted(rows) == [(None, "Acme Shoes")] * 3


def test_the_connections_page_lists_a_deleted_apps_reads(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    read_then_delete(client, db, rt)

    page = client.get("/connections").text
    assert "Apps that were deleted" in page
    assert "Acme Shoes: 3 reads" in page
    log = client.get("/connections/deleted-apps")
    assert log.status_code == 200
    assert "3 reads in total." in log.text
    rows = re.findall(
        r"<tr>\s*<td><time[^>]*>[^<]+</time></td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", log.text
    )
    assert rows == [
        ("Acme Shoes", "Phone number"),
        ("Acme Shoes", "Given name, Phone number"),
        ("Acme Shoes", "Given name, Phone number"),
    ]


def test_the_export_holds_a_deleted_apps_reads_with_its_name(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    read_then_delete(client, db, rt)

    token = page_csrf(client, "/account/export")
    response = client.post("/account/export", data={"csrf_token": token})
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    data = json.loads(archive.read("data.json"))
    jsonschema.validate(data, json.loads(archive.read("data.schema.json")))
    items = data["sections"]["access_log"]["items"]
    assert [(i["vendor_name"], i["vendor_id"]) for i in items] == [("Acme Shoes", None)] * 3
    rows = list(csv.DictReader(io.StringIO(archive.read("access_log.csv").decode())))
    assert [r["vendor_name"] for r in rows] == ["Acme Shoes"] * 3
    html = archive.read("index.html").decode()
    assert "Acme Shoes" in html


def test_erasure_removes_the_reads_of_a_deleted_app_too(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    read_then_delete(client, db, rt)
    [person_id] = set(db.scalars(select(AccessLogEntry.individual_id)))

    erase(db, rt, client.app.state.portability, person_id)  # type: ignore[attr-defined]
    db.flush()

    assert db.scalars(select(AccessLogEntry.id)).all() == []
