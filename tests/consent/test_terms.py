"""The terms roster: stable agreements, their pages and JSON, and the individual's choice."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from consent.terms.catalogue import (
    AGREEMENTS,
    DEFAULT_AGREEMENT,
    agreement_for,
    set_preferred_agreement,
    vendor_accepts,
)
from tests.consent.factories import account_of, individual
from tests.helpers import post_form, sign_up
from vault.accounts.models import Account
from vault.errors import InvalidInput
from vault.runtime import Runtime

IDS = ["service-only", "service-and-portability", "no-tracking", "intent-sharing"]


def checked(page: str) -> list[str]:
    """The values of the ticked radio buttons."""
    return re.findall(r'<input type="radio"[^>]*value="([^"]+)"[^>]*checked', page)


def choose(client: TestClient, agreement: object):  # type: ignore[no-untyped-def]
    return post_form(client, "/account/terms", {"agreement": agreement})


# -- the roster ------------------------------------------------------------------------------


def test_roster_has_the_four_stable_ids_and_a_default() -> None:
    assert list(AGREEMENTS) == IDS
    assert DEFAULT_AGREEMENT == "service-only"
    assert all(a.id == key and a.clauses and a.summary for key, a in AGREEMENTS.items())


def test_only_the_portability_agreement_promises_a_copy() -> None:
    assert [a.id for a in AGREEMENTS.values() if a.portability] == ["service-and-portability"]
    assert not any(a.tracking_off_site or a.sharing_with_third_parties for a in AGREEMENTS.values())


def test_agreement_for_uses_the_preference_else_the_default() -> None:
    assert agreement_for(Account(preferred_agreement_id=None)).id == "service-only"
    assert agreement_for(Account(preferred_agreement_id="no-tracking")).id == "no-tracking"
    # An id that left the roster falls back instead of failing.
    assert agreement_for(Account(preferred_agreement_id="retired")).id == "service-only"


def test_set_preferred_agreement_refuses_ids_off_the_roster() -> None:
    account = Account(preferred_agreement_id=None)
    for bad in ("", "anything", None, ["no-tracking"], "NO-TRACKING"):
        try:
            set_preferred_agreement(account, bad)
        except InvalidInput as exc:
            assert exc.field == "agreement"
        else:
            raise AssertionError(f"{bad!r} was accepted")
    assert account.preferred_agreement_id is None


def test_vendor_accepts_checks_the_declared_list() -> None:
    assert vendor_accepts(["service-only"], AGREEMENTS["service-only"])
    assert not vendor_accepts(["service-only"], AGREEMENTS["intent-sharing"])


# -- public pages ----------------------------------------------------------------------------


def test_machine_readable_form_has_the_documented_shape(client: TestClient) -> None:
    response = client.get("/terms/service-and-portability.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == "service-and-portability"
    assert body["version"] == "1.0"
    assert body["first_party"] == "individual"
    assert body["second_party"] == "vendor"
    assert body["portability"] is True
    assert body["tracking_off_site"] is False
    assert body["sharing_with_third_parties"] is False
    assert body["permitted_uses"] == ["service-delivery"]
    assert "sale" in body["prohibited"]
    assert body["retention"]["until"] == "grant-ends"
    assert body["retention"]["grace_days"] == 30
    assert body["plain_language_url"] == "http://127.0.0.1:8000/terms/service-and-portability"


def test_every_agreement_has_json_and_a_page(client: TestClient) -> None:
    for agreement_id in IDS:
        assert client.get(f"/terms/{agreement_id}.json").json()["id"] == agreement_id
        page = client.get(f"/terms/{agreement_id}")
        assert page.status_code == 200
        assert AGREEMENTS[agreement_id].title in page.text


def test_whole_roster_as_json(client: TestClient) -> None:
    body = client.get("/terms.json").json()
    assert body["default"] == "service-only"
    assert [a["id"] for a in body["agreements"]] == IDS


def test_unknown_agreement_json_is_a_json_404(client: TestClient) -> None:
    response = client.get("/terms/sell-everything.json")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_unknown_agreement_page_is_404(client: TestClient) -> None:
    response = client.get("/terms/sell-everything")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]


def test_plain_language_page_lists_the_clauses(client: TestClient) -> None:
    page = client.get("/terms/intent-sharing").text
    for clause in AGREEMENTS["intent-sharing"].clauses:
        assert clause.replace("'", "&#39;") in page
    assert 'href="/terms/intent-sharing.json"' in page


def test_roster_page_links_every_agreement(client: TestClient) -> None:
    page = client.get("/terms").text
    for agreement_id in IDS:
        assert f'href="/terms/{agreement_id}"' in page
        assert f'href="/terms/{agreement_id}.json"' in page


# -- the individual's choice ------------------------------------------------------------------


def test_settings_page_checks_the_default_until_one_is_chosen(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    individual(client, db, rt)
    assert checked(client.get("/account/terms").text) == ["service-only"]


def test_preferred_agreement_persists(client: TestClient, db: Session, rt: Runtime) -> None:
    account = individual(client, db, rt)

    response = choose(client, "intent-sharing")

    assert response.status_code == 303
    assert response.headers["location"] == "/account/terms"
    db.refresh(account)
    assert account.preferred_agreement_id == "intent-sharing"
    page = client.get("/account/terms").text
    assert "You now offer vendors “Sharing intent data”." in page
    assert checked(page) == ["intent-sharing"]


def test_invalid_agreement_is_refused_with_a_message(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    account = individual(client, db, rt)
    choose(client, "no-tracking")

    response = choose(client, "sell-everything")

    assert response.status_code == 400
    assert (
        '<p class="field-error" id="agreement-error">Choose one of the listed agreements.</p>'
        in (response.text)
    )
    assert 'aria-describedby="agreement-error"' in response.text
    db.refresh(account)
    assert account.preferred_agreement_id == "no-tracking"


def test_choosing_terms_needs_csrf(client: TestClient, db: Session, rt: Runtime) -> None:
    account = individual(client, db, rt)
    response = client.post("/account/terms", data={"agreement": "no-tracking"})
    assert response.status_code == 403
    db.refresh(account)
    assert account.preferred_agreement_id is None


def test_terms_settings_need_sign_in(client: TestClient) -> None:
    response = client.get("/account/terms")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/account/terms"


def test_account_page_links_to_the_terms_settings(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    account_of(db, rt, sign_up(client))
    assert 'href="/account/terms"' in client.get("/account").text
