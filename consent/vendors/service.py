"""Vendors' apps (OAuth clients): registration, validation, client secrets, authentication.

Rules every app obeys, whichever way it was registered (developer console, ``vrm vendors add``
or RFC 7591 dynamic registration):

- redirect URIs are matched exactly, so they are stored exactly as given (1 to 10 of them);
  each is an absolute ``https`` URI without a fragment, or ``http`` on a loopback host
  (``127.0.0.1``, ``localhost``, ``[::1]``) for development; the webhook URL follows the same
  rule; the homepage and privacy policy must be ``https``;
- the vendor accepts a non-empty subset of the standard agreements in the terms roster;
- the client secret is 256 random bits, shown once and stored only as a keyed hash; rotating it
  replaces the hash, so the old secret stops working at once.
"""

from __future__ import annotations

import hmac
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.ledger.store import record
from consent.scopes import VENDOR_SCOPES
from consent.terms.catalogue import AGREEMENTS
from consent.vendors.models import VendorApp
from consent.vendors.urls import internal_address_problem
from vault.base import utcnow
from vault.crypto import hash_token, new_token
from vault.errors import InvalidInput, NotFound
from vault.runtime import Runtime

CLIENT_ID_PREFIX = "vrm_"
MAX_NAME = 100
MAX_URL = 500
MAX_PURPOSE = 500
MAX_REDIRECT_URIS = 10
MAX_SECRET = 128
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
DEFAULT_AUTH_METHOD = AUTH_METHODS[0]
REGISTERED_VIA = ("console", "cli", "dynamic")

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
# Printable ASCII without space, quote, angle brackets, backslash, caret, backtick, braces, pipe
# (RFC 3986 characters plus "%"): anything else must be percent-encoded.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def agreements() -> dict[str, str]:
    """The standard agreements a vendor may accept: id -> title, in roster order."""
    return {agreement.id: agreement.title for agreement in AGREEMENTS.values()}


class InvalidApp(InvalidInput):
    """App metadata that breaks a rule; ``errors`` maps every faulty field to its message."""

    code = "invalid_app"

    def __init__(self, errors: dict[str, str]) -> None:
        first = next(iter(errors))
        super().__init__(errors[first], field=first)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class AppInput:
    """What a vendor submits for an app, before validation."""

    name: str
    homepage_url: str
    privacy_policy_url: str
    redirect_uris: Sequence[str]
    purpose: str
    accepted_agreements: Sequence[str]
    webhook_url: str | None = None
    vendor_scopes: Sequence[str] = ()
    token_endpoint_auth_method: str = DEFAULT_AUTH_METHOD


@dataclass(frozen=True, slots=True)
class CleanApp:
    name: str
    homepage_url: str
    privacy_policy_url: str
    redirect_uris: list[str]
    purpose: str
    accepted_agreements: list[str]
    webhook_url: str | None
    vendor_scopes: list[str] = field(default_factory=list)
    token_endpoint_auth_method: str = DEFAULT_AUTH_METHOD


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    """A new app and its client secret (the only time the secret exists in clear)."""

    app: VendorApp
    client_secret: str

    def __repr__(self) -> str:
        return f"RegisteredApp(app={self.app!r})"


# -- validation ---------------------------------------------------------------------------


