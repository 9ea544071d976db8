"""The ``vrm`` command line for operators."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import Engine, func, select

from vault.settings import Settings, SettingsError, get_settings

app = typer.Typer(
    help="VRM Vault: operate the service.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys and service secrets.", no_args_is_help=True)
users_app = typer.Typer(
    help="Accounts (ids and status only, never personal data).", no_args_is_help=True
)
auditors_app = typer.Typer(help="Privacy auditor accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(auditors_app, name="auditors")


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _runtime(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    from vault.runtime import Runtime

    try:
        return Runtime.from_settings(settings or get_settings())
    except SettingsError as exc:
        raise _fail(str(exc)) from exc


@contextmanager
def _service():  # type: ignore[no-untyped-def]
    """The runtime on a schema at head; its connections are closed when the command ends."""
    from vault.migrate import current, head

    rt = _runtime()
    try:
        if current(rt.engine) != head():
            raise _fail("the database schema is not up to date; run `vrm db upgrade` first.")
        yield rt
    finally:
        rt.engine.dispose()


@contextmanager
def _engine() -> Iterator[Engine]:
    from vault.db import make_engine

    engine = make_engine(get_settings().database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Start the web service."""
    import uvicorn

    settings = get_settings()
    with _service():
        pass
    uvicorn.run(
        "vault.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from vault.migrate import current, upgrade

    with _engine() as engine:
        upgrade(engine, revision)
        typer.echo(f"database at revision {current(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision."""
    from vault.migrate import current

    with _engine() as engine:
        typer.echo(current(engine) or "empty (no revision)")


@keys_app.command("init")
def keys_init() -> None:
    """Create any missing key (for production: keys are never created on start there)."""
    from vault.keys import KeyDirectory

    settings = get_settings()
    created = KeyDirectory(settings.key_dir).initialise(origin="operator")
    for path in created:
        typer.echo(f"created {path} (mode 0600)")
    if not created:
        typer.echo(f"every key already exists in {settings.key_dir}; nothing changed")


@keys_app.command("status")
def keys_status() -> None:
    """Show KEK versions and how many data keys each one wraps."""
    from vault.keystore import count_by_kek

    with _service() as rt, rt.sessions() as session:
        counts = count_by_kek(session)
    current = rt.keys.current_version()
    for kek_id in rt.keys.versions():
        marker = " (current)" if kek_id == current else ""
        typer.echo(f"{kek_id}{marker}: {counts.pop(kek_id, 0)} data keys")
    for kek_id, count in counts.items():
        typer.echo(f"{kek_id} (MISSING KEY FILE): {count} data keys")


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10000)] = 500,
    resume: Annotated[
        bool,
        typer.Option(help="Only finish rewrapping to the current KEK; do not add a new version."),
    ] = False,
) -> None:
    """Add a new KEK version and rewrap every data key under it.

    Each batch commits on its own, so an interrupted rotation is finished by running
    `vrm keys rotate --resume`; data stays readable throughout because old KEK versions
    keep unwrapping until no data key names them.
    """
    from vault.keys import KeyManagementError
    from vault.keystore import count_by_kek, rewrap_all

    with _service() as rt:
        if not resume:
            with rt.sessions() as session:
                pending = {
                    k: v for k, v in count_by_kek(session).items() if k != rt.keys.current_version()
                }
            if pending:
                raise _fail(
                    f"{sum(pending.values())} data keys are still wrapped by an older KEK "
                    f"({', '.join(sorted(pending))}); finish that rotation with "
                    "`vrm keys rotate --resume` first."
                )
            origin = "operator" if rt.settings.is_production else "development"
            kek_id = rt.keys.add_version(origin=origin)
            typer.echo(f"added key-encryption key {kek_id}")
        target = rt.keys.current_version()
        try:
            for progress in rewrap_all(rt.sessions, rt.keys, batch_size=batch_size):
                typer.echo(f"rewrapped {progress.done}/{progress.total} data keys under {target}")
        except KeyManagementError as exc:
            raise _fail(
                f"{exc} Rewrapped keys are kept; fix this and run `vrm keys rotate --resume`."
            ) from exc
    typer.echo("rotation complete")


@users_app.command("list")
def users_list(
    role: Annotated[str | None, typer.Option(help="individual or auditor")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
) -> None:
    """List accounts: id, role, status, created. No personal data."""
    from vault.accounts.models import Account

    with _service() as rt, rt.sessions() as session:
        query = select(Account.id, Account.role, Account.status, Account.created_at)
        if role:
            query = query.where(Account.role == role)
        rows = session.execute(query.order_by(Account.created_at).limit(limit)).all()
        total = session.scalar(select(func.count()).select_from(Account))
    typer.echo(f"{'id':36}  {'role':10}  {'status':8}  created")
    for account_id, acc_role, status, created in rows:
        typer.echo(f"{account_id!s:36}  {acc_role:10}  {status:8}  {created:%Y-%m-%d %H:%M}")
    typer.echo(f"{len(rows)} shown of {total}")


@auditors_app.command("add")
def auditors_add(
    email: Annotated[str, typer.Option(help="The auditor's sign-in address.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of prompting.")
    ] = False,
) -> None:
    """Create a privacy auditor account (auditors never sign themselves up)."""
    from vault.accounts.models import Role
    from vault.accounts.service import AccountService
    from vault.errors import VaultError

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _service() as rt, rt.sessions() as session, session.begin():
        try:
            account = AccountService(session, rt).sign_up(email, password, role=Role.AUDITOR)
        except VaultError as exc:
            raise _fail(exc.message) from exc
        account_id = account.id
    typer.echo(f"auditor account {account_id} created")


if __name__ == "__main__":
    app()
