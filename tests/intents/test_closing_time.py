"""Intents that close at a time of day: quick choices, the person's time zone, at least 30
minutes ahead, offers valid no longer than the intent, and the worker closing it on time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from intents.errors import InvalidIntent
from intents.jobs import CLOSE_INTENTS
from intents.models import Intent
from intents.rules import parse_intent
from tests.consent.factories import individual
from tests.helpers import csrf_from as csrf_of
from tests.intents.factories import BIKE, app_token, make_intent, market_vendor, offer_body
from vault.runtime import Runtime

NOW = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


def closing(**raw: Any) -> datetime:
    return parse_intent({**BIKE, **raw}, now=NOW).expires_at


def refused(**raw: Any) -> dict[str, str]:
    with pytest.raises(InvalidIntent) as caught:
        parse_intent({**BIKE, **raw}, now=NOW)
    return caught.value.errors


def test_in_two_hours_closes_two_hours_from_now() -> None:
    assert closing(closes="in_2h") == NOW + timedelta(hours=2)


def test_today_at_six_pm_is_in_the_persons_time_zone() -> None:
    # 18:00 in Amsterdam (UTC+1 in March) is 17:00 UTC.
    assert closing(closes="today_18", time_zone="Europe/Amsterdam") == datetime(
        2027, 3, 1, 17, 0, tzinfo=UTC
    )
    assert closing(closes="today_18") == datetime(2027, 3, 1, 18, 0, tzinfo=UTC)


def test_a_date_and_a_time_close_at_that_local_time() -> None:
    assert closing(
        expires_on="2027-03-02", closes_time="09:30", time_zone="America/New_York"
    ) == datetime(2027, 3, 2, 14, 30, tzinfo=UTC)


def test_a_date_alone_still_closes_at_the_end_of_that_day_utc() -> None:
    assert closing(expires_on="2027-03-05") == datetime(2027, 3, 6, tzinfo=UTC)


def test_a_closing_time_less_than_30_minutes_ahead_is_refused() -> None:
    assert "closes_time" in refused(expires_on="2027-03-01", closes_time="10:20")
    assert closing(expires_on="2027-03-01", closes_time="10:30") == NOW + timedelta(minutes=30)
    # 18:00 in Tokyo was 09:00 UTC: already past.
    assert "closes" in refused(closes="today_18", time_zone="Asia/Tokyo")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"closes": "tomorrow"}, "closes"),
        ({"closes_time": "25:00", "expires_on": "2027-03-02"}, "closes_time"),
        ({"closes_time": "noon", "expires_on": "2027-03-02"}, "closes_time"),
        ({"closes": "in_2h", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"closes": "in_2h", "time_zone": "../../etc/passwd"}, "time_zone"),
        ({"closes": "in_2h", "time_zone": "x" * 65}, "time_zone"),
    ],
)
def test_bad_closing_input_is_named(raw: dict[str, str], field: str) -> None:
    assert field in refused(**raw)


def test_an_offer_is_valid_at_most_until_the_intent_closes(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner, closes="in_2h")
    headers = app_token(db, rt, market_vendor(db, rt))

    made = client.post(f"/vendor/v1/intents/{intent.id}/offers", headers=headers, json=offer_body())

    assert made.status_code == 201, made.text
    valid_until = datetime.fromisoformat(made.json()["valid_until"].replace("Z", "+00:00"))
    assert valid_until == intent.expires_at
    changed = client.patch(
        f"/vendor/v1/offers/{made.json()['id']}",
        headers=headers,
        json={"valid_until": (datetime.now(UTC) + timedelta(days=3)).isoformat()},
    )
    assert changed.json()["valid_until"] == made.json()["valid_until"]


def test_the_close_job_closes_an_intent_once_its_time_has_come(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner, closes="in_2h")
    headers = app_token(db, rt, market_vendor(db, rt))
    assert client.get(f"/vendor/v1/intents/{intent.id}", headers=headers).status_code == 200

    db.execute(
        Intent.__table__.update()
        .where(Intent.id == intent.id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    CLOSE_INTENTS.run(db, rt)
    db.commit()

    assert db.scalar(select(Intent.status).where(Intent.id == intent.id)) == "expired"
    assert client.get(f"/vendor/v1/intents/{intent.id}", headers=headers).status_code == 404


def test_the_portal_form_publishes_an_intent_closing_in_two_hours(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    individual(client, db, rt)
    form = client.get("/intents/new")
    assert 'value="in_2h"' in form.text and 'value="today_18"' in form.text
    before = datetime.now(UTC)

    response = client.post(
        "/intents/new",
        data={
            **BIKE,
            "closes": "in_2h",
            "time_zone": "Europe/Amsterdam",
            "action": "publish",
            "csrf_token": csrf_of(form.text),
        },
        follow_redirects=False,
    )

    assert response.status_code == 303, response.text
    closes = db.scalar(select(Intent.expires_at))
    assert closes is not None
    assert before + timedelta(hours=2) <= closes <= datetime.now(UTC) + timedelta(hours=2)


def test_the_portal_form_shows_a_too_early_closing_time_next_to_its_field(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    individual(client, db, rt)
    form = client.get("/intents/new")
    soon = datetime.now(UTC) + timedelta(minutes=5)

    response = client.post(
        "/intents/new",
        data={
            **BIKE,
            "expires_on": soon.date().isoformat(),
            "closes_time": soon.strftime("%H:%M"),
            "time_zone": "UTC",
            "action": "publish",
            "csrf_token": csrf_of(form.text),
        },
    )

    assert response.status_code == 400
    assert "at least 30 minutes from now" in response.text
    assert db.scalars(select(Intent)).all() == []
