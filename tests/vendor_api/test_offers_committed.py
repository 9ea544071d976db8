"""The offer tests again, on a database whose writes commit, as a served vault's do.

On PostgreSQL an offer is made in the event loop (``intents.market.make_offer_async`` on
``vault.pgasync``'s connections, after ``AppCall.write``'s checks and count), which the
rolled-back tests cannot reach; what it leaves to the full path (an intent the app may not
see, an offer that may not be replaced, the first offer since the owner read the intent's
notice) goes there without being counted twice. Each test has a database of its own (some
count every offer there is). SQLite has no event-loop path, so this module is PostgreSQL's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from intents.models import Offer
from tests.committed import fresh_engine, fresh_rt, recorded
from tests.consent.factories import individual
from tests.intents.factories import app_token, in_days, make_intent, market_vendor
from tests.mail import queued
from tests.vendor_api.test_offers import *  # noqa: F403 (the same tests, on these fixtures)
from tests.vendor_api.test_offers import frozen_window, post_offer
from tests.web.conftest import MakeClient
from vault.base import utcnow
from vault.mail.models import Notice
from vault.mail.notices import send_due_notices, set_switch
from vault.profile.service import ProfileService
from vault.runtime import Runtime
from vendor_api import intents as endpoints

__all__ = ["fresh_engine", "fresh_rt", "frozen_window"]

BACKENDS = ["postgresql"]


@pytest.fixture
def in_event_loop(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each offer was made in the event loop (True) or left to the full path."""
    return recorded(monkeypatch, endpoints, "make_offer_async", lambda made: made is not None)


def notice_of(db: Session, intent_id: uuid.UUID) -> Notice:
    db.expire_all()
    return db.scalars(select(Notice).where(Notice.ref == str(intent_id))).one()


def test_offers_gather_on_the_intents_notice_in_the_event_loop(
    client: TestClient, db: Session, rt: Runtime, in_event_loop: list[bool]
) -> None:
    owner = individual(client, db, rt)
    email = ProfileService(db, rt).email_of(owner.id)
    intent = make_intent(db, rt, owner)
    shops = [app_token(db, rt, market_vendor(db, rt, name=f"Shop {n}")) for n in range(4)]

    made = [post_offer(client, shops[n], intent.id, price=f"{800 + n}") for n in range(3)]

    assert [r.status_code for r in made] == [201, 201, 201]
    # The first makes the notice (the full path); the next two bump it in the event loop.
    assert in_event_loop == [False, True, True]
    notice = notice_of(db, intent.id)
    assert notice.count == 3 and notice.email_due_at is not None
    mailed_at = utcnow()
    assert send_due_notices(db, rt, now=mailed_at) == 1
    db.commit()
    [mail] = queued(rt, email, "new_offer")
    assert mail["Subject"] == "3 new offers on one of your intents"

    # Mailed, still unread: the next offer is due an hour after that mail.
    assert post_offer(client, shops[3], intent.id).status_code == 201
    assert in_event_loop[-1] is True
    notice = notice_of(db, intent.id)
    assert notice.count == 4
    assert notice.email_due_at is not None
    assert notice.email_due_at - notice.emailed_at == timedelta(hours=1)


def test_with_offer_mail_off_the_notice_counts_and_nothing_is_due(
    client: TestClient, db: Session, rt: Runtime, in_event_loop: list[bool]
) -> None:
    owner = individual(client, db, rt)
    set_switch(db, owner.id, "new_offer", email=False)
    db.commit()
    intent = make_intent(db, rt, owner)
    one, two = (app_token(db, rt, market_vendor(db, rt, name=n)) for n in ("One", "Two"))

    assert post_offer(client, one, intent.id).status_code == 201
    assert post_offer(client, two, intent.id).status_code == 201

    assert in_event_loop == [False, True]
    notice = notice_of(db, intent.id)
    assert (notice.count, notice.email_due_at) == (2, None)


def test_a_replaced_offer_keeps_its_id_and_a_declined_one_is_refused_by_the_full_path(
    client: TestClient, db: Session, rt: Runtime, in_event_loop: list[bool]
) -> None:
    from intents.decisions import OfferDecisions

    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner)
    headers = app_token(db, rt, market_vendor(db, rt))
    first = post_offer(client, headers, intent.id, price="850")
    second = post_offer(client, headers, intent.id, price="825.50", message="Better.")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["price"] == "825.50"
    OfferDecisions(db, rt).decline(owner, intent.id, uuid.UUID(first.json()["id"]))
    db.commit()

    refused = post_offer(client, headers, intent.id, price="700")

    assert in_event_loop == [False, True, False]
    assert refused.status_code == 409 and refused.json()["error"] == "offer_declined"
    db.expire_all()
    assert db.scalars(select(Offer.status)).one() == "declined"


def test_what_the_full_path_answers_is_counted_once(
    client_with: MakeClient,
    db: Session,
    rt: Runtime,
    frozen_window: Any,
    in_event_loop: list[bool],
) -> None:
    """An offer the event loop leaves to the full path (the first on an intent, one on an
    intent the app may not see) uses one request of the app's budget, not two."""
    vendor_client = client_with(vendor_writes_per_minute=3)
    intent = make_intent(db, rt, individual(vendor_client, db, rt))
    headers = app_token(db, rt, market_vendor(db, rt))

    answers = [
        post_offer(vendor_client, headers, intent.id),
        post_offer(vendor_client, headers, uuid.uuid4()),
        post_offer(vendor_client, headers, intent.id, price="800"),
        post_offer(vendor_client, headers, intent.id, price="790"),
    ]

    assert [a.status_code for a in answers] == [201, 404, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert in_event_loop == [False, False, True]


def test_in_the_event_loop_an_offer_is_valid_at_most_until_the_intent_closes(
    client: TestClient, db: Session, rt: Runtime, in_event_loop: list[bool]
) -> None:
    owner = individual(client, db, rt)
    intent = make_intent(db, rt, owner, closes="in_2h")
    first, second = (app_token(db, rt, market_vendor(db, rt, name=n)) for n in ("One", "Two"))
    assert post_offer(client, first, intent.id).status_code == 201  # makes the notice

    made = post_offer(client, second, intent.id, valid_until=in_days(3))
    other_currency = post_offer(client, second, intent.id, currency="USD")

    assert in_event_loop == [False, True, False]
    assert made.status_code == 201
    valid_until = datetime.fromisoformat(made.json()["valid_until"].replace("Z", "+00:00"))
    assert valid_until == intent.expires_at
    # An intent in another currency is the full path's to refuse, naming the intent's.
    assert other_currency.status_code == 400
    assert other_currency.json()["error"] == "currency_mismatch"
    assert "EUR" in other_currency.json()["detail"]
