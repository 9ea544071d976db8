"""The catalogue of profile fields.

Each standard field has a stable key (used later in consent scopes as ``profile:<key>``), a
kind, and a parser that validates and normalises input into the JSON value that is stored
encrypted. Custom fields (label + value) have keys ``custom.<id>``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import phonenumbers
import pycountry
from email_validator import EmailNotValidError
from email_validator import validate_email as _validate_email

from vault.errors import InvalidInput

JSONValue = Any

MAX_TEXT = 100
MAX_CUSTOM_LABEL = 60
MAX_CUSTOM_VALUE = 500
MAX_CUSTOM_FIELDS = 50
CUSTOM_PREFIX = "custom."

CLOTHING_SIZES = ("XXS", "XS", "S", "M", "L", "XL", "XXL", "3XL", "4XL")
SHOE_SYSTEMS = {
    "EU": (Decimal(16), Decimal(52)),
    "UK": (Decimal(0), Decimal(16)),
    "US": (Decimal(1), Decimal(17)),
}
DIETARY = {
    "vegetarian": "Vegetarian",
    "vegan": "Vegan",
    "pescatarian": "Pescatarian",
    "halal": "Halal",
    "kosher": "Kosher",
    "gluten-free": "Gluten-free",
    "lactose-free": "Lactose-free",
    "nut-allergy": "Nut allergy",
    "shellfish-allergy": "Shellfish allergy",
    "no-pork": "No pork",
    "no-alcohol": "No alcohol",
}
LANGUAGES = (
    "ar",
    "bg",
    "ca",
    "cs",
    "cy",
    "da",
    "de",
    "el",
    "en",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "ga",
    "gl",
    "he",
    "hi",
    "hr",
    "hu",
    "id",
    "is",
    "it",
    "ja",
    "ko",
    "lt",
    "lv",
    "mt",
    "nb",
    "nl",
    "nn",
    "pl",
    "pt",
    "ro",
    "ru",
    "sk",
    "sl",
    "sq",
    "sr",
    "sv",
    "sw",
    "th",
    "tr",
    "uk",
    "ur",
    "vi",
    "zh",
)
_SHOE_NUMBER = re.compile(r"\d{1,2}(\.\d{1,2})?")
# Bidirectional overrides/isolates can make stored text display as something else.
_BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def invalid(message: str, key: str) -> InvalidInput:
    return InvalidInput(message, field=key)


@cache
def countries() -> dict[str, str]:
    return {c.alpha_2: c.name for c in sorted(pycountry.countries, key=lambda c: c.name)}


@cache
def languages() -> dict[str, str]:
    found = {tag: pycountry.languages.get(alpha_2=tag) for tag in LANGUAGES}
    names = {tag: lang.name for tag, lang in found.items() if lang is not None}
    return dict(sorted(names.items(), key=lambda item: item[1]))


def clean_text(value: Any, key: str, label: str, *, limit: int, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise invalid(f"{label} must be text.", key)
    # Browsers send a textarea's line breaks as CRLF.
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").strip()
    if not multiline:
        text = " ".join(text.split())
    if not text:
        raise invalid(f"{label} cannot be empty; clear the field to remove it.", key)
    if len(text) > limit:
        raise invalid(f"{label} can be at most {limit} characters.", key)
    if _CONTROL.search(text) or _BIDI_CONTROL.search(text) or (not multiline and "\n" in text):
        raise invalid(f"{label} contains characters that are not allowed.", key)
    return text


def validate_email(value: Any, key: str = "email") -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("Enter an email address.", key)
    if len(value) > 254:
        raise invalid("An email address can be at most 254 characters.", key)
    try:
        result = _validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise invalid(f"This is not a valid email address: {exc}", key) from exc
    return str(result.normalized)


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    kind: str
    hint: str = ""
    parse: Callable[[Any], JSONValue] = field(repr=False, default=lambda v: v)
    display: Callable[[JSONValue], str] = field(repr=False, default=str)
    from_form: Callable[[Mapping[str, str]], Any] = field(
        repr=False, default=lambda f: f.get("value", "")
    )
    deletable: bool = True

    @property
    def scope(self) -> str:
        return f"profile:{self.key}"


def _text_spec(key: str, label: str, hint: str = "") -> FieldSpec:
    return FieldSpec(
        key, label, "text", hint, parse=lambda v: clean_text(v, key, label, limit=MAX_TEXT)
    )


def _parse_phone(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("Enter a phone number.", "phone")
    if len(value) > 32:
        raise invalid("A phone number can be at most 32 characters.", "phone")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise invalid(
            "Enter the number in international form, starting with + and the country code "
            "(for example +31 20 123 4567).",
            "phone",
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise invalid("This phone number is not valid for its country code.", "phone")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _display_phone(value: str) -> str:
    number = phonenumbers.parse(value, None)
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def _parse_birthdate(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("Enter a date of birth.", "birthdate")
    try:
        born = date.fromisoformat(value.strip())
    except ValueError as exc:
        raise invalid("Enter the date as YYYY-MM-DD.", "birthdate") from exc
    today = date.today()
    if born > today:
        raise invalid("A date of birth cannot be in the future.", "birthdate")
    if born < date(today.year - 130, 1, 1):
        raise invalid("A date of birth cannot be more than 130 years ago.", "birthdate")
    return born.isoformat()


def _choice(key: str, label: str, options: Mapping[str, str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise invalid(f"Choose one of the listed options for {label.lower()}.", key)
        return value

    return parse


def _parse_dietary(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise invalid("Tick at least one dietary preference, or clear the field.", "dietary")
    unknown = [v for v in value if not isinstance(v, str) or v not in DIETARY]
    if unknown:
        raise invalid("Choose dietary preferences from the list.", "dietary")
    return [k for k in DIETARY if k in value]


_ADDRESS_PARTS = {
    "street": ("Street and number", True, 200),
    "extra": ("Address line 2", False, 200),
    "postal_code": ("Postal code", True, 20),
    "locality": ("City or town", True, 100),
    "region": ("State, province or region", False, 100),
    "country": ("Country", True, 2),
}


def _parse_address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid("An address has street, postal_code, locality and country.", "address")
    unknown = set(value) - set(_ADDRESS_PARTS)
    if unknown:
        raise invalid(f"Unknown address parts: {', '.join(sorted(unknown))}.", "address")
    clean: dict[str, str] = {}
    for part, (label, required, limit) in _ADDRESS_PARTS.items():
        raw = value.get(part)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if required:
                raise invalid(f"{label} is required for an address.", f"address.{part}")
            continue
        clean[part] = clean_text(raw, f"address.{part}", label, limit=limit)
    country = clean["country"].upper()
    if country not in countries():
        raise invalid("Choose a country from the list.", "address.country")
    clean["country"] = country
    return clean


def _display_address(value: dict[str, str]) -> str:
    lines = [
        value["street"],
        value.get("extra", ""),
        f"{value['postal_code']} {value['locality']}",
        value.get("region", ""),
        countries().get(value["country"], value["country"]),
    ]
    return "\n".join(line for line in lines if line)


def _parse_shoe(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) - {"system", "size"}:
        raise invalid("A shoe size has a system (EU, UK or US) and a size.", "shoe_size")
    system = value.get("system")
    if system not in SHOE_SYSTEMS:
        raise invalid("Choose EU, UK or US sizing.", "shoe_size")
    raw = str(value.get("size", "")).strip().replace(",", ".")
    if not _SHOE_NUMBER.fullmatch(raw):
        raise invalid("Enter the shoe size as a number, for example 42 or 8.5.", "shoe_size")
    try:
        size = Decimal(raw)
    except (InvalidOperation, ValueError) as exc:
        raise invalid(
            "Enter the shoe size as a number, for example 42 or 8.5.", "shoe_size"
        ) from exc
    low, high = SHOE_SYSTEMS[system]
    if not size.is_finite() or size % Decimal("0.5") != 0 or not low <= size <= high:
        raise invalid(f"{system} shoe sizes run from {low} to {high} in half sizes.", "shoe_size")
    return {"system": system, "size": format(size.normalize(), "f")}  # 40, not 4E+1


STANDARD_FIELDS: tuple[FieldSpec, ...] = (
    _text_spec("given_name", "Given name"),
    _text_spec("family_name", "Family name"),
    FieldSpec(
        "email",
        "Email address",
        "email",
        "Also the address you sign in with.",
        parse=validate_email,
        deletable=False,
    ),
    FieldSpec(
        "phone",
        "Phone number",
        "phone",
        "International form, e.g. +31 20 123 4567.",
        parse=_parse_phone,
        display=_display_phone,
    ),
    FieldSpec(
        "address",
        "Postal address",
        "address",
        parse=_parse_address,
        display=_display_address,
        from_form=lambda f: {p: f.get(p, "") for p in _ADDRESS_PARTS},
    ),
    FieldSpec("birthdate", "Date of birth", "date", parse=_parse_birthdate),
    FieldSpec(
        "language",
        "Preferred language",
        "choice",
        parse=lambda v: _choice("language", "Preferred language", languages())(v),
        display=lambda v: str(languages().get(v, v)),
    ),
    FieldSpec(
        "clothing_size",
        "Clothing size",
        "choice",
        parse=_choice("clothing_size", "Clothing size", {s: s for s in CLOTHING_SIZES}),
    ),
    FieldSpec(
        "shoe_size",
        "Shoe size",
        "shoe",
        parse=_parse_shoe,
        display=lambda v: f"{v['size']} ({v['system']})",
        from_form=lambda f: {"system": f.get("system", ""), "size": f.get("size", "")},
    ),
    FieldSpec(
        "dietary",
        "Dietary preferences",
        "multichoice",
        parse=_parse_dietary,
        display=lambda v: ", ".join(DIETARY[k] for k in v),
        from_form=lambda f: f.get("values", []),
    ),
)
FIELDS: dict[str, FieldSpec] = {spec.key: spec for spec in STANDARD_FIELDS}


def choices_for(spec: FieldSpec) -> dict[str, str]:
    if spec.key == "language":
        return languages()
    if spec.key == "clothing_size":
        return {s: s for s in CLOTHING_SIZES}
    if spec.key == "dietary":
        return DIETARY
    return {}


def parse_custom_label(value: Any) -> str:
    return clean_text(value, "label", "Label", limit=MAX_CUSTOM_LABEL)


def parse_custom_value(value: Any) -> str:
    return clean_text(value, "value", "Value", limit=MAX_CUSTOM_VALUE, multiline=True)
