"""Typed dependencies every router uses: the runtime and the request's unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from vault.db import unit_of_work
from vault.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_db(request: Request) -> Iterator[Session]:
    """The request is the unit of work: commit on success, roll back on error. While it is
    open, the session is also ``request.state.db`` (the page layout reads its counts with it)."""

    def track(session: Session | None) -> None:
        request.state.db = session

    yield from unit_of_work(get_runtime(request).sessions, track)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
DbDep = Annotated[Session, Depends(get_db, scope="function")]
