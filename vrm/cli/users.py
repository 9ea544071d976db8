"""``vrm users`` and ``vrm auditors``: accounts (ids and status only, never personal data)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy import func, select

from vault.accounts.models import Account, Role
from vault.errors import VaultError
from vault.signup import sign_up
from vrm.cli.common import fail, service

app = typer.Typer(help="Accounts (ids and status only, never personal data).", no_args_is_help=True)
auditors_app = typer.Typer(help="Privacy auditor accounts.", no_args_is_help=True)


@app.command("list")
def users_list(
    role: Annotated[str | None, typer.Option(help="individual or auditor")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
) -> None:
    """List accounts: id, role, status, created. No personal data."""
    with service() as rt, rt.sessions() as session:
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
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with service() as rt, rt.sessions() as session, session.begin():
        try:
            account = sign_up(session, rt, email, password, role=Role.AUDITOR)
        except VaultError as exc:
            raise fail(exc.message) from exc
        account_id = account.id
    typer.echo(f"auditor account {account_id} created")
