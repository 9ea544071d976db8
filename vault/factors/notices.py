"""Security notices: the one place a second-factor change is reported.

For now it records the event in the log (its kind and the account id only, never personal
data); the email channel sends the notice from here."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

log = logging.getLogger("vrm.security")


def notify_security_event(
    db: Session, account_id: uuid.UUID, kind: str, *, detail: str = ""
) -> None:
    """``kind``: ``factor_added`` or ``factor_removed``; ``detail`` names the factor type."""
    del db  # the email queue will write in this transaction
    log.info("security event %s (%s) for account %s", kind, detail, account_id)
