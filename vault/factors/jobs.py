"""Scheduled work of second factors: forgetting expired sign-in steps and passkey challenges."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vault.factors.service import FactorService
from vault.jobs import Job
from vault.runtime import Runtime


def _purge(db: Session, rt: Runtime) -> None:
    FactorService(db, rt).purge_challenges()


PURGE_CHALLENGES = Job("purge second-factor challenges", _purge)
