"""Event ids of the intent page's live offers (``web/live.py``): the moment of the newest offer
change sent and its offer id, opaque to the browser, which sends the last one back as
``Last-Event-ID`` when it reconnects."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, timedelta

OVERLAP = timedelta(seconds=5)
"""How far before the last event id a resumed stream looks again: a change whose transaction
committed after a later change was sent (so its ``updated_at`` is older) is still seen."""


def encode_event_id(moment: datetime, offer_id: uuid.UUID) -> str:
    raw = f"{moment.isoformat()}|{offer_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_event_id(raw: str | None) -> datetime | None:
    """The moment in an event id, or None for an absent or garbled one (start over)."""
    if not raw or len(raw) > 200:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        moment = datetime.fromisoformat(text.partition("|")[0])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return moment if moment.tzinfo is not None else None
