"""Bad input gets a clear 4xx and leaves the database as it was: CSRF, sizes, types, values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, api_headers, page_csrf, sign_up, unique_email
from tests.web.conftest import Count
from vault.accounts.models import Account, AccountSession
from vault.profile.models import ProfileField

CSRF_MESSAGE = "This form has expired or did not come from this site."
LIMIT = 64 * 1024


def snapshot(db: Session) -> tuple[Any, ...]:
    """Everything a state-changing form could touch."""
    db.expire_all()
    return (
        sorted(db.execute(select(Account.id, Account.password_hash, Account.email_index)).all()),
        sorted(db.scalars(select(AccountSession.id)).all()),
        sorted(
            db.execute(
                select(ProfileField.owner_id, ProfileField.field_key, ProfileField.value_ct)
            ).all()
        ),
    )


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    """``client``, signed in, with a phone number filled in."""
    sign_up(client)
    put = client.put(
        "/api/v1/profile/fields/phone",
        json={"value": "+31 20 123 4567"},
        headers=api_headers(client),
    )
    assert put.status_code == 200
    return client


# -- CSRF on page forms ---------------------------------------------------------------------

FORMS: dict[str, tuple[str, dict[str, str]]] = {
    "save_field": ("/profile/fields/given_name", {"value": "Mallory"}),
    "clear_field": ("/profile/fields/phone/clear", {}),
    "add_custom": ("/profile/custom", {"label": "Pet", "value": "Cat"}),
    "change_password": (
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "purple elephant dance",
            "new_password_confirm": "purple elephant dance",
        },
    ),
    "sign_out": ("/signout", {}),
    "sign_out_everywhere": ("/account/signout-everywhere", {}),
}


BAD_TOKENS = {"missing": {}, "wrong": {"csrf_token": "A" * 43}}


@pytest.mark.parametrize("token", sorted(BAD_TOKENS))
@pytest.mark.parametrize("form", sorted(FORMS))
def test_form_with_bad_csrf_token_is_refused_with_403_and_changes_nothing(
    signed_in: TestClient, db: Session, form: str, token: str
) -> None:
    path, data = FORMS[form]
    before = snapshot(db)
    response = signed_in.post(path, data={**data, **BAD_TOKENS[token]})
    assert response.status_code == 403
    assert CSRF_MESSAGE in response.text
    assert "<h1>Not allowed</h1>" in response.text
    assert snapshot(db) == before
    assert signed_in.get("/profile").status_code == 200


def test_empty_csrf_token_is_refused(signed_in: TestClient, db: Session) -> None:
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/given_name", data={"value": "Mallory", "csrf_token": ""}
    )
    assert response.status_code == 403
    assert snapshot(db) == before


def test_csrf_token_from_another_browser_is_refused(
    signed_in: TestClient, second_client: TestClient, db: Session
) -> None:
    foreign = page_csrf(second_client, "/signin")
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/given_name", data={"value": "Mallory", "csrf_token": foreign}
    )
    assert response.status_code == 403
    assert CSRF_MESSAGE in response.text
    assert snapshot(db) == before


def plant(victim: TestClient, attacker: TestClient) -> None:
    """Give the victim's browser the attacker's CSRF cookie, as a sibling subdomain or a page
    on plain HTTP before HSTS could."""
    value = attacker.cookies["vrm_csrf"]
    victim.cookies.delete("vrm_csrf")
    victim.cookies.set("vrm_csrf", value)


@pytest.mark.parametrize("attacker_session", ["signed_in", "signed_out"])
def test_a_csrf_token_paired_with_its_planted_cookie_is_refused_for_another_session(
    signed_in: TestClient, second_client: TestClient, db: Session, attacker_session: str
) -> None:
    if attacker_session == "signed_in":
        sign_up(second_client)
    token = page_csrf(second_client, "/profile" if attacker_session == "signed_in" else "/signin")
    plant(signed_in, second_client)
    before = snapshot(db)

    response = signed_in.post(
        "/profile/fields/given_name", data={"value": "Mallory", "csrf_token": token}
    )

    assert response.status_code == 403
    assert CSRF_MESSAGE in response.text
    assert snapshot(db) == before


def test_sign_in_without_csrf_token_starts_no_session(
    client: TestClient, second_client: TestClient, count: Count
) -> None:
    email = sign_up(client)
    second_client.get("/signin")
    response = second_client.post("/signin", data={"email": email, "password": PASSWORD})
    assert response.status_code == 403
    assert CSRF_MESSAGE in response.text
    assert "vrm_session" not in response.cookies
    assert count(AccountSession) == 1


def test_sign_up_without_csrf_token_creates_no_account(client: TestClient, count: Count) -> None:
    client.get("/signup")
    response = client.post(
        "/signup",
        data={"email": unique_email(), "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert response.status_code == 403
    assert CSRF_MESSAGE in response.text
    assert count(Account) == 0


def test_csrf_token_without_its_cookie_is_refused(signed_in: TestClient, db: Session) -> None:
    token = page_csrf(signed_in, "/profile")
    signed_in.cookies.delete("vrm_csrf")
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/given_name", data={"value": "Mallory", "csrf_token": token}
    )
    assert response.status_code == 403
    assert snapshot(db) == before


def test_csrf_token_in_the_query_string_is_not_enough(signed_in: TestClient, db: Session) -> None:
    token = page_csrf(signed_in, "/profile")
    before = snapshot(db)
    response = signed_in.post(
        f"/profile/fields/given_name?csrf_token={token}", data={"value": "Mallory"}
    )
    assert response.status_code == 403
    assert snapshot(db) == before


# -- CSRF on the JSON API -------------------------------------------------------------------

API_CHANGES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "put_field": ("PUT", "/api/v1/profile/fields/given_name", {"value": "Mallory"}),
    "delete_field": ("DELETE", "/api/v1/profile/fields/phone", None),
    "add_custom": ("POST", "/api/v1/profile/custom", {"label": "Pet", "value": "Cat"}),
}


@pytest.mark.parametrize("header", [None, "A" * 43], ids=["missing", "wrong"])
@pytest.mark.parametrize("change", sorted(API_CHANGES))
def test_api_change_without_valid_csrf_header_is_refused_with_403_json(
    signed_in: TestClient, db: Session, change: str, header: str | None
) -> None:
    method, path, body = API_CHANGES[change]
    headers = {} if header is None else {"X-CSRF-Token": header}
    before = snapshot(db)
    response = signed_in.request(method, path, json=body, headers=headers)
    assert response.status_code == 403
    payload = response.json()
    assert payload["error"] == "csrf_failed"
    assert CSRF_MESSAGE in payload["detail"]
    assert snapshot(db) == before


@pytest.mark.parametrize("header", ["", "x" * 5000], ids=["empty", "over_long"])
def test_api_csrf_header_empty_or_over_long_is_refused_with_403_json(
    signed_in: TestClient, db: Session, header: str
) -> None:
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        json={"value": "Mallory"},
        headers={"X-CSRF-Token": header},
    )
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert snapshot(db) == before


def test_api_csrf_token_from_another_browser_is_refused(
    signed_in: TestClient, second_client: TestClient, db: Session
) -> None:
    sign_up(second_client)
    foreign = api_headers(second_client)
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name", json={"value": "Mallory"}, headers=foreign
    )
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert snapshot(db) == before


def test_api_csrf_token_paired_with_its_planted_cookie_is_refused_for_another_session(
    signed_in: TestClient, second_client: TestClient, db: Session
) -> None:
    sign_up(second_client)
    foreign = api_headers(second_client)
    plant(signed_in, second_client)
    before = snapshot(db)

    response = signed_in.put(
        "/api/v1/profile/fields/given_name", json={"value": "Mallory"}, headers=foreign
    )

    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"
    assert snapshot(db) == before


def test_api_read_needs_no_csrf_header(signed_in: TestClient) -> None:
    assert signed_in.get("/api/v1/profile").status_code == 200


# -- body size ------------------------------------------------------------------------------


def chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_oversized_json_body_answers_413_json_and_changes_nothing(
    signed_in: TestClient, db: Session
) -> None:
    body = json.dumps({"value": "x" * (LIMIT + 10)})
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        content=body,
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": "The request body is larger than the limit of 64 KiB.",
    }
    assert snapshot(db) == before


def test_oversized_streamed_json_body_answers_413_json_and_changes_nothing(
    signed_in: TestClient, db: Session
) -> None:
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        content=chunks(LIMIT + 1),
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert snapshot(db) == before


def test_json_body_of_exactly_the_limit_is_accepted(signed_in: TestClient) -> None:
    body = json.dumps({"value": "Ada"}).encode()
    body += b" " * (LIMIT - len(body))
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        content=body,
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"key": "given_name", "value": "Ada"}


def test_oversized_form_answers_413_page_and_changes_nothing(
    signed_in: TestClient, db: Session
) -> None:
    token = page_csrf(signed_in, "/profile/fields/given_name")
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/given_name", data={"value": "x" * (LIMIT + 10), "csrf_token": token}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "The request body is larger than the limit of 64 KiB." in response.text
    assert snapshot(db) == before


def test_oversized_streamed_form_answers_413_page_and_changes_nothing(
    signed_in: TestClient, db: Session
) -> None:
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/given_name",
        content=chunks(LIMIT + 1),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert "<h1>Request too large</h1>" in response.text
    assert snapshot(db) == before


def test_oversized_sign_up_form_creates_no_account(client: TestClient, count: Count) -> None:
    token = page_csrf(client, "/signup")
    response = client.post(
        "/signup",
        data={
            "email": unique_email(),
            "password": "p" * LIMIT,
            "password_confirm": "p" * LIMIT,
            "csrf_token": token,
        },
    )
    assert response.status_code == 413
    assert count(Account) == 0


def test_limit_follows_the_max_body_bytes_setting(client_with, count: Count) -> None:  # type: ignore[no-untyped-def]
    small = client_with(max_body_bytes=2048)
    token = page_csrf(small, "/signup")
    response = small.post(
        "/signup",
        data={
            "email": unique_email(),
            "password": "p" * 3000,
            "password_confirm": "p" * 3000,
            "csrf_token": token,
        },
    )
    assert response.status_code == 413
    assert "limit of 2 KiB" in response.text
    assert count(Account) == 0


# -- JSON shape -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"value": 5}, "value"),
        ({"value": None}, "value"),
        ({"value": True}, "value"),
        ({"value": {"street": 5}}, "value"),
        ({"value": "Ada", "extra": 1}, "extra"),
        ({}, "value"),
        ([1, 2], "body"),
    ],
    ids=["number", "null", "boolean", "object_with_number", "unknown_field", "empty", "array"],
)
def test_wrong_json_shape_answers_422_and_changes_nothing(
    signed_in: TestClient, db: Session, body: Any, where: str
) -> None:
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name", json=body, headers=api_headers(signed_in)
    )
    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert payload["detail"].startswith("The request is not valid.")
    assert where in payload["detail"]
    assert snapshot(db) == before


def test_malformed_json_answers_422(signed_in: TestClient, db: Session) -> None:
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        content=b'{"value": "Ad',
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert snapshot(db) == before


# A lone UTF-16 surrogate: JSON can escape it, Python decodes it, but it is not text (it cannot
# be encoded), so it must be refused where the body is decoded, never reach a handler.
LONE = "Al\ud800ice"
ADDRESS_NL = {"street": "Keizersgracht 1", "postal_code": "1015 CJ", "locality": "Amsterdam"}

NOT_TEXT: dict[str, tuple[str, str, dict[str, Any], str]] = {
    # name: (method, path, body, where the answer says the bad text is)
    "given_name": ("PUT", "/api/v1/profile/fields/given_name", {"value": LONE}, "value"),
    "family_name": ("PUT", "/api/v1/profile/fields/family_name", {"value": LONE}, "value"),
    "address_part": (
        "PUT",
        "/api/v1/profile/fields/address",
        {"value": {**ADDRESS_NL, "country": "NL", "locality": LONE}},
        "value.locality",
    ),
    "address_key": (
        "PUT",
        "/api/v1/profile/fields/address",
        {"value": {**ADDRESS_NL, "country": "NL", LONE: "x"}},
        "a key of value",
    ),
    "dietary_item": (
        "PUT",
        "/api/v1/profile/fields/dietary",
        {"value": ["vegan", LONE]},
        "value.1",
    ),
    "custom_label": ("POST", "/api/v1/profile/custom", {"label": LONE, "value": "Cat"}, "label"),
    "custom_value": ("POST", "/api/v1/profile/custom", {"label": "Pet", "value": LONE}, "value"),
}


@pytest.mark.parametrize("case", sorted(NOT_TEXT))
def test_json_text_with_a_lone_surrogate_answers_422_and_changes_nothing(
    signed_in: TestClient, db: Session, case: str
) -> None:
    method, path, body, where = NOT_TEXT[case]
    before = snapshot(db)
    response = signed_in.request(
        method,
        path,
        content=json.dumps(body),  # ensure_ascii: the surrogate goes as the escape \ud800
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert f"{where} holds a lone UTF-16 surrogate" in payload["detail"]
    assert snapshot(db) == before


def test_a_surrogate_sent_as_utf8_like_bytes_answers_422(
    signed_in: TestClient, db: Session
) -> None:
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        content=b'{"value": "Al\xed\xa0\x80ice"}',  # what "\ud800" would be, were it UTF-8
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert snapshot(db) == before


def test_a_surrogate_pair_is_text_and_is_saved(signed_in: TestClient) -> None:
    response = signed_in.put(
        "/api/v1/profile/fields/given_name",
        content=json.dumps({"value": "Ada \U0001f600"}),  # sent as "\ud83d\ude00"
        headers={**api_headers(signed_in), "content-type": "application/json"},
    )
    assert response.status_code == 200
    assert response.json()["value"] == "Ada \U0001f600"


def test_unknown_field_in_custom_field_json_answers_422(
    signed_in: TestClient, count: Count
) -> None:
    response = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "Pet", "value": "Cat", "colour": "black"},
        headers=api_headers(signed_in),
    )
    assert response.status_code == 422
    assert "colour" in response.json()["detail"]
    assert count(ProfileField) == 2


# -- text that is not Unicode in a form ------------------------------------------------------


def multipart(fields: dict[str, bytes], charset: str | None) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body as a client other than a browser could send it."""
    body = b"".join(
        b'--XyZ\r\nContent-Disposition: form-data; name="'
        + name.encode()
        + b'"\r\n\r\n'
        + value
        + b"\r\n"
        for name, value in fields.items()
    )
    declared = f"; charset={charset}" if charset else ""
    return body + b"--XyZ--\r\n", {"content-type": f"multipart/form-data{declared}; boundary=XyZ"}


