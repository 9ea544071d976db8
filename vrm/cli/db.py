"""``vrm db``: the database schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

from vault.migrate import current, upgrade
from vrm.cli.common import engine

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    with engine() as db_engine:
        upgrade(db_engine, revision)
        typer.echo(f"database at revision {current(db_engine)}")


@app.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    with engine() as db_engine:
        typer.echo(current(db_engine) or "empty (no revision)")
