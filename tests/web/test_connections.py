"""The connections page: who may read what, reads so far, narrowing and revoking."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from tests.consent.factories import bearer, connect, individual, make_app
from tests.helpers import PASSWORD, page_csrf, post_form, sign_in, sign_up, unique_email
from vault.accounts.models import Role
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

PROFILE = "/vendor/v1/profile"


def revoke(client: TestClient, grant: Grant):  # type: ignore[no-untyped-def]
    return post_form(client, f"/connections/{grant.id}/revoke", {}, form_page="/connections")


def narrow(client: TestClient, grant: Grant, remove: list[str]):  # type: ignore[no-untyped-def]
    return post_form(
        client, f"/connections/{grant.id}/narrow", {"remove": remove}, form_page="/connections"
    )


def section(page: str, grant: Grant) -> str:
    """The card of one connection on the page."""
    match = re.search(
        rf'<section class="card connection" aria-labelledby="conn-{grant.id}">(.*?)</section>',
        page,
        re.S,
    )
    assert match, "connection not on the page"
    return match.group(1)


def test_page_shows_app_fields_purpose_agreement_and_dates(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    app = make_app(db, name="Acme Shoes", purpose="Send the shoes you order.")
    grant = connect(db, rt, person, app, ["phone", "shoe_size"], agreement="no-tracking")

    card = section(client.get("/connections").text, grant)

    assert "Acme Shoes" in card
    assert 'href="https://shop.example"' in card
    assert "Send the shoes you order." in card
    assert '<label for="remove-' + str(grant.id) + '-phone">Phone number</label>' in card
    assert "Shoe size" in card
    assert '<a href="/terms/no-tracking">No tracking off your site</a>' in card
    assert grant.granted_at.strftime("%Y-%m-%d %H:%M") in card
    assert grant.expires_at is not None
    assert grant.expires_at.strftime("%Y-%m-%d %H:%M") in card
    assert "never" in card


def test_open_ended_grant_shows_until_you_revoke(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email"], duration="revoked")

    assert "until you revoke it" in section(client.get("/connections").text, grant)


def test_page_without_connections_says_so(client: TestClient, db: Session, rt: Runtime) -> None:
    individual(client, db, rt)
    page = client.get("/connections").text
    assert "No vendor can read your data right now." in page


def test_nav_links_connections_for_individuals(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    individual(client, db, rt)
    page = client.get("/connections").text
    assert '<a href="/connections" aria-current="page">Connections</a>' in page


def test_page_needs_sign_in(client: TestClient) -> None:
    response = client.get("/connections")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/connections"


def test_page_shows_read_count_and_last_access(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)
    for _ in range(3):
        assert client.get(PROFILE, headers=headers).status_code == 200

    card = section(client.get("/connections").text, grant)

    assert re.search(r"<dt>Reads so far</dt><dd>3</dd>", card)
    assert re.search(r"<dt>Last read</dt><dd><time datetime=", card)


def test_log_page_lists_each_read_with_time_and_fields(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada", phone="+31201234567")
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name", "phone"])
    client.get(PROFILE, headers=bearer(db, rt, app, grant))
    client.get(PROFILE, headers=bearer(db, rt, app, grant, scope="openid profile:phone"))

    page = client.get(f"/connections/{grant.id}/log").text

    assert "Reads by Acme Shoes" in page
    assert "2 reads in total." in page
    rows = re.findall(r"<tr>\s*<td><time[^>]*>[^<]+</time></td>\s*<td>([^<]*)</td>", page)
    assert rows == ["Phone number", "Given name, Phone number"]  # newest first


def test_log_page_is_paged(client: TestClient, db: Session, rt: Runtime) -> None:
    from consent.grants.access import log_access

    person = individual(client, db, rt)
    app = make_app(db)
    grant = connect(db, rt, person, app, ["email"])
    for _ in range(51):
        log_access(db, person.id, app, ["email"])
    db.commit()

    first = client.get(f"/connections/{grant.id}/log").text
    second = client.get(f"/connections/{grant.id}/log?page=2").text

    assert first.count("<tr>") == 51  # header + 50
    assert 'rel="next">Older reads' in first
    assert second.count("<tr>") == 2
    assert 'rel="prev">Newer reads' in second


# -- revoking --------------------------------------------------------------------------------


def test_revoking_on_the_page_makes_the_vendors_next_call_401(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)
    assert client.get(PROFILE, headers=headers).status_code == 200

    response = revoke(client, grant)

    assert response.status_code == 303
    assert response.headers["location"] == "/connections"
    assert client.get(PROFILE, headers=headers).status_code == 401
    page = client.get("/connections").text
    assert "You revoked Acme Shoes&#39;s access." in page
    assert f"conn-{grant.id}" not in page


def test_revoke_needs_csrf(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)

    response = client.post(f"/connections/{grant.id}/revoke", data={})

    assert response.status_code == 403
    assert client.get(PROFILE, headers=headers).status_code == 200


def test_another_individual_cannot_revoke(
    client: TestClient,
    db: Session,
    rt: Runtime,
    second_client: TestClient,
) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db)
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)
    sign_up(second_client)

    response = revoke(second_client, grant)

    assert response.status_code == 404
    assert client.get(PROFILE, headers=headers).status_code == 200


def test_unknown_or_malformed_connection_is_404(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    individual(client, db, rt)
    token = page_csrf(client, "/connections")
    for path in ("/connections/not-a-uuid/revoke", f"/connections/{'0' * 32}/revoke"):
        assert client.post(path, data={"csrf_token": token}).status_code == 404
    assert client.get("/connections/not-a-uuid/log").status_code == 404


def test_another_individual_cannot_see_the_log(
    client: TestClient, db: Session, rt: Runtime, second_client: TestClient
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["email"])
    sign_up(second_client)

    assert second_client.get(f"/connections/{grant.id}/log").status_code == 404


# -- narrowing -------------------------------------------------------------------------------


def test_narrowing_a_field_removes_it_from_the_next_read(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada", phone="+31201234567")
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name", "phone"])
    headers = bearer(db, rt, app, grant)

    response = narrow(client, grant, ["phone"])

    assert response.status_code == 303
    body = client.get(PROFILE, headers=headers).json()
    assert body["fields"] == {"given_name": "Ada"}
    assert body["granted_fields"] == ["given_name"]
    page = client.get("/connections").text
    assert "Acme Shoes can no longer read: Phone number." in page
    assert "Phone number" not in section(page, grant)


def test_narrowing_shows_what_was_removed(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt)
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name", "phone", "email"])

    narrow(client, grant, ["phone", "email"])

    assert "Acme Shoes can no longer read: Email address, Phone number." in (
        client.get("/connections").text
    )


def test_narrowing_every_field_revokes(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name"])
    headers = bearer(db, rt, app, grant)

    narrow(client, grant, ["given_name"])

    assert client.get(PROFILE, headers=headers).status_code == 401
    page = client.get("/connections").text
    assert "its access is revoked" in page
    assert f"conn-{grant.id}" not in page


def test_narrowing_nothing_shows_a_message_next_to_the_fields(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt)
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name", "phone"])

    for remove in ([], ["not-a-field"], ["email"]):
        response = narrow(client, grant, remove)
        assert response.status_code == 400
        card = section(response.text, grant)
        assert f'aria-describedby="narrow-{grant.id}-error"' in card
        assert "Tick the fields Acme Shoes should no longer read." in card
    db.refresh(grant)
    assert grant.fields == ["given_name", "phone"]


def test_narrow_needs_csrf(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["given_name", "phone"])

    response = client.post(f"/connections/{grant.id}/narrow", data={"remove": ["phone"]})

    assert response.status_code == 403
    db.refresh(grant)
    assert grant.fields == ["given_name", "phone"]


def test_another_individual_cannot_narrow(
    client: TestClient, db: Session, rt: Runtime, second_client: TestClient
) -> None:
    person = individual(client, db, rt)
    grant = connect(db, rt, person, make_app(db), ["given_name", "phone"])
    sign_up(second_client)

    assert narrow(second_client, grant, ["phone"]).status_code == 404
    db.refresh(grant)
    assert grant.fields == ["given_name", "phone"]


def test_other_roles_get_403(client: TestClient, db: Session, rt: Runtime) -> None:
    email = unique_email("auditor")
    new_account(db, rt, email, PASSWORD, role=Role.AUDITOR)
    db.commit()
    sign_in(client, email)

    assert client.get("/connections").status_code == 403
    assert 'href="/connections"' not in client.get("/account").text


def test_signed_out_post_is_refused(client: TestClient) -> None:
    token = page_csrf(client, "/signin")
    response = client.post(f"/connections/{'0' * 32}/revoke", data={"csrf_token": token})
    assert response.status_code == 401


def test_ended_connections_keep_a_link_to_their_reads(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    person = individual(client, db, rt, given_name="Ada")
    app = make_app(db, name="Acme Shoes")
    grant = connect(db, rt, person, app, ["given_name"])
    client.get(PROFILE, headers=bearer(db, rt, app, grant))

    revoke(client, grant)
    page = client.get("/connections").text

    assert "Ended connections" in page
    assert f'<a href="/connections/{grant.id}/log">See every read by Acme Shoes</a>' in page
    log = client.get(f"/connections/{grant.id}/log").text
    assert "Its access has ended." in log
    assert "1 read in total." in log


def test_only_web_addresses_become_links(client: TestClient, db: Session, rt: Runtime) -> None:
    person = individual(client, db, rt)
    app = make_app(db)
    app.homepage_url = "javascript:alert(1)"
    db.commit()
    grant = connect(db, rt, person, app, ["email"])

    card = section(client.get("/connections").text, grant)

    assert "javascript:" not in card
    assert 'href="https://shop.example/privacy"' in card