@pytest.mark.parametrize(
    ("charset", "value"),
    [("utf-7", b"Al+2AA-ice"), ("unicode_escape", b"Al\\ud800ice"), ("x-no-such", b"Al")],
)
def test_a_form_in_a_character_set_that_is_not_utf8_answers_415_and_changes_nothing(
    signed_in: TestClient, db: Session, charset: str, value: bytes
) -> None:
    # U+D800 is "+2AA-" in UTF-7 and "\ud800" in Python's unicode_escape: decoded with them,
    # a form would hand the page a string that cannot be stored.
    token = page_csrf(signed_in, "/profile/fields/given_name").encode()
    body, headers = multipart({"csrf_token": token, "value": value}, charset)
    before = snapshot(db)
    response = signed_in.post("/profile/fields/given_name", content=body, headers=headers)
    assert response.status_code == 415
    assert "Send the form as UTF-8, as browsers do" in response.text
    assert snapshot(db) == before


@pytest.mark.parametrize("charset", [None, "utf-8", "UTF8", '"utf-8"'])
def test_a_multipart_form_in_utf8_is_taken(signed_in: TestClient, charset: str | None) -> None:
    token = page_csrf(signed_in, "/profile/fields/given_name").encode()
    body, headers = multipart({"csrf_token": token, "value": "Zoë".encode()}, charset)
    response = signed_in.post("/profile/fields/given_name", content=body, headers=headers)
    assert response.status_code == 303
    assert signed_in.get("/api/v1/profile").json()["fields"]["given_name"] == "Zoë"


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_surrogate_bytes_in_a_utf8_form_arrive_as_replacement_characters(
    signed_in: TestClient, encoding: str
) -> None:
    token = page_csrf(signed_in, "/profile/fields/given_name")
    if encoding == "urlencoded":
        body = f"csrf_token={token}&value=Al%ED%A0%80ice".encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
    else:
        body, headers = multipart(
            {"csrf_token": token.encode(), "value": b"Al\xed\xa0\x80ice"}, None
        )
    response = signed_in.post("/profile/fields/given_name", content=body, headers=headers)
    assert response.status_code == 303
    saved = signed_in.get("/api/v1/profile").json()["fields"]["given_name"]
    assert saved.startswith("Al") and saved.endswith("ice")
    assert not any("\ud800" <= c <= "\udfff" for c in saved)


