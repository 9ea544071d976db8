"""``vrm export``, ``vrm import``, ``vrm erase``: acting on an individual's request."""

from __future__ import annotations

import os
import sys
import uuid as _uuid
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from vault.accounts.models import Account, Role
from vault.accounts.service import email_index
from vault.errors import VaultError
from vault.portability import erasure, export, importer
from vault.signup import sign_up
from vrm.cli.common import fail, service
from vrm.wiring import portability


def _individual(session, rt, email: str | None, account_id: str | None):  # type: ignore[no-untyped-def]
    """The individual named by exactly one of --email and --account-id."""
    if (email is None) == (account_id is None):
        raise fail("name the individual with exactly one of --email and --account-id")
    if email is not None:
        account = session.scalars(
            select(Account).where(Account.email_index == email_index(rt, email))
        ).one_or_none()
    else:
        try:
            account = session.get(Account, _uuid.UUID(str(account_id)))
        except ValueError:
            account = None
    if account is None or account.role != Role.INDIVIDUAL:
        raise fail("there is no individual with that email address or id")
    return account


def export_command(
    output: Annotated[Path, typer.Argument(help="Where to write the ZIP archive.")],
    email: Annotated[str | None, typer.Option(help="The individual's sign-in address.")] = None,
    account_id: Annotated[str | None, typer.Option(help="Or the account id.")] = None,
) -> None:
    """Export everything about one individual (on their request) as the portal would."""
    with service() as rt:
        parts = portability(rt)
        with rt.sessions() as session, session.begin():
            owner_id = _individual(session, rt, email, account_id).id
            export.prepare(session, rt, parts, owner_id)
        written = 0
        try:
            # Personal data in clear: readable by the operator's user only.
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise fail(f"{output} exists; choose another file") from exc
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in export.stream(rt, parts, owner_id):
                    out.write(chunk)
                    written += len(chunk)
        except BaseException as exc:
            output.unlink(missing_ok=True)  # no half archive left behind
            if isinstance(exc, OSError):
                raise fail(f"cannot write {output}: {exc.strerror}") from exc
            raise
    typer.echo(f"exported account {owner_id} to {output} ({written:,} bytes)")


def import_command(
    archive: Annotated[Path, typer.Argument(help="An export archive from another vault.")],
    email: Annotated[str, typer.Option(help="The new account's sign-in address.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of prompting.")
    ] = False,
) -> None:
    """Create a new individual from another vault's export (verified before anything is
    written; grants do not transfer)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with service() as rt:
        try:
            size = archive.stat().st_size
        except OSError as exc:
            raise fail(f"cannot read {archive}: {exc.strerror}") from exc
        if size > rt.settings.max_import_bytes:
            raise fail(f"{archive} is larger than VRM_MAX_IMPORT_BYTES")
        parts = portability(rt)
        try:
            with archive.open("rb") as handle:
                verified = importer.verify(handle, parts, rt.settings.import_trusted_keys)
            with rt.sessions() as session, session.begin():
                account = sign_up(session, rt, email, password)
                context = importer.import_into(session, rt, parts, account, verified)
                account_id = account.id
        except OSError as exc:
            raise fail(f"cannot read {archive}: {exc.strerror}") from exc
        except VaultError as exc:
            raise fail(exc.message) from exc
    got = ", ".join(f"{k} {v}" for k, v in sorted(context.imported.items())) or "nothing"
    typer.echo(f"account {account_id} created from {verified.source}: {got}")
    for note in context.notes:
        typer.echo(f"note: {note}")


def erase_command(
    email: Annotated[str | None, typer.Option(help="The individual's sign-in address.")] = None,
    account_id: Annotated[str | None, typer.Option(help="Or the account id.")] = None,
    receipt: Annotated[
        Path | None, typer.Option(help="Write the signed erasure receipt to this file.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase everything about one individual (on their request), as the portal's "Delete
    everything" does, and print the signed erasure receipt."""
    with service() as rt:
        with rt.sessions() as session:
            owner_id = _individual(session, rt, email, account_id).id
        if not yes:
            typer.confirm(f"Erase account {owner_id} and everything about it?", abort=True)
        # The receipt exists once: make sure it can be written before erasing anything.
        handle = None
        if receipt is not None:
            try:
                handle = receipt.open("x", encoding="utf-8")
            except OSError as exc:
                raise fail(f"cannot write the receipt to {receipt}: {exc.strerror}") from exc
        try:
            with rt.sessions() as session, session.begin():
                done = erasure.erase(session, rt, portability(rt), owner_id)
        except VaultError as exc:  # erased meanwhile (in the portal, say)
            if handle is not None:
                handle.close()
                receipt.unlink(missing_ok=True)  # type: ignore[union-attr]
            raise fail(exc.message) from exc
        erasure.compact(rt)
    typer.echo(done.receipt)
    if handle is not None:
        with handle:
            handle.write(done.receipt + "\n")
    deleted = ", ".join(f"{k} {v}" for k, v in done.payload["deleted"].items())
    typer.echo(f"erased account {owner_id}: {deleted}")
    typer.echo(
        f"vendors asked to delete their copies: {len(done.payload['vendors_asked_to_delete'])}"
    )
