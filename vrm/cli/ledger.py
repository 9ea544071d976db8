"""``vrm ledger``: the consent ledger: checkpoints, export, offline verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from consent.grants.receipts import ReceiptError, verify_receipt
from consent.ledger.export import export_range
from consent.ledger.service import (
    InconsistentLedger,
    LedgerOriginMismatch,
    create_checkpoint,
    latest_checkpoint,
    public_key_text,
)
from consent.ledger.store import integrate
from consent.ledger.tiles_client import main_verify_tiles
from consent.ledger.verify import main_verify
from consent.ledger.witnessing import WitnessSettingError, collect_cosignatures, describe
from vault.errors import NotFound
from vrm.cli.common import fail, service

app = typer.Typer(
    help="The consent ledger: checkpoints, export, offline verification.", no_args_is_help=True
)


@app.command("sequence")
def ledger_sequence() -> None:
    """Integrate the pending consent events into the tree now (the worker does this several
    times a second); safe beside a running worker: one sequencer at a time holds the lock."""
    with service() as rt, rt.sessions() as session, session.begin():
        done = integrate(session)
    typer.echo(f"{done.count} pending events integrated; the tree holds {done.size} entries")


@app.command("checkpoint")
def ledger_checkpoint() -> None:
    """Integrate pending events, then sign a checkpoint if the ledger grew (the worker does
    both on every pass)."""
    with service() as rt, rt.sessions() as session, session.begin():
        try:
            integrate(session)
            row = create_checkpoint(session, rt) or latest_checkpoint(session)
        except InconsistentLedger as exc:
            raise fail(f"{exc}: the stored ledger was altered; see `vrm ledger export`") from exc
        except LedgerOriginMismatch as exc:
            raise fail(exc.message) from exc
        if row is None:
            typer.echo("the ledger is empty; nothing to sign")
            return
        typer.echo(row.note, nl=False)


WitnessOption = Annotated[
    list[str],
    typer.Option(
        "--witness",
        help="A trusted witness's verifier key (type 0x04, what `vrm witness key` prints). "
        "Repeat for each witness.",
    ),
]
QuorumOption = Annotated[
    int | None,
    typer.Option(
        min=0, help="How many of the --witness keys must have cosigned (default: all of them)."
    ),
]


def _quorum(witnesses: list[str], quorum: int | None) -> int:
    if quorum is None:
        return len(witnesses)
    if quorum > len(witnesses):
        raise fail(f"--quorum {quorum} needs at least {quorum} --witness keys")
    return quorum


@app.command("cosign")
def ledger_cosign() -> None:
    """Send the latest checkpoint to the witnesses now (the worker does this on every pass)
    and print what each answered."""
    with service() as rt:
        try:
            outcomes = collect_cosignatures(rt)
        except WitnessSettingError as exc:
            raise fail(exc.message) from exc
    typer.echo(describe(outcomes) or "no witness to ask (none configured, or all have cosigned)")
    if any(o.error for o in outcomes):
        raise typer.Exit(code=1)


@app.command("public-key")
def ledger_public_key() -> None:
    """Print the verifier key auditors use to check checkpoints."""
    with service() as rt:
        typer.echo(public_key_text(rt))


@app.command("export")
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
    early: list[str] = []
    with service() as rt, rt.sessions() as session, session.begin():
        try:
            create_checkpoint(session, rt)
        except InconsistentLedger as exc:
            early.append(f"{exc}; exporting under the last signed checkpoint")
        except LedgerOriginMismatch as exc:
            early.append(f"{exc.message} Exporting under the last signed checkpoint.")
        try:
            export = export_range(session, with_proofs=with_proofs)
        except NotFound as exc:
            raise fail("the ledger is empty; nothing to export") from exc
    with output.open("w", encoding="utf-8") as fh:
        fh.writelines(export.lines())
    for warning in early + export.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"wrote checkpoint ({export.size} entries) and {len(export.rows)} entries to {output}"
    )


@app.command("verify")
def ledger_verify(
    export: Annotated[
        Path | None,
        typer.Argument(help="A file written by `vrm ledger export` (or use --tiles-url)."),
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="File holding the verifier key (required).")
    ] = None,
    tiles_url: Annotated[
        str | None,
        typer.Option(
            help="Verify the log served as C2SP tlog-tiles at this prefix instead of an "
            "export, e.g. https://vault.example/api/audit/v1/log/"
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="VRM_AUDITOR_TOKEN",
            show_envvar=True,
            help="An auditor API token for the tiles (better given in VRM_AUDITOR_TOKEN).",
        ),
    ] = None,
    previous_checkpoint: Annotated[
        Path | None, typer.Option(help="An older signed checkpoint to check consistency with.")
    ] = None,
    witness: WitnessOption = [],  # noqa: B006 - typer reads the default, never mutates it
    quorum: QuorumOption = None,
) -> None:
    """Verify the ledger (no database): signature, root, order, consistency; from an export
    file, or from the tiles a vault serves (every entry bundle and hash tile is checked); with
    --witness, the checkpoint's cosignatures by a quorum of the witnesses."""
    if public_key is None:
        raise fail("give the verifier key: --public-key FILE (from `vrm ledger public-key`)")
    if (export is None) == (tiles_url is None):
        raise fail("give either an export file or --tiles-url, not both or neither")
    needed = _quorum(witness, quorum)
    if tiles_url is None:
        assert export is not None
        raise typer.Exit(
            code=main_verify(
                export, public_key, previous_checkpoint, witnesses=witness, quorum=needed
            )
        )
    if not tiles_url.startswith(("https://", "http://")):
        raise fail("--tiles-url must be an http(s) URL")
    try:
        vkey = public_key.read_text(encoding="utf-8").strip()
        previous = None
        if previous_checkpoint is not None:
            with previous_checkpoint.open(encoding="utf-8", newline="") as fh:
                previous = fh.read().rstrip("\r\n") + "\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read input: {exc}") from exc
    raise typer.Exit(
        code=main_verify_tiles(
            tiles_url, vkey, previous, token=token, witnesses=witness, quorum=needed
        )
    )


@app.command("verify-receipt")
def ledger_verify_receipt(
    receipt: Annotated[Path, typer.Argument(help="A consent receipt file (compact JWS).")],
    public_key: Annotated[Path, typer.Option(help="File holding the verifier key.")],
    witness: WitnessOption = [],  # noqa: B006 - typer reads the default, never mutates it
    quorum: QuorumOption = None,
) -> None:
    """Verify a consent receipt offline (no database): JWS signature, checkpoint signature,
    and the inclusion proof from the receipt's ledger entry to the checkpoint root; with
    --witness, the checkpoint's cosignatures by a quorum of the witnesses."""
    needed = _quorum(witness, quorum)
    try:
        payload = verify_receipt(
            receipt.read_text(encoding="utf-8"),
            public_key.read_text(encoding="utf-8").strip(),
            witnesses=witness,
            quorum=needed,
        )
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}") from exc
    except ReceiptError as exc:
        raise fail(f"the receipt does not verify: {exc}") from exc
    ledger = payload["ledger"]
    typer.echo(
        f"OK: receipt {payload.get('record_id')} ({payload.get('event', {}).get('type')}) is "
        f"ledger entry {ledger['index']}, included in the signed checkpoint of size "
        f"{ledger['tree_size']}"
    )
    typer.echo(json.dumps({k: v for k, v in payload.items() if k != "ledger"}, indent=2))
