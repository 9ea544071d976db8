"""The developer console: vendor sign-up, apps registered, secrets shown once, edits, deletion."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from html.parser import HTMLParser

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.vendors.models import VendorApp
from consent.vendors.service import authenticate_client
from consent.webhooks.delivery import deliver_due
from consent.webhooks.models import WebhookAttempt, WebhookMessage
from consent.webhooks.outbox import enqueue
from tests.consent.test_webhooks import CHANGED, REVOKED
from tests.helpers import (
    PASSWORD,
    confirm_address,
    csrf_from,
    page_csrf,
    post_form,
    sign_in,
    sign_up,
    unique_email,
)
from tests.web.conftest import Count
from tests.webhook_receiver import Receiver
from vault.accounts.models import Account, Role
from vault.accounts.service import email_index
from vault.base import utcnow
from vault.runtime import Runtime
from vault.signup import sign_up as new_account

APP_FORM: dict[str, object] = {
    "name": "Acme Outdoor",
    "homepage_url": "https://acme.example",
    "privacy_policy_url": "https://acme.example/privacy",
    "redirect_uris": "https://acme.example/callback\r\nhttp://127.0.0.1:8765/cb",
    "purpose": "Ship your orders and size your boots.",
    "webhook_url": "https://acme.example/hooks/vrm",
    "accepted_agreements": ["service-only", "no-tracking"],
    "vendor_scopes": ["intents:read"],
}
SECRET_SHOWN = re.compile(r'id="client_secret" type="text" readonly value="([^"]+)"')


def sign_up_vendor(client: TestClient, email: str | None = None) -> str:
    email = email or unique_email("vendor")
    response = post_form(
        client,
        "/signup/vendor",
        {"email": email, "password": PASSWORD, "password_confirm": PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert "register your first app" in response.text
    confirm_address(client, email)
    signed_in = sign_in(client, email)
    assert signed_in.headers["location"] == "/console"
    return email


def register(client: TestClient, **changes: object) -> str:
    """Register an app through the form; returns its page's path."""
    response = post_form(
        client, "/console/apps", {**APP_FORM, **changes}, form_page="/console/apps/new"
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert re.fullmatch(r"/console/apps/[0-9a-f-]{36}", location)
    return str(location)


def app_at(db: Session, path: str) -> VendorApp:
    db.expire_all()
    app = db.get(VendorApp, uuid.UUID(path.rsplit("/", 1)[1]))
    assert app is not None
    return app


def create_secret(client: TestClient, path: str) -> tuple[Response, str]:
    response = post_form(client, f"{path}/secret", {}, form_page=path)
    assert response.status_code == 200, response.text
    match = SECRET_SHOWN.search(response.text)
    assert match, "the new secret is not on the page"
    return response, match.group(1)


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="{name}-error">([^<]*)</p>', html)
    assert match, f"no message next to {name}"
    return match.group(1)


# -- vendor sign-up -------------------------------------------------------------------------


def test_the_sign_up_page_links_to_vendor_sign_up(client: TestClient) -> None:
    page = client.get("/signup")
    assert 'href="/signup/vendor"' in page.text
    assert "Sign up as a vendor" in page.text


def test_vendor_sign_up_creates_a_vendor_account_and_opens_the_console(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    email = sign_up_vendor(client)

    db.expire_all()
    account = db.scalars(select(Account).where(Account.email_index == email_index(rt, email)))
    assert account.one().role == Role.VENDOR.value
    console = client.get("/console")
    assert console.status_code == 200
    assert '<a href="/console" aria-current="page">Developer console</a>' in console.text
    assert 'href="/profile"' not in console.text
    assert "No apps yet." in console.text


def test_vendor_sign_up_repeats_the_password_check_next_to_the_field(
    client: TestClient, count: Count
) -> None:
    before = count(Account)
    response = post_form(
        client,
        "/signup/vendor",
        {"email": unique_email(), "password": PASSWORD, "password_confirm": PASSWORD + "!"},
    )
    assert response.status_code == 400
    assert field_error(response.text, "password_confirm") == "The two passwords are not the same."
    assert count(Account) == before


def test_a_vendor_signing_in_lands_on_the_console(
    client: TestClient, second_client: TestClient
) -> None:
    email = sign_up_vendor(client)
    response = sign_in(second_client, email)
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    assert second_client.get("/").headers["location"] == "/console"


def test_a_vendor_has_no_profile(client: TestClient) -> None:
    sign_up_vendor(client)
    assert client.get("/profile").status_code == 403


# -- who may open the console ---------------------------------------------------------------


def test_an_individual_gets_403_on_the_console(client: TestClient) -> None:
    sign_up(client)
    for path in ("/console", "/console/apps/new"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "for vendor accounts" in response.text
    token = page_csrf(client, "/profile")
    posted = client.post("/console/apps", data={**APP_FORM, "csrf_token": token})
    assert posted.status_code == 403


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    response = client.get("/console")
    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=/console"


def test_another_vendor_gets_404_for_every_page_of_an_app(
    client: TestClient, second_client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up_vendor(client)
    path = register(client)
    sign_up_vendor(second_client)
    token = page_csrf(second_client, "/console")
    hash_before = app_at(db, path).client_secret_hash

    for get in (path, f"{path}/edit", f"{path}/delete"):
        assert second_client.get(get).status_code == 404, get
    for post, data in (
        (f"{path}/secret", {}),
        (path, APP_FORM),
        (f"{path}/delete", {"confirm": "yes"}),
    ):
        response = second_client.post(post, data={**data, "csrf_token": token})
        assert response.status_code == 404, post
    app = app_at(db, path)
    assert app.name == "Acme Outdoor"
    assert app.client_secret_hash == hash_before
    assert "Acme Outdoor" not in second_client.get("/console").text


def test_an_unknown_or_malformed_app_id_is_404(client: TestClient) -> None:
    sign_up_vendor(client)
    assert client.get(f"/console/apps/{uuid.uuid4()}").status_code == 404
    assert client.get("/console/apps/not-an-id").status_code == 404


# -- registering ----------------------------------------------------------------------------


def test_registering_an_app_shows_its_client_id_and_registration(
    client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client)
    app = app_at(db, path)

    page = client.get(path)

    assert page.status_code == 200
    assert "Acme Outdoor is registered." in page.text
    assert app.client_id in page.text
    for shown in (
        "https://acme.example/callback",
        "http://127.0.0.1:8765/cb",
        "Ship your orders and size your boots.",
        "https://acme.example/hooks/vrm",
        "service-only",
        "no-tracking",
        "intents:read",
    ):
        assert shown in page.text
    assert "Create client secret" in page.text
    assert app.client_secret_hash is None
    assert app.redirect_uris == ["https://acme.example/callback", "http://127.0.0.1:8765/cb"]
    assert app.registered_via == "console"
    listing = client.get("/console").text
    assert f'href="{path}"' in listing
    assert app.client_id in listing


def test_register_errors_are_shown_next_to_each_field_and_nothing_is_stored(
    client: TestClient, count: Count
) -> None:
    sign_up_vendor(client)
    before = count(VendorApp)

    response = post_form(
        client,
        "/console/apps",
        {
            **APP_FORM,
            "name": "",
            "redirect_uris": "http://acme.example/callback",
            "privacy_policy_url": "http://acme.example/privacy",
            "accepted_agreements": [],
        },
        form_page="/console/apps/new",
    )

    assert response.status_code == 400
    assert "plain http is allowed only on 127.0.0.1" in field_error(response.text, "redirect_uris")
    assert field_error(response.text, "name") == "App name cannot be empty."
    assert "must use https" in field_error(response.text, "privacy_policy_url")
    assert "at least one" in field_error(response.text, "accepted_agreements")
    assert 'aria-describedby="redirect_uris-hint redirect_uris-error"' in response.text
    # What was typed is kept.
    assert "http://acme.example/callback</textarea>" in response.text
    assert 'value="https://acme.example/hooks/vrm"' in response.text
    assert count(VendorApp) == before


# -- client secrets -------------------------------------------------------------------------


def test_the_client_secret_is_shown_once_and_never_again(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up_vendor(client)
    path = register(client)

    response, secret = create_secret(client, path)

    app = app_at(db, path)
    assert authenticate_client(db, rt, app.client_id, secret) is not None
    assert "shown only this once" in response.text
    assert "location" not in response.headers
    assert secret not in response.headers.get("set-cookie", "")
    assert response.headers["cache-control"] == "no-store"
    for later in (path, "/console", f"{path}/edit", "/account"):
        page = client.get(later)
        assert page.status_code == 200
        assert secret not in page.text, later
    assert "Rotate client secret" in client.get(path).text
    assert secret not in str(client.cookies)


def test_rotating_the_secret_invalidates_the_old_one(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up_vendor(client)
    path = register(client)
    _, old = create_secret(client, path)

    response, new = create_secret(client, path)

    assert new != old
    assert "Your new client secret" in response.text
    client_id = app_at(db, path).client_id
    assert authenticate_client(db, rt, client_id, old) is None
    assert authenticate_client(db, rt, client_id, new) is not None


def test_creating_a_secret_needs_the_csrf_token(client: TestClient, db: Session) -> None:
    sign_up_vendor(client)
    path = register(client)

    missing = client.post(f"{path}/secret", data={})
    forged = client.post(f"{path}/secret", data={"csrf_token": "forged"})

    assert missing.status_code == 403
    assert forged.status_code == 403
    assert "did not come from this site" in missing.text
    assert not SECRET_SHOWN.search(missing.text + forged.text)
    assert app_at(db, path).client_secret_hash is None


def test_every_console_form_needs_the_csrf_token(client: TestClient, count: Count) -> None:
    sign_up_vendor(client)
    path = register(client)
    before = count(VendorApp)

    for post, data in (
        ("/console/apps", APP_FORM),
        (path, {**APP_FORM, "name": "Renamed"}),
        (f"{path}/delete", {"confirm": "yes"}),
    ):
        assert client.post(post, data=data).status_code == 403, post
    assert count(VendorApp) == before
    assert "Acme Outdoor" in client.get(path).text


# -- editing --------------------------------------------------------------------------------


def test_the_edit_form_is_filled_in_and_saves_changes(client: TestClient, db: Session) -> None:
    sign_up_vendor(client)
    path = register(client)
    form = client.get(f"{path}/edit")
    assert 'value="Acme Outdoor"' in form.text
    assert "https://acme.example/callback\nhttp://127.0.0.1:8765/cb</textarea>" in form.text
    assert re.search(r'value="no-tracking"\s+checked', form.text)
    assert not re.search(r'value="intent-sharing"\s+checked', form.text)

    response = client.post(
        path,
        data={
            **APP_FORM,
            "name": "Acme Trail",
            "redirect_uris": "https://trail.example/cb",
            "webhook_url": "",
            "accepted_agreements": ["intent-sharing"],
            "vendor_scopes": [],
            "csrf_token": csrf_from(form.text),
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == path
    assert "Acme Trail is saved." in client.get(path).text
    app = app_at(db, path)
    assert (app.name, app.redirect_uris, app.webhook_url) == (
        "Acme Trail",
        ["https://trail.example/cb"],
        None,
    )
    assert (app.accepted_agreements, app.vendor_scopes) == (["intent-sharing"], [])


def test_edit_errors_are_shown_next_to_the_fields_and_change_nothing(
    client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client)

    response = post_form(
        client,
        path,
        {
            **APP_FORM,
            "name": "Renamed",
            "redirect_uris": "https://acme.example/cb#section",
            "purpose": "p" * 501,
            "webhook_url": "ftp://acme.example/hook",
        },
        form_page=f"{path}/edit",
    )

    assert response.status_code == 400
    assert "must not contain a fragment" in field_error(response.text, "redirect_uris")
    assert field_error(response.text, "purpose") == "Purpose can be at most 500 characters."
    assert "must be an absolute https:// URL" in field_error(response.text, "webhook_url")
    assert 'id="name" name="name" type="text" required maxlength="100" value="Renamed"' in (
        response.text
    )
    assert f'action="{path}"' in response.text
    app = app_at(db, path)
    assert app.name == "Acme Outdoor"
    assert app.redirect_uris == ["https://acme.example/callback", "http://127.0.0.1:8765/cb"]


# -- deleting -------------------------------------------------------------------------------


def test_delete_asks_for_confirmation_first(client: TestClient, db: Session) -> None:
    sign_up_vendor(client)
    path = register(client)
    confirm = client.get(f"{path}/delete")
    assert confirm.status_code == 200
    assert 'name="confirm"' in confirm.text

    response = post_form(client, f"{path}/delete", {}, form_page=f"{path}/delete")

    assert response.status_code == 400
    assert field_error(response.text, "confirm") == "Tick the box to confirm the deletion."
    assert app_at(db, path).name == "Acme Outdoor"


def test_deleting_an_app_removes_it_and_its_grants(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    sign_up_vendor(client)
    path = register(client)
    _, secret = create_secret(client, path)
    app = app_at(db, path)
    client_id, app_id = app.client_id, app.id
    person = new_account(db, rt, unique_email(), PASSWORD)
    db.add(
        Grant(
            individual_id=person.id,
            app_id=app_id,
            fields=["email"],
            purpose=app.purpose,
            agreement_id="service-only",
            granted_at=utcnow(),
        )
    )
    db.commit()

    response = post_form(client, f"{path}/delete", {"confirm": "yes"}, form_page=f"{path}/delete")

    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    listing = client.get("/console").text
    assert "Acme Outdoor is deleted" in listing
    assert "No apps yet." in listing
    assert client.get(path).status_code == 404
    db.expire_all()
    assert db.get(VendorApp, app_id) is None
    assert db.scalars(select(Grant).where(Grant.app_id == app_id)).all() == []
    assert authenticate_client(db, rt, client_id, secret) is None


# -- webhook deliveries ---------------------------------------------------------------------


def test_the_app_page_lists_webhook_deliveries_and_their_attempts(
    client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client)
    app = app_at(db, path)
    now = utcnow()
    message = WebhookMessage(
        app_id=app.id,
        event_type="grant.revoked",
        payload={"type": "grant.revoked"},
        created_at=now - timedelta(minutes=3),
        next_attempt_at=now + timedelta(minutes=1),
        attempts=1,
    )
    db.add(message)
    db.flush()
    db.add(
        WebhookAttempt(
            message_id=message.id,
            attempted_at=now - timedelta(minutes=2),
            status_code=503,
            error=None,
            duration_ms=87,
        )
    )
    db.commit()

    page = client.get(path).text

    assert "Webhook deliveries" in page
    assert "grant.revoked" in page
    assert "HTTP 503" in page
    assert "87 ms" in page


def test_the_webhook_signing_secret_is_shown_and_can_be_rotated(
    client: TestClient, db: Session, rt: Runtime
) -> None:
    from consent.webhooks.signing import webhook_secret_for

    sign_up_vendor(client)
    path = register(client)
    old = webhook_secret_for(rt, app_at(db, path))
    assert old in client.get(path).text

    response = post_form(client, f"{path}/webhook-secret", {}, form_page=path)

    assert response.status_code == 303
    assert response.headers["location"] == path
    new = webhook_secret_for(rt, app_at(db, path))
    assert new != old
    page = client.get(path).text
    assert new in page
    assert old not in page
    assert "signing secret is replaced" in page


def test_another_vendor_cannot_rotate_the_signing_secret(
    client: TestClient, second_client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client)
    version = app_at(db, path).webhook_secret_version
    sign_up_vendor(second_client)
    token = page_csrf(second_client, "/console")

    response = second_client.post(f"{path}/webhook-secret", data={"csrf_token": token})

    assert response.status_code == 404
    assert app_at(db, path).webhook_secret_version == version


def _settle(db: Session, path: str, *, delivered: bool, minutes_ago: int) -> WebhookMessage:
    """A message of the app at ``path`` with one attempt, delivered or failed."""
    now = utcnow()
    at = now - timedelta(minutes=minutes_ago)
    message = WebhookMessage(
        app_id=app_at(db, path).id,
        event_type="consent.changed",
        payload={"type": "consent.changed", "timestamp": "2030-01-01T00:00:00Z", "data": {}},
        created_at=at,
        next_attempt_at=at if delivered else now + timedelta(minutes=8),
        attempts=1,
        delivered_at=at if delivered else None,
    )
    db.add(message)
    db.flush()
    db.add(
        WebhookAttempt(
            message_id=message.id,
            attempted_at=at,
            status_code=204 if delivered else 503,
            error=None if delivered else "HTTP 503",
            duration_ms=12,
        )
    )
    db.commit()
    return message


def _health(page: str) -> dict[str, str]:
    section = page.split('id="webhook-health"', 1)[1].split("</dl>", 1)[0]
    return {
        re.sub(r"<[^>]+>", "", term): re.sub(r"<[^>]+>", "", value).strip()
        for term, value in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", section)
    }


def test_the_app_page_shows_its_endpoints_health(client: TestClient, db: Session) -> None:
    sign_up_vendor(client)
    path = register(client)
    assert _health(client.get(path).text) == {
        "Last success": "Never",
        "Failures in a row": "0",
        "Waiting messages": "0",
    }
    delivered = _settle(db, path, delivered=True, minutes_ago=30)
    _settle(db, path, delivered=False, minutes_ago=20)
    _settle(db, path, delivered=False, minutes_ago=10)
    assert delivered.delivered_at is not None

    health = _health(client.get(path).text)

    success = delivered.delivered_at.strftime("%Y-%m-%d %H:%M:%S")
    assert health["Last success"] == f"{success} UTC"
    assert health["Failures in a row"] == "2"
    assert health["Waiting messages"].startswith("2 (the oldest queued ")
    assert "Next try" in health
    assert "Retry waiting messages now" in client.get(path).text


def test_a_delivered_message_can_be_resent_and_goes_out_after_those_waiting(
    client: TestClient, db: Session, rt: Runtime, receiver: Receiver
) -> None:
    sign_up_vendor(client)
    path = register(client, webhook_url=receiver.url)
    app = app_at(db, path)
    first = enqueue(db, app, CHANGED)
    assert first is not None
    db.commit()
    assert deliver_due(rt.sessions, rt) == 1
    waiting = enqueue(db, app, REVOKED)  # queued, not yet delivered
    assert waiting is not None
    db.commit()
    page = client.get(path).text
    assert f"/webhooks/{first.id}/resend" in page
    assert f"/webhooks/{waiting.id}/resend" not in page  # only settled messages are resent

    response = post_form(client, f"{path}/webhooks/{first.id}/resend", {}, form_page=path)

    assert response.status_code == 303
    assert "queued again" in client.get(path).text
    assert deliver_due(rt.sessions, rt) == 2
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [b["type"] for b in bodies] == ["consent.changed", "consent.revoked", "consent.changed"]
    assert bodies[2] == bodies[0] == first.payload  # the same event, its own timestamp
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids[0] == str(first.id) and ids[2] not in (ids[0], ids[1])


def test_resending_needs_the_csrf_token_the_owner_and_a_settled_message(
    client: TestClient, second_client: TestClient, db: Session, count: Count
) -> None:
    sign_up_vendor(client)
    path = register(client)
    delivered = _settle(db, path, delivered=True, minutes_ago=5)
    waiting = _settle(db, path, delivered=False, minutes_ago=1)
    before = count(WebhookMessage)
    resend = f"{path}/webhooks/{delivered.id}/resend"

    assert client.post(resend, data={}).status_code == 403
    assert client.post(resend, data={"csrf_token": "forged"}).status_code == 403
    sign_up_vendor(second_client)
    token = page_csrf(second_client, "/console")
    assert second_client.post(resend, data={"csrf_token": token}).status_code == 404
    still_waiting = post_form(client, f"{path}/webhooks/{waiting.id}/resend", {}, form_page=path)
    assert still_waiting.status_code == 409
    assert "still waiting" in still_waiting.text
    elsewhere = post_form(client, f"{path}/webhooks/{uuid.uuid4()}/resend", {}, form_page=path)
    assert elsewhere.status_code == 404
    assert count(WebhookMessage) == before


def test_retry_now_makes_the_waiting_messages_due_at_once(
    client: TestClient, db: Session, rt: Runtime, receiver: Receiver
) -> None:
    sign_up_vendor(client)
    path = register(client, webhook_url=receiver.url)
    waiting = _settle(db, path, delivered=False, minutes_ago=1)  # next try in 8 minutes
    assert deliver_due(rt.sessions, rt) == 0
    assert client.post(f"{path}/webhooks/retry", data={}).status_code == 403
    assert deliver_due(rt.sessions, rt) == 0

    response = post_form(client, f"{path}/webhooks/retry", {}, form_page=path)

    assert response.status_code == 303
    assert "1 waiting message will be tried" in client.get(path).text
    assert deliver_due(rt.sessions, rt) == 1
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(waiting.id)]


# -- markup ---------------------------------------------------------------------------------


class FormAudit(HTMLParser):
    """Collects inputs' ids, labels' targets, forms' CSRF fields and any inline script/style."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[str] = []
        self.labels: set[str] = set()
        self.forms = 0
        self.csrf_fields = 0
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms += 1
        if tag in ("input", "textarea", "select"):
            if a.get("type") == "hidden":
                self.csrf_fields += a.get("name") == "csrf_token"
            else:
                self.inputs.append(a.get("id") or "<no id>")
        if tag == "label" and a.get("for"):
            self.labels.add(str(a["for"]))
        if tag == "style" or "style" in a or any(k.startswith("on") for k in a):
            self.inline.append(tag)
        if tag == "script" and "src" not in a:
            self.inline.append(tag)


def test_every_console_page_labels_its_inputs_and_protects_its_forms(
    client: TestClient, db: Session
) -> None:
    sign_up_vendor(client)
    path = register(client)
    _settle(db, path, delivered=True, minutes_ago=2)  # a resend form
    _settle(db, path, delivered=False, minutes_ago=1)  # the retry form
    secret_page, _ = create_secret(client, path)
    invalid = post_form(client, "/console/apps", {"name": ""}, form_page="/console/apps/new")
    pages = {
        "/console": client.get("/console").text,
        "new": client.get("/console/apps/new").text,
        "app": client.get(path).text,
        "edit": client.get(f"{path}/edit").text,
        "delete": client.get(f"{path}/delete").text,
        "secret": secret_page.text,
        "invalid": invalid.text,
    }
    for name, html in pages.items():
        audit = FormAudit()
        audit.feed(html)
        unlabelled = [i for i in audit.inputs if i not in audit.labels]
        assert unlabelled == [], name
        assert audit.csrf_fields == audit.forms, name
        assert audit.inline == [], name


def test_the_app_page_warns_when_intent_scopes_lack_the_intent_sharing_agreement(
    client: TestClient,
) -> None:
    sign_up_vendor(client)
    without = register(client)  # intents:read, service-only and no-tracking
    with_it = register(
        client, name="Acme Intents", accepted_agreements=["intent-sharing", "service-only"]
    )

    assert "agreement_required" in client.get(without).text
    assert "agreement_required" not in client.get(with_it).text
