"""``vrm users`` and ``vrm auditors``: accounts (ids and status only, never personal data)."""

from __future__ import annotations

import sys
import uuid
from typing import Annotated

import typer
from sqlalchemy import func, select

from vault.accounts.models import Account, Role
from vault.accounts.tokens import (
    MAX_DAYS,
    auditor_by_email,
    issue_token,
    revoke_token,
    token_state,
    tokens_of,
)
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


@auditors_app.command("token")
def auditors_token(
    email: Annotated[str, typer.Option(help="The auditor's sign-in address.")],
    label: Annotated[str, typer.Option(help="What the token is for (shown in listings).")] = "api",
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS, help="How long it lives.")] = 90,
) -> None:
    """Make an API token for an auditor's scripts (audit API and log tiles) and print it once.

    Use it as `Authorization: Bearer <token>`; only its keyed hash is stored.
    """
    with service() as rt, rt.sessions() as session, session.begin():
        try:
            issued = issue_token(
                session, rt, auditor_by_email(session, rt, email), label=label, days=days
            )
        except VaultError as exc:
            raise fail(exc.message) from exc
        token_id, expires = issued.row.id, issued.row.expires_at
    typer.echo(issued.token)
    typer.secho(
        f"token {token_id} expires {expires:%Y-%m-%d %H:%M} UTC; it is shown only this once",
        err=True,
    )


@auditors_app.command("tokens")
def auditors_tokens(
    email: Annotated[str, typer.Option(help="The auditor's sign-in address.")],
) -> None:
    """List an auditor's API tokens: id, label, state, created, expires, last used."""
    with service() as rt, rt.sessions() as session:
        try:
            rows = tokens_of(session, auditor_by_email(session, rt, email).id)
        except VaultError as exc:
            raise fail(exc.message) from exc
    typer.echo(f"{'id':36}  {'label':20}  {'state':7}  {'created':16}  {'expires':16}  last used")
    for row in rows:
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        typer.echo(
            f"{row.id!s:36}  {row.label[:20]:20}  {token_state(row):7}  "
            f"{row.created_at:%Y-%m-%d %H:%M}  {row.expires_at:%Y-%m-%d %H:%M}  {used}"
        )
    typer.echo(f"{len(rows)} tokens")


@auditors_app.command("revoke-token")
def auditors_revoke_token(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `vrm auditors tokens`).")],
) -> None:
    """Revoke an auditor's API token: refused from the next request on."""
    try:
        parsed = uuid.UUID(token_id)
    except ValueError as exc:
        raise fail(f"{token_id!r} is not a token id (a UUID from `vrm auditors tokens`)") from exc
    with service() as rt, rt.sessions() as session, session.begin():
        try:
            revoked = revoke_token(session, parsed)
        except VaultError as exc:
            raise fail(exc.message) from exc
    typer.echo(f"token {parsed} revoked" if revoked else f"token {parsed} was already revoked")
