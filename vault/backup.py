"""``vrm backup``: a consistent copy of the SQLite database, taken while the service runs.

SQLite's online backup API copies every page under one read transaction: in WAL mode writers
carry on meanwhile, and the copy is the database as of one moment. The copy is written to a
temporary file beside the target (mode 0600) and renamed into place only when complete, so a
failed backup leaves no half-written file under the target's name. The key directory is not
in the database and is backed up separately; PostgreSQL is backed up with ``pg_dump``."""

from __future__ import annotations

import os
import shlex
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from vault.errors import VaultError


class BackupRefused(VaultError):
    code = "backup_refused"


def pg_dump_command(database_url: str, target: Path) -> str:
    """The ``pg_dump`` line for a PostgreSQL URL (the password left out: libpq reads it from
    ``PGPASSWORD`` or ``~/.pgpass``)."""
    url = make_url(database_url)
    uri = URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    ).render_as_string(hide_password=False)
    return f"pg_dump -Fc --file {shlex.quote(str(target))} {shlex.quote(uri)}"


def backup_sqlite(database_url: str, target: Path, *, force: bool = False) -> Path:
    """Copy the SQLite database at ``database_url`` to ``target`` and return its path.
    Refuses another database, a missing source and (unless ``force``) an existing target."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupRefused(
            "vrm backup copies a SQLite database; this one is PostgreSQL. Back it up with "
            f"`{pg_dump_command(database_url, target)}` and restore it with "
            f"`pg_restore --clean --if-exists --dbname DATABASE {shlex.quote(str(target))}`."
        )
    source = Path(url.database or "")
    if not url.database or url.database == ":memory:" or not source.is_file():
        raise BackupRefused(f"there is no SQLite database at {source}.")
    target = target.absolute()
    if target.exists() and not force:
        raise BackupRefused(f"{target} exists; choose another file or pass --force.")
    if not target.parent.is_dir():
        raise BackupRefused(f"the directory {target.parent} does not exist.")
    if target.resolve() == source.resolve():
        raise BackupRefused("the backup cannot replace the database it copies.")
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)  # mkstemp makes it 0600; SQLite writes into it
    temporary = Path(name)
    try:
        with (
            closing(sqlite3.connect(source, timeout=30)) as src,
            closing(sqlite3.connect(temporary)) as dst,
        ):
            src.backup(dst)
        with open(temporary, "rb") as copied:
            os.fsync(copied.fileno())
        os.chmod(temporary, 0o600)
        if force:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)  # fails if the target appeared meanwhile
            except FileExistsError:
                raise BackupRefused(
                    f"{target} exists; choose another file or pass --force."
                ) from None
    finally:
        temporary.unlink(missing_ok=True)
    return target
