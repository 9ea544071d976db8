"""Scheduled work of grants: ending those whose time is up (their vendors are told)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from consent.grants.service import GrantService
from vault.jobs import Job
from vault.runtime import Runtime


def _expire_grants(db: Session, rt: Runtime) -> str | None:
    expired = GrantService(db, rt).expire_due()
    return f"{expired} expired grants ended; their vendors will be told" if expired else None


EXPIRE_GRANTS = Job("end expired grants", _expire_grants)
