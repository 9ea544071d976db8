"""``vrm witness``: a witness (C2SP tlog-witness) any auditor can run on their own machine.

It needs no vault settings, database or key directory: only its own key file, a state
directory and the verifier keys of the logs it follows.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer

from consent.ledger.checkpoint import CheckpointError, parse_verifier_key
from consent.ledger.witness import (
    Witness,
    WitnessKey,
    WitnessState,
    load_witness_key,
    make_app,
    status_text,
)
from vrm.cli.common import fail
from vrm.logs import configure as configure_logging

app = typer.Typer(
    help="Run a witness that cosigns transparency-log checkpoints (C2SP tlog-witness).",
    no_args_is_help=True,
)

KeyOption = Annotated[
    Path, typer.Option("--key", help="The witness's key file (made on first use, mode 0600).")
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="The witness's name when its key is made (a schema-less URL such as "
        "auditor.example/witness); default: <host name>/witness.",
    ),
]


def _key(path: Path, name: str | None) -> WitnessKey:
    if not path.exists() and not name:
        name = f"{socket.gethostname() or 'localhost'}/witness"
    try:
        return load_witness_key(path, name)
    except (CheckpointError, OSError) as exc:
        raise fail(str(exc)) from exc


@app.command("key")
def key_command(key: KeyOption, name: NameOption = None) -> None:
    """Print the witness's verifier key (what a log's operator puts in VRM_LEDGER_WITNESSES);
    makes the key first if the file does not exist."""
    typer.echo(_key(key, name).verifier_key())


def _trusted_logs(logs: list[str], logs_file: Path | None) -> list[str]:
    found = list(logs)
    if logs_file is not None:
        try:
            text = logs_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read {logs_file}: {exc.strerror}") from exc
        found += [line.strip() for line in text.splitlines() if line.strip()]
    if not found:
        raise fail("name at least one log to follow: --log <verifier key> or --logs-file")
    for vkey in found:
        try:
            parse_verifier_key(vkey)
        except CheckpointError as exc:
            raise fail(f"--log {vkey[:60]!r}: {exc}") from exc
    return found


@app.command("serve")
def serve_command(
    key: KeyOption,
    state: Annotated[
        Path, typer.Option("--state", help="Directory of the witness's state (witness.db).")
    ],
    log: Annotated[
        list[str],
        typer.Option(
            "--log",
            help="A log to follow: its verifier key (`vrm ledger public-key`); the key name "
            "is the log's origin. Repeat for several logs.",
        ),
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    logs_file: Annotated[
        Path | None, typer.Option("--logs-file", help="A file of log verifier keys, one a line.")
    ] = None,
    name: NameOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8300,
    log_format: Annotated[str, typer.Option(help="text or json log lines.")] = "text",
) -> None:
    """Serve POST /add-checkpoint (cosign a checkpoint that extends the last one cosigned),
    GET /<sha256(origin) hex>/checkpoint (the latest cosigned one) and GET /status (what it
    knows, and every fork or rollback it refused)."""
    import uvicorn  # imported here: only this command needs the server (start-up time)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_logging(log_format)
    trusted = _trusted_logs(log, logs_file)
    witness_key = _key(key, name)
    witness = Witness(witness_key, trusted, WitnessState(state))
    typer.echo(f"witness {witness_key.name} following {', '.join(sorted(witness.logs))}")
    typer.echo(f"verifier key {witness_key.verifier_key()}")
    alarms = witness.state.alarm_count()
    if alarms:
        typer.secho(
            f"this witness has raised {alarms} alarm(s): see `vrm witness status`",
            fg=typer.colors.RED,
            err=True,
        )
    try:
        uvicorn.run(make_app(witness), host=host, port=port, log_level="info")
    finally:
        witness.state.close()


@app.command("status")
def status_command(
    key: KeyOption,
    state: Annotated[Path, typer.Option("--state", help="The witness's state directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the witness has cosigned, and every alarm (fork, rollback) it raised. Exits with
    status 2 when there is any alarm."""
    if not (state / "witness.db").exists():
        raise fail(f"{state} holds no witness state")
    try:
        witness_key = load_witness_key(key)
    except (CheckpointError, OSError) as exc:
        raise fail(str(exc)) from exc
    witness = Witness(witness_key, [], WitnessState(state))
    report = witness.status()
    witness.state.close()
    typer.echo(json.dumps(report, indent=2) if as_json else status_text(report))
    if report["alarm_count"]:
        raise typer.Exit(code=2)
