"""Each app's Standard Webhooks signing secret (derived, never stored) and the signature the vendor
verifies.

The secret (``whsec_...``) is HMAC-SHA256 of the webhook master key (``webhook.json`` in the key
directory) over the app id and its secret version; rotating it increments the version.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import update
from sqlalchemy.orm import Session

from consent.vendors.models import VendorApp
from vault.base import utcnow
from vault.errors import VerificationFailed
from vault.runtime import Runtime

DEFAULT_TOLERANCE: Final = 300
"""Seconds a receiver accepts between ``webhook-timestamp`` and its own clock."""


SECRET_PREFIX: Final = "whsec_"  # noqa: S105  (the format's prefix, not a secret)


SIGNATURE_VERSION: Final = "v1"


_DERIVATION_LABEL: Final = b"webhook\x00"


def derive_webhook_secret(master_key: bytes, app_id: uuid.UUID, version: int) -> str:
    """The Standard Webhooks secret of one app at one secret version."""
    material = hmac.new(
        master_key,
        _DERIVATION_LABEL + app_id.bytes + version.to_bytes(4, "big"),
        hashlib.sha256,
    ).digest()
    return SECRET_PREFIX + base64.b64encode(material).decode()


def webhook_secret_for(rt: Runtime, app: VendorApp) -> str:
    """The secret the vendor verifies our signatures with (shown on its console page)."""
    return derive_webhook_secret(rt.secrets.webhook_key, app.id, app.webhook_secret_version)


def rotate_webhook_secret(db: Session, app: VendorApp) -> int:
    """Replace the app's signing secret (flushed, not committed); returns the new version.

    Messages not yet delivered are signed with the new secret from then on.
    """
    db.execute(
        update(VendorApp)
        .where(VendorApp.id == app.id)
        .values(webhook_secret_version=VendorApp.webhook_secret_version + 1)
    )
    db.refresh(app, ["webhook_secret_version"])
    return app.webhook_secret_version


class WebhookVerificationError(VerificationFailed):
    """A webhook failed verification: missing header, stale timestamp or wrong signature."""


def _secret_bytes(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is base64 after its prefix") from exc


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of id.timestamp.body."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What a vendor runs on receipt: check the headers and signature, return the payload.

    Raises :class:`WebhookVerificationError` when a header is missing, the timestamp is more
    than ``tolerance`` seconds away from ``now``, or no ``v1`` signature matches.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        timestamp_text = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = (now or utcnow()).timestamp()
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, message_id, timestamp, raw).encode()
    for candidate in signatures.split():
        if candidate.startswith(f"{SIGNATURE_VERSION},") and hmac.compare_digest(
            candidate.encode(), expected
        ):
            try:
                payload: dict[str, Any] = json.loads(raw)
            except ValueError:
                raise WebhookVerificationError("the body is not JSON") from None
            return payload
    raise WebhookVerificationError("no matching signature")
