"""What a valid intent and a valid offer are: parsing raw input (form or JSON) into clean values.

Every problem is collected, so a form shows each message next to its field; nothing is written
unless everything is valid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from intents import money, taxonomy
from intents.errors import CurrencyMismatch, InvalidIntent
from vault.errors import InvalidInput
from vault.profile.catalogue import clean_text, countries

MAX_TITLE = 120
MAX_DESCRIPTION = 2000
MAX_CITY = 100
MAX_QUANTITY = 10_000
MAX_MESSAGE = 2000
DEFAULT_EXPIRY_DAYS = 30
MAX_EXPIRY_DAYS = 365
MAX_NEEDED_BY_DAYS = 5 * 365
MAX_OFFER_DAYS = 180
MIN_OPEN = timedelta(minutes=30)
"""An intent that closes at a time closes at least this far ahead."""
QUICK_CLOSES = {"in_2h": "In 2 hours", "today_18": "Today at 18:00"}
"""The portal's quick choices for the closing time, beside a date (and an optional time)."""
MAX_TIME_ZONE = 64
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CleanIntent:
    category: taxonomy.Category
    title: str
    description: str
    quantity: int
    budget_minor: int
    currency: str
    country: str | None
    city: str | None
    online: bool
    needed_by: date | None
    expires_at: datetime


def end_of_day(day: date) -> datetime:
    """An intent that closes "on" a day stays open through that whole day (UTC)."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def _collect(errors: dict[str, str], name: str, parse: Callable[[], T]) -> T | None:
    try:
        return parse()
    except InvalidInput as exc:
        errors[exc.field or name] = exc.message
        return None


def parse_date(raw: object, *, field: str, label: str) -> date | None:
    """``YYYY-MM-DD`` or nothing; anything else is a clear 400."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if not isinstance(raw, str) or not _DATE.match(raw.strip()):
        raise InvalidInput(f"Enter the {label} as a date, YYYY-MM-DD.", field=field)
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidInput(f"The {label} is not a real date.", field=field) from None


def parse_datetime(raw: object, *, field: str, label: str) -> datetime:
    """An ISO 8601 moment with a time zone (``2027-03-01T12:00:00Z``), or a date (end of day)."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str) and raw.strip():
        text = raw.strip()
        if len(text) > 40:
            raise InvalidInput(f"The {label} is too long for a date and time.", field=field)
        if _DATE.match(text):
            day = parse_date(text, field=field, label=label)
            assert day is not None
            return end_of_day(day)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"Enter the {label} as an ISO 8601 date and time, e.g. 2027-03-01T12:00:00Z.",
                field=field,
            ) from None
    else:
        raise InvalidInput(
            f"Enter the {label} as an ISO 8601 date and time, e.g. 2027-03-01T12:00:00Z.",
            field=field,
        )
    if moment.tzinfo is None:
        raise InvalidInput(
            f"The {label} needs a time zone (for example a trailing Z for UTC).", field=field
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"The {label} is out of range.", field=field) from None


def _quantity(raw: object) -> int:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return 1
    if isinstance(raw, bool):
        raise InvalidInput("Enter the quantity as a whole number.", field="quantity")
    try:
        value = int(raw.strip()) if isinstance(raw, str) else int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidInput("Enter the quantity as a whole number.", field="quantity") from None
    if isinstance(raw, float) and raw != value:
        raise InvalidInput("Enter the quantity as a whole number.", field="quantity")
    if not 1 <= value <= MAX_QUANTITY:
        raise InvalidInput(f"The quantity is between 1 and {MAX_QUANTITY:,}.", field="quantity")
    return value


def _country(raw: object) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str) or raw.strip().upper() not in countries():
        raise InvalidInput(
            "Choose a country from the list (an ISO 3166 code such as NL).", field="country"
        )
    return raw.strip().upper()


def parse_city(raw: object) -> str | None:
    """A city as intents store it (one line, NFC, no control characters), or None."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return clean_text(raw, "city", "The city", limit=MAX_CITY)


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if raw is None:
        return False
    if isinstance(raw, str) and raw.strip().lower() in ("", "0", "false", "no", "off"):
        return False
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    raise InvalidInput("Say yes or no (true or false).", field="online")


