"""What every command shares: failing with a message, the runtime, the schema check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine

from vault.db import make_engine
from vault.migrate import current, head
from vault.runtime import Runtime
from vault.settings import Settings, SettingsError, get_settings


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` to stderr; raise what this returns to exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def runtime(settings: Settings | None = None) -> Runtime:
    try:
        return Runtime.from_settings(settings or get_settings())
    except SettingsError as exc:
        raise fail(str(exc)) from exc


@contextmanager
def service() -> Iterator[Runtime]:
    """The runtime on a schema at head; its connections are closed when the command ends."""
    rt = runtime()
    try:
        if current(rt.engine) != head():
            raise fail("the database schema is not up to date; run `vrm db upgrade` first.")
        yield rt
    finally:
        rt.engine.dispose()


@contextmanager
def engine() -> Iterator[Engine]:
    """An engine on the configured database (whatever its schema), disposed at the end."""
    made = make_engine(get_settings().database_url)
    try:
        yield made
    finally:
        made.dispose()
