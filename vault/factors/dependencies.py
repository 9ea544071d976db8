"""Step-up: a grave step (erasure, export, email change, turning a factor off) needs a second
factor proved in this session within the last ten minutes, once one is on."""

from __future__ import annotations

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from vault.accounts.dependencies import Viewer, ViewerDep
from vault.dependencies import DbDep, RuntimeDep
from vault.factors.errors import StepUpRequired
from vault.factors.service import FactorService
from vault.runtime import Runtime


def check_step_up(db: Session, rt: Runtime, viewer: Viewer, next_path: str = "") -> None:
    """Raise :class:`StepUpRequired` when the viewer has a factor on and this session has not
    proved one recently. Nobody signed in is left to the route's own sign-in check."""
    if viewer.account is None or viewer.session is None:
        return
    factors = FactorService(db, rt)
    if not factors.has_second_factor(viewer.account.id):
        return
    if not factors.checked_recently(viewer.session.id):
        raise StepUpRequired(next_path)


def require_step_up(request: Request, db: DbDep, rt: RuntimeDep, viewer: ViewerDep) -> None:
    path = request.url.path if request.method in ("GET", "HEAD") else ""
    check_step_up(db, rt, viewer, path)


StepUp = Depends(require_step_up)
