"""Amounts of money: ISO 4217 currencies, stored as integers in the currency's minor unit.

``"899.00" EUR`` is stored as ``89900``; ``"1500" JPY`` as ``1500``. Amounts travel as decimal
strings (never binary floats) and may carry at most the currency's number of decimals.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import cache

import pycountry

from vault.errors import InvalidInput

MAX_MAJOR_UNITS = Decimal(10_000_000)
"""No budget or price above ten million units of a currency: beyond that it is a mistake..."""
MAX_MAJOR_UNITS_SMALL = Decimal(10_000_000_000)
"""...except for currencies whose unit is worth less than about a cent (ten billion there)."""
# Currencies of which a euro buys roughly a hundred units or more.
_SMALL_UNITS = frozenset(
    {"AMD", "BIF", "CDF", "CLP", "COP", "DJF", "GNF", "HUF", "IDR", "IQD", "IRR", "ISK", "JPY"}
    | {"KHR", "KMF", "KPW", "KRW", "KZT", "LAK", "LBP", "MGA", "MMK", "MNT", "MWK", "NGN"}
    | {"PYG", "RWF", "SLL", "SOS", "SYP", "TZS", "UGX", "UZS", "VND", "XAF", "XOF", "YER"}
)

# ISO 4217 minor units that are not 2 (the list's "E" column).
_EXPONENTS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW"),
        0,
    ),
    **dict.fromkeys(("PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
# Funds, precious metals, testing and special codes: not money a person pays a shop in.
_NOT_TENDER = frozenset(
    {"BOV", "CHE", "CHW", "CLF", "COU", "MXV", "USN", "UYI", "UYW", "XAG", "XAU"}
    | {"XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)
_AMOUNT = re.compile(r"^\d{1,14}(\.\d{1,4})?$")
COMMON = ("EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "JPY", "CAD", "AUD")
"""Shown first in the portal's currency list."""


@cache
def currencies() -> dict[str, str]:
    """ISO 4217 code -> name, for every currency a person can pay in."""
    found = {
        c.alpha_3: c.name
        for c in pycountry.currencies
        if c.alpha_3 not in _NOT_TENDER and len(c.alpha_3) == 3
    }
    return dict(sorted(found.items()))


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def parse_currency(raw: object, *, field: str = "currency") -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("Choose a currency (an ISO 4217 code such as EUR).", field=field)
    code = raw.strip().upper()
    if code not in currencies():
        raise InvalidInput(
            f"{raw[:8]!r} is not an ISO 4217 currency code (for example EUR, USD or GBP).",
            field=field,
        )
    return code


def parse_amount(raw: object, currency: str, *, field: str, label: str) -> int:
    """A positive amount in ``currency`` as minor units; a clear 400 for anything else."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidInput(f"Enter the {label}, e.g. 899.00.", field=field)
    if isinstance(raw, bool):
        raise InvalidInput(f"Enter the {label} as a number, e.g. 899.00.", field=field)
    if isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        text = repr(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")  # a decimal comma, as many people write it
    else:
        raise InvalidInput(f"Enter the {label} as a number, e.g. 899.00.", field=field)
    if text.startswith("-"):
        raise InvalidInput(f"The {label} cannot be negative.", field=field)
    if not _AMOUNT.match(text):
        raise InvalidInput(
            f"Enter the {label} as a plain number such as 899 or 899.50 "
            "(no currency sign, no thousands separators).",
            field=field,
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"Enter the {label} as a number, e.g. 899.00.", field=field) from None
    places = exponent(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-places)):
        raise InvalidInput(f"{currency} amounts have at most {places} decimal places.", field=field)
    if amount <= 0:
        raise InvalidInput(f"The {label} must be more than zero.", field=field)
    ceiling = MAX_MAJOR_UNITS_SMALL if currency in _SMALL_UNITS else MAX_MAJOR_UNITS
    if amount > ceiling:
        raise InvalidInput(f"The {label} can be at most {ceiling:,} {currency}.", field=field)
    return int(amount.scaleb(places))


def format_amount(minor: int, currency: str) -> str:
    """Minor units as the decimal string the API shows: ``89900, EUR -> "899.00"``."""
    places = exponent(currency)
    if places == 0:
        return str(minor)
    whole, fraction = divmod(abs(minor), 10**places)
    return f"{'-' if minor < 0 else ''}{whole}.{fraction:0{places}d}"


def display(minor: int, currency: str) -> str:
    """For people: ``EUR 899.00``, with thousands separators."""
    places = exponent(currency)
    value = Decimal(minor).scaleb(-places)
    return f"{currency} {value:,.{places}f}"