def parse_time_zone(raw: object) -> ZoneInfo:
    """An IANA time zone name (``Europe/Amsterdam``); empty is UTC."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return ZoneInfo("UTC")
    problem = InvalidInput(
        "Choose a time zone by its name, such as Europe/Amsterdam (or UTC).", field="time_zone"
    )
    if not isinstance(raw, str) or len(raw.strip()) > MAX_TIME_ZONE:
        raise problem
    try:
        return ZoneInfo(raw.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise problem from None


def _closing(
    raw: Mapping[str, Any], errors: dict[str, str], *, now: datetime, today: date
) -> datetime | None:
    """When the intent closes: a quick choice (``closes``), a date with an optional time of day
    in the person's time zone (``expires_on``, ``closes_time``, ``time_zone``), or a date alone
    (the end of that day, UTC). A closing time is at least 30 minutes ahead."""
    zone = _collect(errors, "time_zone", lambda: parse_time_zone(raw.get("time_zone")))
    if zone is None:
        return None
    local_today = now.astimezone(zone).date()
    quick = raw.get("closes") or ""
    moment: datetime | None = None
    if quick:
        if quick == "in_2h":
            moment = now + timedelta(hours=2)
        elif quick == "today_18":
            moment = datetime.combine(local_today, time(18, 0), tzinfo=zone)
            if moment < now + MIN_OPEN:
                errors["closes"] = (
                    "Today at 18:00 is less than 30 minutes away; choose a date and time."
                )
                return None
        else:
            errors["closes"] = "Choose one of the quick closing times, or a date."
            return None
    else:
        expires_on = _collect(
            errors,
            "expires_on",
            lambda: parse_date(raw.get("expires_on"), field="expires_on", label="closing date"),
        )
        if "expires_on" in errors:
            return None
        time_raw = raw.get("closes_time") or ""
        if time_raw:
            if not isinstance(time_raw, str) or not _TIME.match(time_raw.strip()):
                errors["closes_time"] = "Enter the closing time as HH:MM, e.g. 18:30."
                return None
            if expires_on is None:
                expires_on = local_today
            hour, minute = (int(part) for part in time_raw.strip().split(":"))
            moment = datetime.combine(expires_on, time(hour, minute), tzinfo=zone)
        else:
            if expires_on is None:
                expires_on = today + timedelta(days=DEFAULT_EXPIRY_DAYS)
            if expires_on < today:
                errors["expires_on"] = "The closing date is in the past."
                return None
            if expires_on > today + timedelta(days=MAX_EXPIRY_DAYS):
                errors["expires_on"] = f"An intent stays open at most {MAX_EXPIRY_DAYS} days."
                return None
            return end_of_day(expires_on)
    if moment > now + timedelta(days=MAX_EXPIRY_DAYS + 1):
        errors["expires_on"] = f"An intent stays open at most {MAX_EXPIRY_DAYS} days."
        return None
    if (quick or raw.get("closes_time")) and moment < now + MIN_OPEN:
        errors["closes_time"] = "The closing time must be at least 30 minutes from now."
        return None
    return moment.astimezone(UTC)


def parse_intent(
    raw: Mapping[str, Any], *, today: date | None = None, now: datetime | None = None
) -> CleanIntent:
    """Validate an intent as the individual submitted it (a form or JSON body)."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    errors: dict[str, str] = {}
    category = _collect(errors, "category", lambda: taxonomy.get(raw.get("category")))
    title_raw = raw.get("title")
    title = (
        _collect(
            errors,
            "title",
            lambda: clean_text(title_raw, "title", "The title", limit=MAX_TITLE),
        )
        if isinstance(title_raw, str) and title_raw.strip()
        else None
    )
    if title is None and "title" not in errors:
        errors["title"] = 'Say in a short title what you want, e.g. "Road bike, size 56".'
    description_raw = raw.get("description") or ""
    description = (
        _collect(
            errors,
            "description",
            lambda: clean_text(
                description_raw,
                "description",
                "The description",
                limit=MAX_DESCRIPTION,
                multiline=True,
            ),
        )
        if isinstance(description_raw, str) and description_raw.strip()
        else ""
    )
    if not isinstance(description_raw, str):
        errors["description"] = "The description must be text."
    quantity = _collect(errors, "quantity", lambda: _quantity(raw.get("quantity")))
    currency = _collect(errors, "currency", lambda: money.parse_currency(raw.get("currency")))
    budget = None
    if currency is not None:
        budget = _collect(
            errors,
            "budget",
            lambda: money.parse_amount(
                raw.get("budget"), currency, field="budget", label="maximum budget"
            ),
        )
    country = _collect(errors, "country", lambda: _country(raw.get("country")))
    city = _collect(errors, "city", lambda: parse_city(raw.get("city")))
    online = _collect(errors, "online", lambda: _flag(raw.get("online")))
    if city and not country and "country" not in errors:
        errors["country"] = "Choose the country of the city."
    if not country and not city and online is False and "country" not in errors:
        errors["country"] = "Choose a country (and optionally a city), or tick online / delivered."
    needed_by = _collect(
        errors,
        "needed_by",
        lambda: parse_date(raw.get("needed_by"), field="needed_by", label="date you need it by"),
    )
    if needed_by is not None:
        if needed_by < today:
            errors["needed_by"] = "The date you need it by is in the past."
        elif needed_by > today + timedelta(days=MAX_NEEDED_BY_DAYS):
            errors["needed_by"] = "The date you need it by is more than five years away."
    expires_at = _closing(raw, errors, now=now, today=today)
    if errors:
        raise InvalidIntent(errors)
    assert category and title is not None and quantity and currency and budget and expires_at
    return CleanIntent(
        category=category,
        title=title,
        description=description or "",
        quantity=quantity,
        budget_minor=budget,
        currency=currency,
        country=country,
        city=city,
        online=bool(online),
        needed_by=needed_by,
        expires_at=expires_at,
    )


