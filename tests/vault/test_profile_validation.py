"""The profile catalogue's parsers: what each field accepts, how it is normalised, and the
message (and field name) for what it refuses. No database needed."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from vault.errors import InvalidInput
from vault.profile.catalogue import (
    FIELDS,
    MAX_CUSTOM_VALUE,
    MAX_TEXT,
    parse_custom_label,
    parse_custom_value,
)

TODAY = date.today()
ADDRESS = {
    "street": "Keizersgracht 1",
    "postal_code": "1015 CJ",
    "locality": "Amsterdam",
    "country": "NL",
}


def parse(key: str, value: Any) -> Any:
    return FIELDS[key].parse(value)


def refusal(key: str, value: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse(key, value)
    return caught.value


# -- accepted and normalised ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("given_name", "  Ada \t Lovelace ", "Ada Lovelace"),
        ("given_name", "A\u0301da", "\u00c1da"),  # NFC
        ("given_name", "A" * MAX_TEXT, "A" * MAX_TEXT),
        ("email", " Ada@Example.ORG ", "Ada@example.org"),
        ("phone", "+31 20 123 4567", "+31201234567"),
        ("phone", "+1 (650) 253-0000", "+16502530000"),
        ("birthdate", " 1990-02-28 ", "1990-02-28"),
        ("birthdate", TODAY.isoformat(), TODAY.isoformat()),
        (
            "birthdate",
            date(TODAY.year - 130, 1, 1).isoformat(),
            date(TODAY.year - 130, 1, 1).isoformat(),
        ),
        ("language", "nl", "nl"),
        ("clothing_size", "XL", "XL"),
        ("dietary", "vegan", ["vegan"]),
        ("dietary", ["nut-allergy", "vegan", "vegan"], ["vegan", "nut-allergy"]),
        ("shoe_size", {"system": "EU", "size": "42,5"}, {"system": "EU", "size": "42.5"}),
        ("shoe_size", {"system": "EU", "size": "42.0"}, {"system": "EU", "size": "42"}),
        ("shoe_size", {"system": "EU", "size": "40"}, {"system": "EU", "size": "40"}),
        ("shoe_size", {"system": "UK", "size": "10"}, {"system": "UK", "size": "10"}),
        ("shoe_size", {"system": "US", "size": "17"}, {"system": "US", "size": "17"}),
        ("address", {**ADDRESS, "country": "nl", "extra": " ", "region": ""}, ADDRESS),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_valid_value_is_stored_normalised(key: str, value: Any, stored: Any) -> None:
    assert parse(key, value) == stored


def test_shoe_size_displays_as_a_plain_number() -> None:
    spec = FIELDS["shoe_size"]
    assert spec.display(spec.parse({"system": "EU", "size": "40"})) == "40 (EU)"


def test_phone_displays_in_international_form() -> None:
    assert FIELDS["phone"].display("+31201234567") == "+31 20 123 4567"


def test_address_displays_with_the_country_name() -> None:
    assert FIELDS["address"].display(ADDRESS).splitlines() == [
        "Keizersgracht 1",
        "1015 CJ Amsterdam",
        "Netherlands",
    ]


def test_custom_value_keeps_line_breaks_sent_as_crlf() -> None:
    assert parse_custom_value("first line\r\nsecond line") == "first line\nsecond line"


def test_custom_value_may_be_as_long_as_the_limit() -> None:
    assert len(parse_custom_value("v" * MAX_CUSTOM_VALUE)) == MAX_CUSTOM_VALUE


# -- refused, with the field named ----------------------------------------------------------

REFUSED: dict[str, tuple[str, Any, str, str]] = {
    # name: (key, value, field named, words of the message)
    "text_too_long": (
        "given_name",
        "A" * (MAX_TEXT + 1),
        "given_name",
        "Given name can be at most 100 characters.",
    ),
    "text_empty": ("family_name", " \t ", "family_name", "cannot be empty"),
    "text_not_text": ("given_name", 5, "given_name", "Given name must be text."),
    "text_control_character": ("given_name", "Ada\x07", "given_name", "not allowed"),
    "email_syntax": ("email", "ada.example.org", "email", "This is not a valid email address"),
    "email_empty": ("email", "", "email", "Enter an email address."),
    "email_too_long": ("email", "a" * 250 + "@example.org", "email", "at most 254"),
    "phone_without_country_code": ("phone", "020 123 4567", "phone", "starting with +"),
    "phone_invalid_for_country": ("phone", "+31 12", "phone", "not valid for its country"),
    "phone_too_long": ("phone", "+31 " + "1" * 40, "phone", "at most 32 characters"),
    "birthdate_future": (
        "birthdate",
        (TODAY + timedelta(days=1)).isoformat(),
        "birthdate",
        "cannot be in the future",
    ),
    "birthdate_too_old": (
        "birthdate",
        date(TODAY.year - 131, 12, 31).isoformat(),
        "birthdate",
        "more than 130 years ago",
    ),
    "birthdate_format": ("birthdate", "28/02/1990", "birthdate", "YYYY-MM-DD"),
    "birthdate_impossible": ("birthdate", "1990-02-30", "birthdate", "YYYY-MM-DD"),
    "language_unknown": ("language", "tlh", "language", "Choose one of the listed options"),
    "clothing_size_unknown": ("clothing_size", "XXXXXL", "clothing_size", "listed options"),
    "dietary_empty": ("dietary", [], "dietary", "Tick at least one"),
    "dietary_unknown": ("dietary", ["vegan", "carnivore"], "dietary", "from the list"),
    "shoe_too_big": (
        "shoe_size",
        {"system": "EU", "size": "53"},
        "shoe_size",
        "EU shoe sizes run from 16 to 52 in half sizes.",
    ),
    "shoe_too_small": (
        "shoe_size",
        {"system": "US", "size": "0.5"},
        "shoe_size",
        "US shoe sizes run from 1 to 17",
    ),
    "shoe_quarter_size": (
        "shoe_size",
        {"system": "UK", "size": "8.25"},
        "shoe_size",
        "in half sizes",
    ),
    "shoe_not_a_number": ("shoe_size", {"system": "EU", "size": "big"}, "shoe_size", "as a number"),
    "shoe_not_finite": ("shoe_size", {"system": "EU", "size": "NaN"}, "shoe_size", "as a number"),
    "shoe_scientific": ("shoe_size", {"system": "EU", "size": "1e1"}, "shoe_size", "as a number"),
    "name_bidi_override": ("given_name", "Ada\u202eecalol", "given_name", "not allowed"),
    "shoe_unknown_system": (
        "shoe_size",
        {"system": "JP", "size": "26"},
        "shoe_size",
        "Choose EU, UK or US sizing.",
    ),
    "shoe_extra_part": (
        "shoe_size",
        {"system": "EU", "size": "42", "width": "E"},
        "shoe_size",
        "has a system",
    ),
    "address_not_an_object": (
        "address",
        "Keizersgracht 1, Amsterdam",
        "address",
        "An address has street",
    ),
    "address_missing_country": (
        "address",
        {k: v for k, v in ADDRESS.items() if k != "country"},
        "address.country",
        "Country is required for an address.",
    ),
    "address_blank_locality": (
        "address",
        {**ADDRESS, "locality": "  "},
        "address.locality",
        "City or town is required",
    ),
    "address_unknown_country": (
        "address",
        {**ADDRESS, "country": "XX"},
        "address.country",
        "Choose a country from the list.",
    ),
    "address_long_postal_code": (
        "address",
        {**ADDRESS, "postal_code": "1" * 21},
        "address.postal_code",
        "at most 20 characters",
    ),
    "address_unknown_part": (
        "address",
        {**ADDRESS, "floor": "2"},
        "address",
        "Unknown address parts: floor.",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_invalid_value_is_refused_naming_the_field(case: str) -> None:
    key, value, field, words = REFUSED[case]
    error = refusal(key, value)
    assert error.field == field
    assert words in error.message
    assert error.status_code == 400


def test_custom_label_over_the_limit_names_the_label() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_custom_label("L" * 61)
    assert caught.value.field == "label"


def test_custom_label_is_a_single_line() -> None:
    assert parse_custom_label("Loyalty\r\ncard") == "Loyalty card"


def test_custom_value_over_the_limit_names_the_value() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_custom_value("v" * (MAX_CUSTOM_VALUE + 1))
    assert caught.value.field == "value"
    assert "at most 500 characters" in caught.value.message


def test_email_is_not_deletable_and_every_other_field_is() -> None:
    assert [key for key, spec in FIELDS.items() if not spec.deletable] == ["email"]


def test_every_field_names_its_consent_scope() -> None:
    assert FIELDS["address"].scope == "profile:address"
    assert len({spec.scope for spec in FIELDS.values()}) == len(FIELDS)
