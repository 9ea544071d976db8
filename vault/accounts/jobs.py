"""Scheduled work of accounts: forgetting sign-in failure counts whose window ended."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vault.accounts.service import AccountService
from vault.jobs import Job
from vault.runtime import Runtime


def _purge_throttle(db: Session, rt: Runtime) -> None:
    AccountService(db, rt).purge_throttle()


PURGE_THROTTLE = Job("purge sign-in throttle", _purge_throttle)