def parse_offer(
    raw: Mapping[str, Any],
    intent_currency: str,
    *,
    now: datetime,
    partial: bool = False,
    closes_at: datetime | None = None,
) -> dict[str, Any]:
    """Validate an offer (or, with ``partial``, only the fields given in an update).

    Returns the clean values by column name. A currency other than the intent's is refused.
    An offer is valid at most until its intent closes (``closes_at``): a later ``valid_until``
    is shortened to it.
    """

    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    if "currency" in raw or not partial:
        currency = _collect(errors, "currency", lambda: money.parse_currency(raw.get("currency")))
        if currency is not None and currency != intent_currency:
            raise CurrencyMismatch(
                f"This intent's budget is in {intent_currency}; make the offer in "
                f"{intent_currency}, not {currency}.",
                field="currency",
            )
    if "price" in raw or not partial:
        price = _collect(
            errors,
            "price",
            lambda: money.parse_amount(
                raw.get("price"), intent_currency, field="price", label="price"
            ),
        )
        if price is not None:
            clean["price_minor"] = price
    if "message" in raw or not partial:
        message_raw = raw.get("message")
        if message_raw is None or (isinstance(message_raw, str) and not message_raw.strip()):
            clean["message"] = ""
        else:
            message = _collect(
                errors,
                "message",
                lambda: clean_text(
                    message_raw, "message", "The message", limit=MAX_MESSAGE, multiline=True
                ),
            )
            if message is not None:
                clean["message"] = message
    if "valid_until" in raw or not partial:
        valid_until = _collect(
            errors,
            "valid_until",
            lambda: parse_datetime(
                raw.get("valid_until"), field="valid_until", label="valid_until"
            ),
        )
        if valid_until is not None:
            if valid_until <= now + timedelta(minutes=1):
                errors["valid_until"] = "valid_until must be in the future."
            elif valid_until > now + timedelta(days=MAX_OFFER_DAYS):
                errors["valid_until"] = f"An offer is valid for at most {MAX_OFFER_DAYS} days."
            else:
                clean["valid_until"] = min(valid_until, closes_at) if closes_at else valid_until
    if errors:
        raise InvalidIntent(errors)
    if partial and not clean:
        raise InvalidIntent({"body": "Send at least one of price, message and valid_until."})
    return clean
