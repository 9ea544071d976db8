"""The profile pages: forms that save, re-render with the message next to the field, clear."""

from __future__ import annotations

import html
import re
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, api_headers, page_csrf, post_form, sign_up
from tests.web.conftest import Count
from vault.profile.models import ProfileField

TOMORROW = (date.today() + timedelta(days=1)).isoformat()
ADDRESS = {
    "street": "Keizersgracht 1",
    "extra": "",
    "postal_code": "1015 CJ",
    "locality": "Amsterdam",
    "region": "",
}


class Elements(HTMLParser):
    """Attributes of every element with an id, and the text of each."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, dict[str, str]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if "id" in values:
            self.attrs[values["id"]] = {"tag": tag, **values}
            self.text[values["id"]] = ""
            if tag not in ("input", "br", "img"):
                self._open.append(values["id"])

    def handle_endtag(self, tag: str) -> None:
        if self._open and self.attrs[self._open[-1]]["tag"] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            self.text[element] += data


def field_keys(db: Session) -> list[str]:
    db.expire_all()
    return sorted(db.scalars(select(ProfileField.field_key)))


def save(client: TestClient, key: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
    return post_form(client, f"/profile/fields/{key}", data, form_page=f"/profile/fields/{key}")


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    sign_up(client)
    return client


# -- saving ---------------------------------------------------------------------------------


def test_saved_phone_shows_on_the_profile_in_international_form(signed_in: TestClient) -> None:
    response = save(signed_in, "phone", {"value": "+31201234567"})
    assert response.status_code == 303
    page = signed_in.get("/profile").text
    assert "+31 20 123 4567" in page
    assert "Phone number saved." in page


def test_saved_address_shows_on_the_profile(signed_in: TestClient) -> None:
    response = save(signed_in, "address", {**ADDRESS, "country": "NL"})
    assert response.status_code == 303
    page = signed_in.get("/profile").text
    assert "Keizersgracht 1" in page
    assert "Netherlands" in page


def test_saved_dietary_preferences_keep_every_ticked_box(signed_in: TestClient) -> None:
    save(signed_in, "dietary", {"values": ["vegan", "nut-allergy"]})
    assert signed_in.get("/api/v1/profile").json()["fields"]["dietary"] == ["vegan", "nut-allergy"]


def test_saved_shoe_size_shows_size_and_system(signed_in: TestClient) -> None:
    save(signed_in, "shoe_size", {"system": "EU", "size": "42,5"})
    assert "42.5 (EU)" in signed_in.get("/profile").text


def test_edit_form_shows_the_saved_value(signed_in: TestClient) -> None:
    save(signed_in, "given_name", {"value": "Ada"})
    form = Elements(signed_in.get("/profile/fields/given_name").text)
    assert form.attrs["value"]["value"] == "Ada"


def test_profile_page_escapes_what_was_saved(signed_in: TestClient) -> None:
    save(signed_in, "given_name", {"value": "<script>alert(1)</script>"})
    page = signed_in.get("/profile").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- invalid input re-renders the form -----------------------------------------------------

INVALID_FORMS: dict[str, tuple[str, dict[str, object], str, str, str]] = {
    # name: (field key, form, control marked invalid, error element id, message start)
    "phone": (
        "phone",
        {"value": "call me maybe"},
        "value",
        "phone-error",
        "Enter the number in international form",
    ),
    "future_birthdate": (
        "birthdate",
        {"value": TOMORROW},
        "value",
        "birthdate-error",
        "A date of birth cannot be in the future.",
    ),
    "too_long_name": (
        "given_name",
        {"value": "A" * 101},
        "value",
        "given_name-error",
        "Given name can be at most 100 characters.",
    ),
    "shoe_size_out_of_range": (
        "shoe_size",
        {"system": "EU", "size": "60"},
        "size",
        "shoe_size-error",
        "EU shoe sizes run from 16 to 52",
    ),
    "address_missing_country": (
        "address",
        {**ADDRESS, "country": ""},
        "country",
        "address-country-error",
        "Country is required for an address.",
    ),
    "address_missing_street": (
        "address",
        {**ADDRESS, "street": "", "country": "NL"},
        "street",
        "address-street-error",
        "Street and number is required for an address.",
    ),
    "language": (
        "language",
        {"value": "xx"},
        "value",
        "language-error",
        "Choose one of the listed options for preferred language.",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID_FORMS))
def test_invalid_form_rerenders_with_the_message_next_to_the_field(
    signed_in: TestClient, case: str
) -> None:
    key, data, control, error_id, message = INVALID_FORMS[case]
    response = save(signed_in, key, data)
    assert response.status_code == 400
    page = Elements(response.text)
    assert page.text[error_id].startswith(message)
    assert page.attrs[control]["aria-invalid"] == "true"
    assert error_id in page.attrs[control]["aria-describedby"].split()


@pytest.mark.parametrize("case", sorted(INVALID_FORMS))
def test_invalid_form_saves_nothing(signed_in: TestClient, db: Session, case: str) -> None:
    key, data, *_ = INVALID_FORMS[case]
    before = field_keys(db)
    save(signed_in, key, data)
    assert field_keys(db) == before
    assert signed_in.get("/api/v1/profile").json()["fields"].keys() == {"email"}


def test_invalid_form_keeps_what_was_typed(signed_in: TestClient) -> None:
    response = save(signed_in, "phone", {"value": "call me maybe"})
    assert Elements(response.text).attrs["value"]["value"] == "call me maybe"


def test_invalid_address_keeps_the_other_parts(signed_in: TestClient) -> None:
    response = save(signed_in, "address", {**ADDRESS, "country": ""})
    page = Elements(response.text)
    assert page.attrs["street"]["value"] == "Keizersgracht 1"
    assert page.attrs["locality"]["value"] == "Amsterdam"


def test_error_and_hint_are_both_announced_for_the_field(signed_in: TestClient) -> None:
    response = save(signed_in, "phone", {"value": "call me maybe"})
    assert re.findall(r"aria-describedby", response.text.split('id="value"')[1].split(">")[0]) == [
        "aria-describedby"
    ]
    described = Elements(response.text).attrs["value"]["aria-describedby"].split()
    assert described == ["value-hint", "phone-error"]


def test_no_dietary_preference_ticked_marks_the_group_invalid(signed_in: TestClient) -> None:
    response = save(signed_in, "dietary", {})
    assert response.status_code == 400
    assert "Tick at least one dietary preference, or clear the field." in html.unescape(
        response.text
    )
    assert re.search(
        r'<fieldset aria-invalid="true" aria-describedby="dietary-error"', response.text
    )


def test_valid_form_after_an_invalid_one_saves(signed_in: TestClient) -> None:
    save(signed_in, "phone", {"value": "call me maybe"})
    assert save(signed_in, "phone", {"value": "+31 20 123 4567"}).status_code == 303


# -- custom fields --------------------------------------------------------------------------


def test_added_custom_field_shows_on_the_profile(signed_in: TestClient) -> None:
    response = post_form(
        signed_in,
        "/profile/custom",
        {"label": "Loyalty card", "value": "42"},
        form_page="/profile/custom/new",
    )
    assert response.status_code == 303
    page = signed_in.get("/profile").text
    assert "Loyalty card" in page
    assert "Loyalty card added." in page


def test_custom_field_with_a_long_label_rerenders_with_the_message(
    signed_in: TestClient, count: Count
) -> None:
    response = post_form(
        signed_in,
        "/profile/custom",
        {"label": "L" * 61, "value": "42"},
        form_page="/profile/custom/new",
    )
    assert response.status_code == 400
    page = Elements(response.text)
    assert page.text["label-error"] == "Label can be at most 60 characters."
    assert page.attrs["label"]["aria-invalid"] == "true"
    assert page.text["value"] == "42"
    assert count(ProfileField) == 1


def test_custom_field_without_a_value_rerenders_with_the_message(
    signed_in: TestClient, count: Count
) -> None:
    response = post_form(
        signed_in,
        "/profile/custom",
        {"label": "Pet", "value": "  "},
        form_page="/profile/custom/new",
    )
    assert response.status_code == 400
    page = Elements(response.text)
    assert page.text["value-error"].startswith("Value cannot be empty")
    assert page.attrs["value"]["aria-invalid"] == "true"
    assert count(ProfileField) == 1


def test_edited_custom_field_shows_the_new_value(signed_in: TestClient) -> None:
    key = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "Pet", "value": "Cat"},
        headers=api_headers(signed_in),
    ).json()["key"]
    response = post_form(
        signed_in,
        f"/profile/custom/{key}",
        {"label": "Pet", "value": "Dog"},
        form_page=f"/profile/custom/{key}",
    )
    assert response.status_code == 303
    assert signed_in.get("/api/v1/profile").json()["custom"] == [
        {"key": key, "label": "Pet", "value": "Dog"}
    ]


def test_invalid_custom_field_edit_keeps_the_old_value(signed_in: TestClient) -> None:
    key = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "Pet", "value": "Cat"},
        headers=api_headers(signed_in),
    ).json()["key"]
    response = post_form(
        signed_in,
        f"/profile/custom/{key}",
        {"label": "", "value": "Dog"},
        form_page=f"/profile/custom/{key}",
    )
    assert response.status_code == 400
    assert signed_in.get("/api/v1/profile").json()["custom"][0]["value"] == "Cat"


# -- clearing -------------------------------------------------------------------------------


def test_clearing_a_field_deletes_its_row(signed_in: TestClient, count: Count) -> None:
    save(signed_in, "phone", {"value": "+31 20 123 4567"})
    assert count(ProfileField) == 2
    response = post_form(signed_in, "/profile/fields/phone/clear", {}, form_page="/profile")
    assert response.status_code == 303
    assert count(ProfileField) == 1


def test_cleared_field_shows_as_not_filled_in(signed_in: TestClient) -> None:
    save(signed_in, "phone", {"value": "+31 20 123 4567"})
    post_form(signed_in, "/profile/fields/phone/clear", {}, form_page="/profile")
    page = signed_in.get("/profile").text
    assert "Phone number removed from your profile." in page
    assert "+31 20 123 4567" not in page
    row = page.split('id="field-phone"')[1].split("</div>")[0]
    assert "Not filled in" in row


def test_clearing_a_custom_field_deletes_its_row(signed_in: TestClient, count: Count) -> None:
    key = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "Pet", "value": "Cat"},
        headers=api_headers(signed_in),
    ).json()["key"]
    assert count(ProfileField) == 2
    response = post_form(signed_in, f"/profile/fields/{key}/clear", {}, form_page="/profile")
    assert response.status_code == 303
    assert count(ProfileField) == 1
    assert "Pet removed from your profile." in signed_in.get("/profile").text


def test_clearing_email_is_refused_with_the_message_next_to_the_field(
    signed_in: TestClient, db: Session
) -> None:
    response = post_form(signed_in, "/profile/fields/email/clear", {}, form_page="/profile")
    assert response.status_code == 400
    page = Elements(response.text)
    assert page.text["email-error"] == (
        "Your email address is how you sign in: you can change it but not remove it."
    )
    assert page.attrs["value"]["aria-invalid"] == "true"
    assert field_keys(db) == ["email"]


def test_editing_the_email_leads_to_the_address_change_on_the_account_page(
    signed_in: TestClient,
) -> None:
    response = signed_in.get("/profile/fields/email")
    assert response.status_code == 303
    assert response.headers["location"] == "/account#change-email"
    page = signed_in.get("/account").text
    assert 'action="/account/email"' in page
    assert "/profile/fields/email/clear" not in page


def test_clearing_a_field_through_the_api_deletes_its_row(
    signed_in: TestClient, count: Count
) -> None:
    headers = api_headers(signed_in)
    signed_in.put("/api/v1/profile/fields/given_name", json={"value": "Ada"}, headers=headers)
    assert count(ProfileField) == 2
    response = signed_in.delete("/api/v1/profile/fields/given_name", headers=headers)
    assert response.status_code == 204
    assert count(ProfileField) == 1


def test_clearing_email_through_the_api_is_refused(signed_in: TestClient, db: Session) -> None:
    response = signed_in.delete("/api/v1/profile/fields/email", headers=api_headers(signed_in))
    assert response.status_code == 400
    assert response.json()["field"] == "email"
    assert field_keys(db) == ["email"]


def test_clearing_only_touches_the_signed_in_persons_row(
    signed_in: TestClient, second_client: TestClient, count: Count
) -> None:
    sign_up(second_client)
    for browser in (signed_in, second_client):
        browser.put(
            "/api/v1/profile/fields/given_name", json={"value": "Ada"}, headers=api_headers(browser)
        )
    assert count(ProfileField) == 4
    signed_in.delete("/api/v1/profile/fields/given_name", headers=api_headers(signed_in))
    assert count(ProfileField) == 3
    assert second_client.get("/api/v1/profile").json()["fields"]["given_name"] == "Ada"


def test_page_forms_carry_a_csrf_token(signed_in: TestClient) -> None:
    save(signed_in, "phone", {"value": "+31 20 123 4567"})
    for path in ("/profile", "/profile/fields/phone", "/account", "/profile/custom/new"):
        page = signed_in.get(path).text
        forms = re.findall(r'<form method="post".*?</form>', page, flags=re.S)
        assert forms, path
        for form in forms:
            assert f'name="csrf_token" value="{page_csrf(signed_in, path)}"' in form, path


def test_sign_in_page_form_carries_a_csrf_token(client: TestClient) -> None:
    page = client.get("/signin").text
    assert re.search(
        r'<form method="post" action="/signin".*name="csrf_token" value="[^"]+"', page, flags=re.S
    )
    assert PASSWORD not in page


def test_custom_value_typed_on_several_lines_is_saved(signed_in: TestClient) -> None:
    response = post_form(
        signed_in,
        "/profile/custom",
        {"label": "Delivery notes", "value": "Ring twice.\r\nLeave at the back door."},
        form_page="/profile/custom/new",
    )
    assert response.status_code == 303
    custom = signed_in.get("/api/v1/profile").json()["custom"]
    assert custom[0]["value"] == "Ring twice.\nLeave at the back door."
