"""Vendors' apps: registration rules, client ids, secrets shown once, rotation, deletion."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent.grants.models import Grant, OAuthToken
from consent.grants.service import delete_app
from consent.vendors.models import VendorApp
from consent.vendors.service import (
    AppInput,
    InvalidApp,
    agreements,
    app_for_client_id,
    app_of_owner,
    apps_of,
    authenticate_client,
    create_client_secret,
    register_app,
    update_app,
    validate_app,
)
from tests.helpers import PASSWORD, unique_email
from vault.accounts.models import Account, Role
from vault.base import utcnow
from vault.crypto import hash_token
from vault.errors import NotFound
from vault.runtime import Runtime
from vault.signup import sign_up

GOOD = AppInput(
    name="Acme Outdoor",
    homepage_url="https://acme.example",
    privacy_policy_url="https://acme.example/privacy",
    redirect_uris=["https://acme.example/callback"],
    purpose="Ship your orders and size your boots.",
    accepted_agreements=["service-only"],
)


def given(**changes: object) -> AppInput:
    return dataclasses.replace(GOOD, **changes)  # type: ignore[arg-type]


def errors_for(data: AppInput) -> dict[str, str]:
    with pytest.raises(InvalidApp) as caught:
        validate_app(data)
    return caught.value.errors


def account(db: Session, rt: Runtime, role: Role = Role.VENDOR) -> Account:
    return sign_up(db, rt, unique_email(role.value), PASSWORD, role=role)


# -- registration ---------------------------------------------------------------------------


def test_register_stores_the_metadata_and_a_vrm_client_id(db: Session, rt: Runtime) -> None:
    owner = account(db, rt)
    app, secret = register_app(db, rt, GOOD, owner_id=owner.id)

    assert secret is None
    assert app.client_secret_hash is None
    assert re.fullmatch(r"vrm_[A-Za-z0-9_-]{20}", app.client_id)
    db.expire_all()
    stored = db.get(VendorApp, app.id)
    assert stored is not None
    assert stored.owner_id == owner.id
    assert stored.name == "Acme Outdoor"
    assert stored.redirect_uris == ["https://acme.example/callback"]
    assert stored.accepted_agreements == ["service-only"]
    assert stored.vendor_scopes == []
    assert stored.webhook_url is None
    assert stored.registered_via == "console"


def test_client_ids_differ_between_apps(db: Session, rt: Runtime) -> None:
    ids = {register_app(db, rt, GOOD, owner_id=None)[0].client_id for _ in range(5)}
    assert len(ids) == 5


def test_redirect_uris_are_stored_exactly_as_given(db: Session, rt: Runtime) -> None:
    uris = [
        "https://Acme.example:8443/cb/?tenant=a%20b&x=1",
        "http://127.0.0.1:53682/callback",
        "http://localhost/cb",
        "http://[::1]:9000/cb",
    ]
    app, _ = register_app(db, rt, given(redirect_uris=uris), owner_id=None)
    db.expire_all()
    assert db.get(VendorApp, app.id).redirect_uris == uris  # type: ignore[union-attr]


def test_duplicate_redirect_uris_are_stored_once(db: Session, rt: Runtime) -> None:
    uri = "https://acme.example/cb"
    app, _ = register_app(db, rt, given(redirect_uris=[uri, uri, " ", uri]), owner_id=None)
    assert app.redirect_uris == [uri]


def test_agreements_and_scopes_are_kept_in_roster_order(db: Session, rt: Runtime) -> None:
    roster = list(agreements())
    app, _ = register_app(
        db,
        rt,
        given(
            accepted_agreements=[roster[3], roster[0]],
            vendor_scopes=["offers:write", "intents:read"],
        ),
        owner_id=None,
    )
    assert app.accepted_agreements == [roster[0], roster[3]]
    assert app.vendor_scopes == ["intents:read", "offers:write"]


def test_the_roster_has_the_standard_agreement_ids() -> None:
    assert {"service-only", "service-and-portability", "no-tracking", "intent-sharing"} <= set(
        agreements()
    )


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("http://acme.example/cb", "plain http is allowed only on 127.0.0.1, localhost"),
        ("http://10.0.0.1/cb", "plain http is allowed only"),
        ("http://127.0.0.1.nip.io/cb", "plain http is allowed only"),
        ("https://acme.example/cb#done", "must not contain a fragment"),
        ("/callback", "must be an absolute https:// URL"),
        ("acme.example/callback", "must be an absolute https:// URL"),
        ("com.acme.app:/callback", "must be an absolute https:// URL"),
        ("javascript:alert(1)", "must be an absolute https:// URL"),
        ("https://", "must be an absolute https:// URL"),
        ("https://user:pw@acme.example/cb", "must not contain a user name or password"),
        ("https://acme.example/c b", "spaces or characters that must be percent-encoded"),
        ("https://acmé.example/cb", "spaces or characters that must be percent-encoded"),
        ("https://acme.example:port/cb", "is not a valid URL"),
        ("https://acme.example/" + "a" * 500, "at most 500 characters"),
    ],
)
def test_bad_redirect_uris_are_refused_with_a_reason(uri: str, says: str) -> None:
    errors = errors_for(given(redirect_uris=[uri]))
    assert list(errors) == ["redirect_uris"]
    assert says in errors["redirect_uris"]


def test_at_least_one_and_at_most_ten_redirect_uris() -> None:
    assert "at least one" in errors_for(given(redirect_uris=[]))["redirect_uris"]
    eleven = [f"https://acme.example/cb{i}" for i in range(11)]
    assert "at most 10" in errors_for(given(redirect_uris=eleven))["redirect_uris"]
    validate_app(given(redirect_uris=eleven[:10]))


@pytest.mark.parametrize("field", ["homepage_url", "privacy_policy_url"])
def test_homepage_and_privacy_policy_must_be_https_even_on_loopback(field: str) -> None:
    errors = errors_for(given(**{field: "http://localhost/privacy"}))
    assert "must use https" in errors[field]
    assert "is required" in errors_for(given(**{field: ""}))[field]


def test_webhook_url_is_optional_and_follows_the_redirect_uri_rule() -> None:
    assert validate_app(given(webhook_url=None)).webhook_url is None
    assert validate_app(given(webhook_url="  ")).webhook_url is None
    assert validate_app(given(webhook_url="http://127.0.0.1:9000/hook")).webhook_url == (
        "http://127.0.0.1:9000/hook"
    )
    assert (
        "must use https" in errors_for(given(webhook_url="http://acme.example/hook"))["webhook_url"]
    )
    assert "fragment" in errors_for(given(webhook_url="https://acme.example/h#x"))["webhook_url"]


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"name": ""}, "name", "App name cannot be empty."),
        ({"name": "x" * 101}, "name", "at most 100 characters"),
        ({"name": "Acme\u202eevil"}, "name", "characters that are not allowed"),
        ({"purpose": "  "}, "purpose", "Purpose cannot be empty."),
        ({"purpose": "p" * 501}, "purpose", "at most 500 characters"),
        ({"accepted_agreements": []}, "accepted_agreements", "at least one"),
        ({"accepted_agreements": ["anything-goes"]}, "accepted_agreements", "Unknown agreement"),
        ({"vendor_scopes": ["profile:email"]}, "vendor_scopes", "Unknown vendor scope"),
        ({"token_endpoint_auth_method": "none"}, "token_endpoint_auth_method", "must be one of"),
    ],
)
def test_bad_fields_are_refused_with_a_reason(
    changes: dict[str, object], field: str, says: str
) -> None:
    errors = errors_for(given(**changes))
    assert list(errors) == [field]
    assert says in errors[field]


def test_names_and_purposes_are_trimmed_and_purpose_keeps_line_breaks() -> None:
    clean = validate_app(given(name="  Acme   Outdoor ", purpose=" Ship.\r\nSize boots. "))
    assert clean.name == "Acme Outdoor"
    assert clean.purpose == "Ship.\nSize boots."
    assert len(validate_app(given(name="x" * 100, purpose="p" * 500)).purpose) == 500


def test_every_faulty_field_is_named_at_once() -> None:
    errors = errors_for(
        given(name="", redirect_uris=["http://acme.example"], accepted_agreements=[])
    )
    assert set(errors) == {"name", "redirect_uris", "accepted_agreements"}


def test_invalid_metadata_stores_nothing(db: Session, rt: Runtime) -> None:
    before = db.scalar(select(func.count()).select_from(VendorApp))
    with pytest.raises(InvalidApp):
        register_app(db, rt, given(redirect_uris=["http://acme.example"]), owner_id=None)
    assert db.scalar(select(func.count()).select_from(VendorApp)) == before


# -- secrets --------------------------------------------------------------------------------


def test_secret_is_returned_once_and_stored_only_as_a_keyed_hash(db: Session, rt: Runtime) -> None:
    app, secret = register_app(db, rt, GOOD, owner_id=None, with_secret=True)

    assert secret is not None
    assert len(secret) >= 43  # 256 bits, URL-safe base64
    assert app.client_secret_hash == hash_token(rt.secrets.token_hash_key, secret)
    assert secret.encode() not in (app.client_secret_hash or b"")
    assert app.secret_rotated_at is not None


def test_authenticate_client_accepts_only_the_right_secret(db: Session, rt: Runtime) -> None:
    app, secret = register_app(db, rt, GOOD, owner_id=None, with_secret=True)
    assert secret is not None
    _other, other_secret = register_app(db, rt, GOOD, owner_id=None, with_secret=True)
    assert other_secret is not None

    assert authenticate_client(db, rt, app.client_id, secret) is app
    assert authenticate_client(db, rt, app.client_id, other_secret) is None
    assert authenticate_client(db, rt, app.client_id, secret[:-1]) is None
    assert authenticate_client(db, rt, app.client_id, "") is None
    assert authenticate_client(db, rt, app.client_id, secret + "x" * 200) is None
    assert authenticate_client(db, rt, "vrm_unknown", secret) is None
    assert authenticate_client(db, rt, "", secret) is None


def test_an_app_without_a_secret_never_authenticates(db: Session, rt: Runtime) -> None:
    app, _ = register_app(db, rt, GOOD, owner_id=None)
    assert authenticate_client(db, rt, app.client_id, "") is None
    assert authenticate_client(db, rt, app.client_id, "anything") is None


def test_rotating_the_secret_stops_the_old_one_at_once(db: Session, rt: Runtime) -> None:
    app, old = register_app(db, rt, GOOD, owner_id=None, with_secret=True)
    assert old is not None

    new = create_client_secret(db, rt, app)

    assert new != old
    assert authenticate_client(db, rt, app.client_id, old) is None
    assert authenticate_client(db, rt, app.client_id, new) is app


# -- lookups, updates, deletion -------------------------------------------------------------


def test_app_for_client_id(db: Session, rt: Runtime) -> None:
    app, _ = register_app(db, rt, GOOD, owner_id=None)
    assert app_for_client_id(db, app.client_id) is app
    assert app_for_client_id(db, "vrm_nope") is None
    assert app_for_client_id(db, "x" * 65) is None


def test_an_app_is_found_only_for_its_owner(db: Session, rt: Runtime) -> None:
    owner, stranger = account(db, rt), account(db, rt)
    app, _ = register_app(db, rt, GOOD, owner_id=owner.id)

    assert app_of_owner(db, owner.id, str(app.id)) is app
    for owner_id, app_id in [
        (stranger.id, str(app.id)),
        (owner.id, str(uuid.uuid4())),
        (owner.id, "not-a-uuid"),
    ]:
        with pytest.raises(NotFound):
            app_of_owner(db, owner_id, app_id)
    assert apps_of(db, owner.id) == [app]
    assert apps_of(db, stranger.id) == []


def test_update_replaces_metadata_but_keeps_client_id_and_secret(db: Session, rt: Runtime) -> None:
    app, secret = register_app(db, rt, GOOD, owner_id=None, with_secret=True)
    assert secret is not None
    client_id = app.client_id

    update_app(
        db,
        app,
        given(
            name="Acme Trail",
            redirect_uris=["https://trail.example/cb"],
            webhook_url="https://trail.example/hook",
            accepted_agreements=["no-tracking"],
        ),
    )

    db.expire_all()
    stored = db.get(VendorApp, app.id)
    assert stored is not None
    assert (stored.name, stored.redirect_uris, stored.webhook_url, stored.accepted_agreements) == (
        "Acme Trail",
        ["https://trail.example/cb"],
        "https://trail.example/hook",
        ["no-tracking"],
    )
    assert stored.client_id == client_id
    assert authenticate_client(db, rt, client_id, secret) is stored


def test_an_invalid_update_changes_nothing(db: Session, rt: Runtime) -> None:
    app, _ = register_app(db, rt, GOOD, owner_id=None)
    with pytest.raises(InvalidApp):
        update_app(db, app, given(name="Renamed", redirect_uris=["http://acme.example/cb"]))
    db.expire_all()
    stored = db.get(VendorApp, app.id)
    assert stored is not None
    assert stored.name == "Acme Outdoor"


def test_deleting_an_app_deletes_its_grants_and_tokens(db: Session, rt: Runtime) -> None:
    app, _ = register_app(db, rt, GOOD, owner_id=None)
    person = account(db, rt, Role.INDIVIDUAL)
    now = utcnow()
    grant = Grant(
        individual_id=person.id,
        app_id=app.id,
        fields=["email"],
        purpose=app.purpose,
        agreement_id="service-only",
        granted_at=now,
    )
    db.add(grant)
    db.flush()
    db.add(
        OAuthToken(
            app_id=app.id,
            grant_id=grant.id,
            family_id=uuid.uuid4(),
            access_token_hash=hash_token(rt.secrets.token_hash_key, "access"),
            scope="profile:email",
            issued_at=now,
            access_expires_at=now + timedelta(minutes=5),
        )
    )
    db.flush()
    app_id, client_id = app.id, app.client_id

    delete_app(db, app)

    db.expire_all()
    assert db.get(VendorApp, app_id) is None
    assert app_for_client_id(db, client_id) is None
    assert db.scalar(select(func.count()).select_from(Grant).where(Grant.app_id == app_id)) == 0
    assert (
        db.scalar(select(func.count()).select_from(OAuthToken).where(OAuthToken.app_id == app_id))
        == 0
    )


def test_repr_shows_no_secret(db: Session, rt: Runtime) -> None:
    app, secret = register_app(db, rt, GOOD, owner_id=None, with_secret=True)
    assert secret is not None
    assert secret not in repr(app)