def _text(value: object, label: str, limit: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{label} must be text.")
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").strip()
    if not multiline:
        text = " ".join(text.split())
    if not text:
        raise ValueError(f"{label} cannot be empty.")
    if len(text) > limit:
        raise ValueError(f"{label} can be at most {limit} characters.")
    if _CONTROL.search(text) or (not multiline and "\n" in text):
        raise ValueError(f"{label} contains characters that are not allowed.")
    return text


def check_url(value: object, label: str, *, loopback_http: bool) -> str:
    """An absolute https URL (or loopback http when allowed), returned exactly as given."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{label} is required.")
    if len(value) > MAX_URL:
        raise ValueError(f"{label} can be at most {MAX_URL} characters.")
    if not _URI_CHARS.fullmatch(value):
        raise ValueError(
            f"{label} contains spaces or characters that must be percent-encoded: {value[:80]}"
        )
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"{label} is not a valid URL: {value[:80]}") from None
    if parts.scheme not in ("https", "http") or not parts.netloc or not hostname:
        raise ValueError(f"{label} must be an absolute https:// URL: {value[:80]}")
    if "#" in value:
        raise ValueError(f"{label} must not contain a fragment (#...): {value[:80]}")
    if "@" in parts.netloc:
        raise ValueError(f"{label} must not contain a user name or password: {value[:80]}")
    if parts.scheme == "http":
        if not loopback_http:
            raise ValueError(f"{label} must use https: {value[:80]}")
        if hostname not in LOOPBACK_HOSTS:
            raise ValueError(
                f"{label} must use https; plain http is allowed only on 127.0.0.1, localhost "
                f"or [::1] for development: {value[:80]}"
            )
    return value


def _redirect_uris(values: Iterable[object]) -> list[str]:
    uris: list[str] = []
    for value in values:
        uri = value.strip() if isinstance(value, str) else value
        if uri == "":
            continue
        checked = check_url(uri, "Redirect URI", loopback_http=True)
        if checked not in uris:
            uris.append(checked)
    if not uris:
        raise ValueError("Enter at least one redirect URI.")
    if len(uris) > MAX_REDIRECT_URIS:
        raise ValueError(f"Register at most {MAX_REDIRECT_URIS} redirect URIs.")
    return uris


def _agreements(values: Iterable[object]) -> list[str]:
    roster = agreements()
    chosen = {v for v in values if isinstance(v, str)}
    unknown = sorted(v for v in chosen if v not in roster)
    if unknown:
        raise ValueError(
            f"Unknown agreement: {', '.join(unknown)[:200]}. Choose from: {', '.join(roster)}."
        )
    if not chosen:
        raise ValueError("Accept at least one of the standard agreements.")
    return [agreement_id for agreement_id in roster if agreement_id in chosen]


def _scopes(values: Iterable[object]) -> list[str]:
    chosen = {v for v in values if isinstance(v, str)}
    unknown = sorted(v for v in chosen if v not in VENDOR_SCOPES)
    if unknown:
        raise ValueError(
            f"Unknown vendor scope: {', '.join(unknown)[:200]}. "
            f"Choose from: {', '.join(VENDOR_SCOPES)}."
        )
    return [scope for scope in VENDOR_SCOPES if scope in chosen]


def _webhook_url(value: str) -> str:
    url = check_url(value, "Webhook URL", loopback_http=True)

    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        problem = internal_address_problem(parts.hostname, resolve=False)
        if problem:
            raise InvalidInput(f"Webhook URL: {problem}.", field="webhook_url")
    return url


def validate_app(data: AppInput) -> CleanApp:
    """Check every field; raise ``InvalidApp`` naming each faulty one."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    webhook = data.webhook_url.strip() if isinstance(data.webhook_url, str) else None
    checks: list[tuple[str, Any]] = [
        ("name", lambda: _text(data.name, "App name", MAX_NAME)),
        (
            "homepage_url",
            lambda: check_url(_strip(data.homepage_url), "Homepage", loopback_http=False),
        ),
        (
            "privacy_policy_url",
            lambda: check_url(
                _strip(data.privacy_policy_url), "Privacy policy URL", loopback_http=False
            ),
        ),
        ("redirect_uris", lambda: _redirect_uris(data.redirect_uris)),
        ("purpose", lambda: _text(data.purpose, "Purpose", MAX_PURPOSE, multiline=True)),
        (
            "webhook_url",
            lambda: _webhook_url(webhook) if webhook else None,
        ),
        ("accepted_agreements", lambda: _agreements(data.accepted_agreements)),
        ("vendor_scopes", lambda: _scopes(data.vendor_scopes)),
    ]
    for name, check in checks:
        try:
            clean[name] = check()
        except ValueError as exc:
            errors[name] = str(exc)
    if data.token_endpoint_auth_method not in AUTH_METHODS:
        errors["token_endpoint_auth_method"] = (
            f"The token endpoint authentication method must be one of {', '.join(AUTH_METHODS)}."
        )
    if errors:
        raise InvalidApp(errors)
    return CleanApp(**clean, token_endpoint_auth_method=data.token_endpoint_auth_method)


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


# -- apps ---------------------------------------------------------------------------------


def new_client_id() -> str:
    """``vrm_`` and 20 URL-safe characters (120 random bits)."""
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(15)


def register_app(
    db: Session,
    rt: Runtime,
    data: AppInput,
    *,
    owner_id: uuid.UUID | None,
    registered_via: str = "console",
    with_secret: bool = False,
) -> tuple[VendorApp, str | None]:
    """Validate and store a new app; with ``with_secret``, also its first client secret."""
    if registered_via not in REGISTERED_VIA:
        raise ValueError(f"unknown registration channel {registered_via!r}")
    clean = validate_app(data)
    app = VendorApp(
        id=uuid.uuid4(),
        owner_id=owner_id,
        client_id=new_client_id(),
        name=clean.name,
        homepage_url=clean.homepage_url,
        privacy_policy_url=clean.privacy_policy_url,
        redirect_uris=clean.redirect_uris,
        purpose=clean.purpose,
        webhook_url=clean.webhook_url,
        webhook_secret_version=1,
        accepted_agreements=clean.accepted_agreements,
        vendor_scopes=clean.vendor_scopes,
        token_endpoint_auth_method=clean.token_endpoint_auth_method,
        registered_via=registered_via,
    )
    db.add(app)
    secret = create_client_secret(db, rt, app) if with_secret else None
    db.flush()
    record_vendor_event(db, app, "vendor.registered")
    return app, secret


def record_vendor_event(db: Session, app: VendorApp, event_type: str) -> None:
    """Vendor app events go into the consent ledger (no subject: they concern no individual)."""

    record(
        db,
        {
            "event_type": event_type,
            "vendor_id": str(app.id),
            "subject": None,
            "fields": [],
            "purpose": app.purpose,
            "agreement_id": None,
            "accepted_agreements": list(app.accepted_agreements),
            "redirect_uris": list(app.redirect_uris),
            "consent_text_hash": None,
        },
    )


def update_app(db: Session, app: VendorApp, data: AppInput) -> VendorApp:
    """Replace the app's metadata; nothing changes unless every field is valid."""
    clean = validate_app(data)
    app.name = clean.name
    app.homepage_url = clean.homepage_url
    app.privacy_policy_url = clean.privacy_policy_url
    app.redirect_uris = clean.redirect_uris
    app.purpose = clean.purpose
    app.webhook_url = clean.webhook_url
    app.accepted_agreements = clean.accepted_agreements
    app.vendor_scopes = clean.vendor_scopes
    app.token_endpoint_auth_method = clean.token_endpoint_auth_method
    db.flush()
    record_vendor_event(db, app, "vendor.changed")
    return app


def create_client_secret(db: Session, rt: Runtime, app: VendorApp) -> str:
    """A new random secret for the app (replacing any old one); only its keyed hash is kept."""
    secret = new_token(32)
    app.client_secret_hash = hash_token(rt.secrets.token_hash_key, secret)
    app.secret_rotated_at = utcnow()
    db.flush()
    return secret


def apps_of(db: Session, owner_id: uuid.UUID) -> list[VendorApp]:
    return list(
        db.scalars(
            select(VendorApp)
            .where(VendorApp.owner_id == owner_id)
            .order_by(VendorApp.created_at, VendorApp.name)
        )
    )


def app_of_owner(db: Session, owner_id: uuid.UUID, app_id: str | uuid.UUID) -> VendorApp:
    """The owner's app, or ``NotFound`` (also for another vendor's app: same answer)."""
    try:
        key = app_id if isinstance(app_id, uuid.UUID) else uuid.UUID(app_id)
    except ValueError:
        raise NotFound("There is no such app.") from None
    app = db.get(VendorApp, key)
    if app is None or app.owner_id != owner_id:
        raise NotFound("There is no such app.")
    return app


def app_for_client_id(db: Session, client_id: str) -> VendorApp | None:
    """The app with this client id; None for any other string, including one that is no
    client id at all (RFC 6749 appendix A.1: printable ASCII; PostgreSQL refuses a NUL)."""
    if (
        not client_id
        or len(client_id) > 64
        or not (client_id.isascii() and client_id.isprintable())
    ):
        return None
    return db.scalars(select(VendorApp).where(VendorApp.client_id == client_id)).one_or_none()


def authenticate_client(db: Session, rt: Runtime, client_id: str, secret: str) -> VendorApp | None:
    """The app whose client id and secret these are, or None (compared in constant time)."""
    if not isinstance(secret, str) or len(secret) > MAX_SECRET:
        return None
    app = app_for_client_id(db, client_id)
    presented = hash_token(rt.secrets.token_hash_key, secret)
    stored = app.client_secret_hash if app is not None else None
    # Compare against something even when there is nothing to compare with.
    ok = hmac.compare_digest(presented, stored or bytes(32))
    if app is None or stored is None or not secret or not ok:
        return None
    return app
