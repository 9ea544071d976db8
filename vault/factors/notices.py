"""Security notices: the one place a second-factor change is reported: a notice in the
portal and an email that cannot be switched off (``vault.mail.notices``), queued in the
transaction of the change."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from vault.mail.notices import queue_security_notice
from vault.runtime import Runtime


def notify_security_event(db: Session, rt: Runtime, account_id: uuid.UUID, kind: str) -> None:
    """``kind``: ``factor_added`` or ``factor_removed``."""
    queue_security_notice(db, rt, account_id, kind)
