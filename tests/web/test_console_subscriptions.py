"""Intent subscriptions in the developer console: a vendor saves and deletes them on the app's
page, with the API's checks, and only for its own apps."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from intents.models import IntentSubscription
from tests.helpers import post_form
from tests.web.test_console import APP_FORM, app_at, register, sign_up_vendor

SHARING = {**APP_FORM, "accepted_agreements": ["intent-sharing"]}


def subscriptions(db: Session) -> list[IntentSubscription]:
    db.expire_all()
    return list(db.scalars(select(IntentSubscription)))


def test_a_vendor_subscribes_an_app_and_deletes_the_subscription(
    client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client, **SHARING)

    saved = post_form(
        client,
        f"{path}/subscriptions",
        {"category": "food", "country": "nl", "currency": "EUR", "budget_max": "80"},
        form_page=path,
    )

    assert saved.status_code == 303, saved.text
    [sub] = subscriptions(db)
    assert (sub.app_id, sub.category_key, sub.country_key) == (app_at(db, path).id, "food", "NL")
    assert sub.budget_max == 8000
    page = client.get(path)
    assert "category food, country NL, currency EUR, budget up to 80.00" in page.text

    deleted = post_form(client, f"{path}/subscriptions/{sub.id}/delete", {}, form_page=path)

    assert deleted.status_code == 303
    assert subscriptions(db) == []


def test_bad_filters_are_not_saved_and_the_page_says_why(client: TestClient, db: Session) -> None:
    sign_up_vendor(client)
    path = register(client, **SHARING)

    response = post_form(
        client, f"{path}/subscriptions", {"budget_min": "5", "country": "ZZ"}, form_page=path
    )

    assert response.status_code == 303
    assert subscriptions(db) == []
    page = client.get(response.headers["location"])
    assert "Not saved" in page.text and "currency" in page.text


def test_another_vendor_cannot_delete_a_subscription(
    client: TestClient, second_client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client, **SHARING)
    post_form(client, f"{path}/subscriptions", {}, form_page=path)
    [sub] = subscriptions(db)
    sign_up_vendor(second_client)
    other = register(second_client, **SHARING)

    theirs = post_form(second_client, f"{path}/subscriptions/{sub.id}/delete", {}, form_page=other)
    own_app = post_form(
        second_client, f"{other}/subscriptions/{sub.id}/delete", {}, form_page=other
    )

    assert theirs.status_code == 404 and own_app.status_code == 404
    assert len(subscriptions(db)) == 1


def test_the_page_says_when_nothing_is_sent_and_what_is_missing(
    client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    ready = register(client, **SHARING)
    unhooked = register(client, **{**SHARING, "name": "No hooks", "webhook_url": ""})
    no_terms = register(client, **{**APP_FORM, "name": "No terms"})

    assert "Nothing is sent for these subscriptions" not in client.get(ready).text
    assert "until this app has a webhook URL:" in client.get(unhooked).text
    assert "until this app has the intent-sharing agreement:" in client.get(no_terms).text
