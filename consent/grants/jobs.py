"""Scheduled work of grants: ending those whose time is up (their vendors are told), and
telling people a week ahead."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from consent.grants.models import Grant
from consent.grants.service import GrantService
from vault.base import utcnow
from vault.jobs import Job
from vault.mail.models import Notice
from vault.mail.notices import notify
from vault.runtime import Runtime


def _expire_grants(db: Session, rt: Runtime) -> str | None:
    expired = GrantService(db, rt).expire_due()
    return f"{expired} expired grants ended; their vendors will be told" if expired else None


EXPIRE_GRANTS = Job("end expired grants", _expire_grants)


EXPIRING_NOTICE_AHEAD = timedelta(days=7)


def _warn_expiring(db: Session, rt: Runtime) -> str | None:
    """Tell each person, once per expiry date, that a connection ends within a week."""
    now = utcnow()
    grants = db.execute(
        select(Grant.id, Grant.individual_id, Grant.expires_at)
        .where(
            Grant.revoked_at.is_(None),
            Grant.expires_at.is_not(None),
            Grant.expires_at > now,
            Grant.expires_at <= now + EXPIRING_NOTICE_AHEAD,
        )
        .limit(500)
    ).all()
    told = 0
    for grant_id, individual_id, expires_at in grants:
        ref = f"{grant_id}:{expires_at:%Y-%m-%d}"
        already = db.scalar(
            select(Notice.id).where(
                Notice.account_id == individual_id,
                Notice.kind == "connection_expiring",
                Notice.ref == ref,
            )
        )
        if already is None:
            notify(db, rt, individual_id, "connection_expiring", ref, now=now)
            told += 1
    return f"{told} people told a connection ends within a week" if told else None


WARN_EXPIRING_GRANTS = Job("tell of connections ending in a week", _warn_expiring)
