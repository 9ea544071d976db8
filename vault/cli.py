"""The ``vrm`` command line for operators."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import Engine, func, select

from vault.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from vault.runtime import Runtime

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
vendors_app = typer.Typer(help="Vendors' apps (OAuth clients).", no_args_is_help=True)
app.add_typer(vendors_app, name="vendors")
ledger_app = typer.Typer(
    help="The consent ledger: checkpoints, export, offline verification.", no_args_is_help=True
)
app.add_typer(ledger_app, name="ledger")


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
    from consent.ledger.service import KEY as LEDGER_KEY
    from consent.oidc import KEY as OIDC_KEY
    from vault.keys import KeyDirectory

    settings = get_settings()
    created = KeyDirectory(settings.key_dir).initialise(origin="operator")
    for key in (OIDC_KEY, LEDGER_KEY):
        if key.ensure(settings.key_dir, "operator"):
            created.append(settings.key_dir / key.filename)
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


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option(help="Deliver what is due now, then exit (instead of looping).")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, max=3600, help="Seconds between looks at the outbox.")
    ] = 5.0,
) -> None:
    """Deliver signed webhooks from the outbox, retrying failures with backoff.

    Runs until SIGINT or SIGTERM; the message being delivered is finished first. Several
    workers may run at once: each message is claimed by exactly one of them.
    """
    import asyncio
    import signal
    import threading

    from sqlalchemy.exc import OperationalError

    from consent.grants import GrantService
    from consent.webhooks import DeliveryOutcome, Dispatcher, deliver_due

    def sweep(rt: Runtime) -> None:
        from consent.ledger.service import InconsistentLedger, create_checkpoint
        from intents.service import IntentService

        with rt.sessions() as session, session.begin():
            expired = GrantService(session, rt).expire_due()
        if expired:
            typer.echo(f"{expired} expired grants ended; their vendors will be told")
        with rt.sessions() as session, session.begin():
            closed = IntentService(session, rt).expire_due()
        if closed:
            typer.echo(f"{closed} intents reached their closing date; their offers lapsed")
        from vault.accounts.service import AccountService
        from vault.portability.erasure import compact

        with rt.sessions() as session, session.begin():
            AccountService(session, rt).purge_throttle()
        # SQLite: keep the write-ahead log short, so erased rows' old pages do not linger.
        compact(rt, attempts=1)
        try:
            with rt.sessions() as session, session.begin():
                signed = create_checkpoint(session, rt)
                if signed is not None:
                    typer.echo(f"ledger checkpoint signed at size {signed.size}")
        except InconsistentLedger as exc:
            # Keep delivering webhooks and ending grants; say it on every pass until fixed.
            typer.secho(f"error: {exc}: the stored ledger was altered", fg="red", err=True)

    def report(outcome: DeliveryOutcome) -> None:
        status = f"HTTP {outcome.status_code}" if outcome.status_code else "no response"
        line = f"{outcome.message_id} {outcome.client_id} {outcome.event_type} {status}"
        line += f" attempt {outcome.attempt}: {outcome.result}"
        if outcome.next_attempt_at is not None:
            line += f", next at {outcome.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"
        if outcome.error and outcome.status_code is None:
            line += f" ({outcome.error})"
        typer.echo(line)

    stop = threading.Event()
    with _service() as rt:
        if once:
            sweep(rt)
            while deliver_due(rt.sessions, rt, on_outcome=report):
                pass
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        loop = asyncio.new_event_loop()
        stopped = asyncio.Event()

        def request_stop(signum: int, _frame: object) -> None:
            typer.echo(f"received {signal.Signals(signum).name}; stopping after this delivery")
            stop.set()
            loop.call_soon_threadsafe(stopped.set)

        def sweeps() -> None:
            # Expiry, closing, checkpoints and compaction on their own thread, so that no
            # endpoint, however slow, holds them up.
            while not stop.is_set():
                try:
                    sweep(rt)
                except OperationalError as exc:
                    typer.echo(f"database unavailable ({type(exc.orig).__name__}); retrying")
                except Exception as exc:  # keep delivering; say it on every pass until fixed
                    typer.secho(f"error: a scheduled job failed ({type(exc).__name__})", err=True)
                stop.wait(interval)

        for sig in previous:
            signal.signal(sig, request_stop)
        typer.echo(f"webhook worker started; looking at the outbox every {interval:g} s")
        sweeper = threading.Thread(target=sweeps, name="vrm-sweeps")
        sweeper.start()
        try:
            dispatcher = Dispatcher(
                rt.sessions,
                rt,
                on_outcome=report,
                should_stop=stop.is_set,
                on_problem=typer.echo,
            )
            loop.run_until_complete(dispatcher.run(interval, stopped))
        finally:
            stop.set()
            sweeper.join()
            loop.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    typer.echo("webhook worker stopped")


@vendors_app.command("add")
def vendors_add(
    name: Annotated[str, typer.Option(help="The app's name, shown to individuals.")],
    redirect_uri: Annotated[
        list[str], typer.Option(help="A redirect URI (repeatable; https, or loopback http).")
    ],
    homepage: Annotated[str, typer.Option(help="The vendor's homepage (https).")],
    privacy_policy: Annotated[str, typer.Option(help="The privacy policy URL (https).")],
    purpose: Annotated[str, typer.Option(help="Why the app wants personal data.")],
    agreement: Annotated[
        list[str], typer.Option(help="A standard agreement id the vendor accepts (repeatable).")
    ],
    webhook_url: Annotated[
        str | None, typer.Option(help="Where signed events are delivered.")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A vendor capability: intents:read or offers:write (repeatable)."),
    ] = None,
    auth_method: Annotated[
        str, typer.Option(help="client_secret_basic or client_secret_post.")
    ] = "client_secret_basic",
) -> None:
    """Register an app for a vendor and print its client id and secret (shown only now)."""
    from consent.vendors import AppInput, InvalidApp, register_app

    data = AppInput(
        name=name,
        homepage_url=homepage,
        privacy_policy_url=privacy_policy,
        redirect_uris=redirect_uri,
        purpose=purpose,
        accepted_agreements=agreement,
        webhook_url=webhook_url,
        vendor_scopes=scope or [],
        token_endpoint_auth_method=auth_method,
    )
    with _service() as rt, rt.sessions() as session, session.begin():
        try:
            app_row, secret = register_app(
                session, rt, data, owner_id=None, registered_via="cli", with_secret=True
            )
        except InvalidApp as exc:
            options = {
                "name": "--name",
                "homepage_url": "--homepage",
                "privacy_policy_url": "--privacy-policy",
                "redirect_uris": "--redirect-uri",
                "purpose": "--purpose",
                "webhook_url": "--webhook-url",
                "accepted_agreements": "--agreement",
                "vendor_scopes": "--scope",
                "token_endpoint_auth_method": "--auth-method",
            }
            lines = [f"{options.get(k, k)}: {v}" for k, v in exc.errors.items()]
            raise _fail("the app was not registered.\n  " + "\n  ".join(lines)) from exc
        client_id = app_row.client_id
    typer.echo(f"client_id: {client_id}")
    typer.echo(f"client_secret: {secret}")
    typer.echo("Store the secret now: it is shown only once (only a keyed hash is kept).")


@vendors_app.command("registration-token")
def vendors_registration_token(
    expires_in_hours: Annotated[
        int, typer.Option(min=1, max=720, help="Hours until the token expires.")
    ] = 24,
) -> None:
    """Issue a single-use initial access token for RFC 7591 registration at /oauth/register."""
    from datetime import timedelta

    from consent.registration import issue_registration_token

    with _service() as rt, rt.sessions() as session, session.begin():
        row, token = issue_registration_token(
            session, rt, expires_in=timedelta(hours=expires_in_hours)
        )
        expires_at = row.expires_at
    typer.echo(token)
    typer.echo(
        f"Single use; expires {expires_at:%Y-%m-%d %H:%M} UTC. Send it as "
        f"`Authorization: Bearer <token>` to {rt.settings.base_url}/oauth/register.",
        err=True,
    )


@ledger_app.command("checkpoint")
def ledger_checkpoint() -> None:
    """Sign a checkpoint now if the ledger grew (the worker does this on every pass)."""
    from consent.ledger.service import InconsistentLedger, create_checkpoint, latest_checkpoint

    with _service() as rt, rt.sessions() as session, session.begin():
        try:
            row = create_checkpoint(session, rt) or latest_checkpoint(session)
        except InconsistentLedger as exc:
            raise _fail(f"{exc}: the stored ledger was altered; see `vrm ledger export`") from exc
        if row is None:
            typer.echo("the ledger is empty; nothing to sign")
            return
        typer.echo(row.note, nl=False)


@ledger_app.command("public-key")
def ledger_public_key() -> None:
    """Print the verifier key auditors use to check checkpoints."""
    from consent.ledger.service import public_key_text

    with _service() as rt:
        typer.echo(public_key_text(rt))


@ledger_app.command("export")
def ledger_export(
    output: Annotated[Path, typer.Argument(help="File to write (JSON Lines).")],
    with_proofs: Annotated[
        bool,
        typer.Option(
            help="Add each entry's inclusion proof, so a tampered entry is pinpointed exactly."
        ),
    ] = False,
) -> None:
    """Write the latest checkpoint and every entry it covers, for offline verification.

    Entries are written as stored, so whatever was done to the stored rows is there for
    `vrm ledger verify` to find; proofs come from the stored tree that was signed.
    """
    from consent.ledger.models import LedgerEntry
    from consent.ledger.service import (
        InconsistentLedger,
        create_checkpoint,
        latest_checkpoint,
        stored_subtrees,
    )
    from consent.ledger.verify import export_rows

    warnings: list[str] = []
    with _service() as rt, rt.sessions() as session, session.begin():
        try:
            create_checkpoint(session, rt)
        except InconsistentLedger as exc:
            warnings.append(f"{exc}; exporting under the last signed checkpoint")
        row = latest_checkpoint(session)
        if row is None:
            raise _fail("the ledger is empty; nothing to export")
        note, size = row.note, row.size
        rows = [
            (index, bytes(entry))
            for index, entry in session.execute(
                select(LedgerEntry.index, LedgerEntry.entry)
                .where(LedgerEntry.index < size)
                .order_by(LedgerEntry.index)
            )
        ]
        missing = next((i for i, (index, _) in enumerate(rows) if index != i), len(rows))
        complete = missing == len(rows) == size
        if not complete:
            warnings.append(
                f"the checkpoint covers {size} entries but {len(rows)} are stored, the first "
                f"missing being index {missing}; the export will not verify"
            )
        subtree = None
        if with_proofs and complete:
            subtree = stored_subtrees(session, size)
        elif with_proofs:
            warnings.append("proofs need every stored entry; the export has none")
    with output.open("w", encoding="utf-8") as fh:
        fh.writelines(export_rows(note, rows, subtree=subtree))
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote checkpoint ({size} entries) and {len(rows)} entries to {output}")


@ledger_app.command("verify")
def ledger_verify(
    export: Annotated[Path, typer.Argument(help="A file written by `vrm ledger export`.")],
    public_key: Annotated[Path, typer.Option(help="File holding the verifier key.")],
    previous_checkpoint: Annotated[
        Path | None, typer.Option(help="An older signed checkpoint to check consistency with.")
    ] = None,
) -> None:
    """Verify an export offline (no database): signature, root, order, consistency."""
    from consent.ledger.verify import main_verify

    raise typer.Exit(code=main_verify(export, public_key, previous_checkpoint))


@ledger_app.command("verify-receipt")
def ledger_verify_receipt(
    receipt: Annotated[Path, typer.Argument(help="A consent receipt file (compact JWS).")],
    public_key: Annotated[Path, typer.Option(help="File holding the verifier key.")],
) -> None:
    """Verify a consent receipt offline (no database): JWS signature, checkpoint signature,
    and the inclusion proof from the receipt's ledger entry to the checkpoint root."""
    import json

    from consent.receipts import ReceiptError, verify_receipt

    try:
        payload = verify_receipt(
            receipt.read_text(encoding="utf-8"), public_key.read_text(encoding="utf-8").strip()
        )
    except OSError as exc:
        raise _fail(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except ReceiptError as exc:
        raise _fail(f"the receipt does not verify: {exc}") from exc
    ledger = payload["ledger"]
    typer.echo(
        f"OK: receipt {payload.get('record_id')} ({payload.get('event', {}).get('type')}) is "
        f"ledger entry {ledger['index']}, included in the signed checkpoint of size "
        f"{ledger['tree_size']}"
    )
    typer.echo(json.dumps({k: v for k, v in payload.items() if k != "ledger"}, indent=2))


# -- export, import, erasure (acting on an individual's request) -------------------------------


def _individual(session, rt, email: str | None, account_id: str | None):  # type: ignore[no-untyped-def]
    """The individual named by exactly one of --email and --account-id."""
    import uuid as _uuid

    from sqlalchemy import select

    from vault.accounts.models import Account, Role
    from vault.accounts.service import email_index

    if (email is None) == (account_id is None):
        raise _fail("name the individual with exactly one of --email and --account-id")
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
        raise _fail("there is no individual with that email address or id")
    return account


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Argument(help="Where to write the ZIP archive.")],
    email: Annotated[str | None, typer.Option(help="The individual's sign-in address.")] = None,
    account_id: Annotated[str | None, typer.Option(help="Or the account id.")] = None,
) -> None:
    """Export everything about one individual (on their request) as the portal would."""
    from vault.portability import export
    from vault.wiring import portability

    with _service() as rt:
        parts = portability(rt)
        with rt.sessions() as session, session.begin():
            owner_id = _individual(session, rt, email, account_id).id
            export.prepare(session, rt, parts, owner_id)
        written = 0
        try:
            # Personal data in clear: readable by the operator's user only.
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise _fail(f"{output} exists; choose another file") from exc
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in export.stream(rt, parts, owner_id):
                    out.write(chunk)
                    written += len(chunk)
        except BaseException as exc:
            output.unlink(missing_ok=True)  # no half archive left behind
            if isinstance(exc, OSError):
                raise _fail(f"cannot write {output}: {exc.strerror}") from exc
            raise
    typer.echo(f"exported account {owner_id} to {output} ({written:,} bytes)")