def test_the_token_endpoint_refuses_a_form_that_is_not_utf8_with_json(
    client: TestClient,
) -> None:
    body, headers = multipart({"grant_type": b"client_credentials", "scope": b"+2AA-"}, "utf-7")
    response = client.post("/oauth/token", content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


# -- unknown keys ---------------------------------------------------------------------------


def test_unknown_profile_field_key_answers_404_json(signed_in: TestClient, db: Session) -> None:
    before = snapshot(db)
    response = signed_in.put(
        "/api/v1/profile/fields/favourite_colour",
        json={"value": "blue"},
        headers=api_headers(signed_in),
    )
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": "There is no profile field called 'favourite_colour'.",
    }
    assert snapshot(db) == before


def test_clearing_an_unknown_profile_field_answers_404_json(
    signed_in: TestClient, db: Session
) -> None:
    before = snapshot(db)
    response = signed_in.delete(
        "/api/v1/profile/fields/favourite_colour", headers=api_headers(signed_in)
    )
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert snapshot(db) == before


def test_clearing_an_unknown_custom_field_answers_404_json(signed_in: TestClient) -> None:
    response = signed_in.delete(
        "/api/v1/profile/fields/custom.000000000000", headers=api_headers(signed_in)
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "There is no such custom field in your profile."


def test_unknown_field_message_does_not_echo_a_huge_key(signed_in: TestClient) -> None:
    key = "k" * 2000
    response = signed_in.put(
        f"/api/v1/profile/fields/{key}", json={"value": "x"}, headers=api_headers(signed_in)
    )
    assert response.status_code == 404
    assert len(response.json()["detail"]) < 120


def test_unknown_profile_field_page_answers_404_page(signed_in: TestClient) -> None:
    response = signed_in.get("/profile/fields/favourite_colour")
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in response.text
    assert "There is no profile field called" in response.text


def test_saving_an_unknown_profile_field_form_answers_404_page(
    signed_in: TestClient, db: Session
) -> None:
    token = page_csrf(signed_in, "/profile")
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/favourite_colour", data={"value": "blue", "csrf_token": token}
    )
    assert response.status_code == 404
    assert snapshot(db) == before


