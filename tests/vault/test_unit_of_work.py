"""The request is the unit of work: an error leaves nothing half-written."""

import datetime
import os

from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from vault.accounts.models import SignInThrottle
from vault.dependencies import DbDep
from vault.errors import InvalidInput
from vault.runtime import Runtime
from vrm.app import create_app


def _count(rt: Runtime) -> int:
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(SignInThrottle)) or 0


def test_error_after_a_flushed_write_rolls_the_write_back(base_runtime: Runtime) -> None:
    app = create_app(runtime=base_runtime)
    router = APIRouter()

    @router.post("/api/v1/half-written")
    def half_written(db: DbDep) -> dict[str, str]:
        db.add(
            SignInThrottle(
                bucket=os.urandom(32),
                failures=1,
                window_started_at=datetime.datetime.now(datetime.UTC),
            )
        )
        db.flush()
        raise InvalidInput("refused after writing")

    app.include_router(router)
    before = _count(base_runtime)
    response = TestClient(app).post("/api/v1/half-written")
    assert response.status_code == 400
    assert response.json()["detail"] == "refused after writing"
    assert _count(base_runtime) == before
