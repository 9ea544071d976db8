"""``vrm db``: the database schema (Alembic migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vault.backup import BackupRefused, backup_sqlite
from vault.migrate import current, upgrade
from vault.settings import get_settings
from vrm.cli.common import engine, fail

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


def backup_command(
    file: Annotated[Path, typer.Argument(help="Where to write the copy (a new file).")],
    force: Annotated[bool, typer.Option(help="Replace FILE if it exists.")] = False,
) -> None:
    """Copy the SQLite database to FILE while the service runs (one consistent moment).

    The key directory (VRM_KEY_DIR) is not in the database: back it up separately, and keep
    the two apart. PostgreSQL: use pg_dump (the command says how)."""
    try:
        written = backup_sqlite(get_settings().database_url, file, force=force)
    except BackupRefused as exc:
        raise fail(exc.message) from exc
    typer.echo(f"database copied to {written} (mode 0600); back up the key directory separately")