def test_unknown_custom_field_page_answers_404_page(signed_in: TestClient) -> None:
    response = signed_in.get("/profile/custom/custom.000000000000")
    assert response.status_code == 404
    assert "There is no such custom field in your profile." in response.text


# -- invalid values through the API ---------------------------------------------------------

TOMORROW = (date.today() + timedelta(days=1)).isoformat()
ADDRESS = {"street": "Keizersgracht 1", "postal_code": "1015 CJ", "locality": "Amsterdam"}

INVALID: dict[str, tuple[str, Any, str, str]] = {
    # name: (key, value, field named in the answer, words of the message)
    "phone_letters": ("phone", "call me maybe", "phone", "international form"),
    "phone_invalid_number": ("phone", "+31 12", "phone", "not valid for its country code"),
    "future_birthdate": ("birthdate", TOMORROW, "birthdate", "cannot be in the future"),
    "birthdate_format": ("birthdate", "31/12/1990", "birthdate", "YYYY-MM-DD"),
    "too_long_text": ("given_name", "A" * 101, "given_name", "at most 100 characters"),
    "blank_text": ("family_name", "   ", "family_name", "cannot be empty"),
    "control_characters": ("given_name", "Ada\x00", "given_name", "not allowed"),
    "shoe_size_out_of_range": (
        "shoe_size",
        {"system": "EU", "size": "60"},
        "shoe_size",
        "EU shoe sizes run from 16 to 52",
    ),
    "shoe_size_not_half": (
        "shoe_size",
        {"system": "EU", "size": "42.3"},
        "shoe_size",
        "in half sizes",
    ),
    "shoe_size_system": (
        "shoe_size",
        {"system": "JP", "size": "26"},
        "shoe_size",
        "Choose EU, UK or US",
    ),
    "address_missing_country": ("address", ADDRESS, "address.country", "Country is required"),
    "address_unknown_country": (
        "address",
        {**ADDRESS, "country": "QQ"},
        "address.country",
        "Choose a country from the list",
    ),
    "address_unknown_part": (
        "address",
        {**ADDRESS, "country": "NL", "floor": "2"},
        "address",
        "Unknown address parts: floor",
    ),
    "language": ("language", "klingon", "language", "Choose one of the listed options"),
    "clothing_size": ("clothing_size", "XXXXXL", "clothing_size", "Choose one of the listed"),
    "dietary": ("dietary", ["carnivore"], "dietary", "Choose dietary preferences"),
    "text_as_list": ("given_name", ["Ada"], "given_name", "must be text"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_value_answers_400_naming_the_field_and_changes_nothing(
    signed_in: TestClient, db: Session, case: str
) -> None:
    key, value, field, words = INVALID[case]
    profile = signed_in.get("/api/v1/profile").json()
    before = snapshot(db)
    response = signed_in.put(
        f"/api/v1/profile/fields/{key}", json={"value": value}, headers=api_headers(signed_in)
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    assert body["field"] == field
    assert words in body["detail"]
    assert snapshot(db) == before
    assert signed_in.get("/api/v1/profile").json() == profile


def test_invalid_value_keeps_the_previous_value(signed_in: TestClient) -> None:
    headers = api_headers(signed_in)
    response = signed_in.put(
        "/api/v1/profile/fields/phone", json={"value": "nonsense"}, headers=headers
    )
    assert response.status_code == 400
    assert signed_in.get("/api/v1/profile").json()["fields"]["phone"] == "+31201234567"


def test_the_sign_in_address_cannot_be_set_through_the_profile_api(
    signed_in: TestClient, second_client: TestClient, db: Session
) -> None:
    for address in (sign_up(second_client), unique_email()):
        before = snapshot(db)
        response = signed_in.put(
            "/api/v1/profile/fields/email", json={"value": address}, headers=api_headers(signed_in)
        )
        assert response.status_code == 400
        assert "change it on your Account page" in response.json()["detail"]
        assert snapshot(db) == before


def test_custom_field_label_over_the_limit_names_the_label(
    signed_in: TestClient, count: Count
) -> None:
    response = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "L" * 61, "value": "v"},
        headers=api_headers(signed_in),
    )
    assert response.status_code == 400
    assert response.json()["field"] == "label"
    assert "at most 60 characters" in response.json()["detail"]
    assert count(ProfileField) == 2


def test_custom_field_value_over_the_limit_names_the_value(
    signed_in: TestClient, count: Count
) -> None:
    response = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "Note", "value": "v" * 501},
        headers=api_headers(signed_in),
    )
    assert response.status_code == 400
    assert response.json()["field"] == "value"
    assert count(ProfileField) == 2


def test_custom_field_far_over_the_limit_answers_422(signed_in: TestClient, count: Count) -> None:
    response = signed_in.post(
        "/api/v1/profile/custom",
        json={"label": "L" * 201, "value": "v"},
        headers=api_headers(signed_in),
    )
    assert response.status_code == 422
    assert "label" in response.json()["detail"]
    assert count(ProfileField) == 2


# -- other malformed requests ---------------------------------------------------------------


def test_file_upload_to_a_form_is_refused(signed_in: TestClient, db: Session) -> None:
    token = page_csrf(signed_in, "/profile")
    before = snapshot(db)
    response = signed_in.post(
        "/profile/fields/given_name",
        data={"value": "Ada", "csrf_token": token},
        files={"upload": ("a.txt", b"hello")},
    )
    assert response.status_code == 400
    assert snapshot(db) == before


def test_wrong_method_answers_405_json_on_the_api(signed_in: TestClient) -> None:
    response = signed_in.post("/api/v1/profile", json={})
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
