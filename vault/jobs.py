"""Scheduled work: each package declares its own jobs; the composition root lists them and
``vrm worker`` runs them, each in a transaction of its own with its own error handling."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from vault.errors import VaultError
from vault.runtime import Runtime


class JobFailed(VaultError):
    """A job could not do its work; the message is safe to print (no personal data)."""

    code = "job_failed"
    status_code = 500


@dataclass(frozen=True, slots=True)
class Job:
    """One kind of scheduled work.

    ``run`` gets a session inside its own transaction (committed when it returns, rolled back
    when it raises) and returns a line for the worker to print, or None when there was
    nothing to do. It raises :class:`JobFailed` for a failure an operator must see.
    """

    name: str
    run: Callable[[Session, Runtime], str | None]
