"""The ``vrm`` command line for operators: one module per domain, each command a thin call
into its package's service."""

from __future__ import annotations

import typer

from vrm.cli import db, keys, ledger, portability, serve, users, vendors, witness, worker

app = typer.Typer(
    help="VRM Vault: operate the service.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.command()(serve.serve)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(users.auditors_app, name="auditors")
app.add_typer(vendors.app, name="vendors")
app.add_typer(ledger.app, name="ledger")
app.add_typer(witness.app, name="witness")
app.command()(worker.worker)
app.command("export")(portability.export_command)
app.command("import")(portability.import_command)
app.command("erase")(portability.erase_command)
app.command("backup")(db.backup_command)