@app.command("import")
def import_command(
    archive: Annotated[Path, typer.Argument(help="An export archive from another vault.")],
    email: Annotated[str, typer.Option(help="The new account's sign-in address.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of prompting.")
    ] = False,
) -> None:
    """Create a new individual from another vault's export (verified before anything is
    written; grants do not transfer)."""
    from vault.accounts.service import AccountService
    from vault.errors import VaultError
    from vault.portability import importer
    from vault.wiring import portability

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _service() as rt:
        try:
            size = archive.stat().st_size
        except OSError as exc:
            raise _fail(f"cannot read {archive}: {exc.strerror}") from exc
        if size > rt.settings.max_import_bytes:
            raise _fail(f"{archive} is larger than VRM_MAX_IMPORT_BYTES")
        parts = portability(rt)
        try:
            with archive.open("rb") as handle:
                verified = importer.verify(handle, parts, rt.settings.import_trusted_keys)
            with rt.sessions() as session, session.begin():
                account = AccountService(session, rt).sign_up(email, password)
                context = importer.import_into(session, rt, parts, account, verified)
                account_id = account.id
        except OSError as exc:
            raise _fail(f"cannot read {archive}: {exc.strerror}") from exc
        except VaultError as exc:
            raise _fail(exc.message) from exc
    got = ", ".join(f"{k} {v}" for k, v in sorted(context.imported.items())) or "nothing"
    typer.echo(f"account {account_id} created from {verified.source}: {got}")
    for note in context.notes:
        typer.echo(f"note: {note}")


@app.command("erase")
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
    from vault.errors import VaultError
    from vault.portability import erasure
    from vault.wiring import portability

    with _service() as rt:
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
                raise _fail(f"cannot write the receipt to {receipt}: {exc.strerror}") from exc
        try:
            with rt.sessions() as session, session.begin():
                done = erasure.erase(session, rt, portability(rt), owner_id)
        except VaultError as exc:  # erased meanwhile (in the portal, say)
            if handle is not None:
                handle.close()
                receipt.unlink(missing_ok=True)  # type: ignore[union-attr]
            raise _fail(exc.message) from exc
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


if __name__ == "__main__":
    app()
