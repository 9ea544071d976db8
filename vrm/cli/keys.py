"""``vrm keys``: key-encryption keys and service secrets."""

from __future__ import annotations

from typing import Annotated

import typer

from consent.ledger.service import KEY as LEDGER_KEY
from consent.ledger.service import LOG_ORIGIN, ledger_key, origin_for, origin_problem
from consent.oauth.oidc import KEY as OIDC_KEY
from vault.keys import KeyDirectory, KeyManagementError, KeyOrigin
from vault.keystore import count_by_kek, rewrap_all
from vault.settings import get_settings
from vrm.cli.common import fail, runtime, service

app = typer.Typer(help="Key-encryption keys and service secrets.", no_args_is_help=True)


@app.command("init")
def keys_init() -> None:
    """Create any missing key (for production: keys are never created on start there)."""
    settings = get_settings()
    created = KeyDirectory(settings.key_dir).initialise(origin="operator")
    if OIDC_KEY.ensure(settings.key_dir, "operator"):
        created.append(settings.key_dir / OIDC_KEY.filename)
    log_origin = origin_for(settings)
    made_ledger = LEDGER_KEY.ensure(settings.key_dir, "operator", {LOG_ORIGIN: log_origin})
    if made_ledger:
        created.append(settings.key_dir / LEDGER_KEY.filename)
    for path in created:
        typer.echo(f"created {path} (mode 0600)")
    if made_ledger:
        typer.echo(f"the consent ledger's log origin is {log_origin} (from VRM_BASE_URL, fixed)")
    if not created:
        typer.echo(f"every key already exists in {settings.key_dir}; nothing changed")


@app.command("ledger-origin")
def keys_ledger_origin() -> None:
    """Print the consent ledger's log origin, stored with its key.

    A ledger key made before origins were stored has it recorded now, from VRM_BASE_URL (as
    any process would on first use): run this once with the server's settings after
    upgrading, before the worker, to choose it deliberately.
    """
    rt = runtime()  # no database needed: the origin lives in the key directory
    try:
        key = ledger_key(rt)
        stored = LEDGER_KEY.read(rt.settings.key_dir, production=rt.settings.is_production)
    except KeyManagementError as exc:
        raise fail(str(exc)) from exc
    finally:
        rt.engine.dispose()
    if stored.field(LOG_ORIGIN) is None:
        raise fail(
            f"could not record the log origin in {stored.path}: run this where the key "
            "directory is writable"
        )
    typer.echo(key.origin)
    problem = origin_problem(rt, key)
    if problem is not None:
        typer.secho(f"warning: {problem}", fg=typer.colors.YELLOW, err=True)


@app.command("status")
def keys_status() -> None:
    """Show KEK versions and how many data keys each one wraps."""
    with service() as rt, rt.sessions() as session:
        counts = count_by_kek(session)
    current = rt.keys.current_version()
    for kek_id in rt.keys.versions():
        marker = " (current)" if kek_id == current else ""
        typer.echo(f"{kek_id}{marker}: {counts.pop(kek_id, 0)} data keys")
    for kek_id, count in counts.items():
        typer.echo(f"{kek_id} (MISSING KEY FILE): {count} data keys")


@app.command("rotate")
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
    with service() as rt:
        if not resume:
            with rt.sessions() as session:
                pending = {
                    k: v for k, v in count_by_kek(session).items() if k != rt.keys.current_version()
                }
            if pending:
                raise fail(
                    f"{sum(pending.values())} data keys are still wrapped by an older KEK "
                    f"({', '.join(sorted(pending))}); finish that rotation with "
                    "`vrm keys rotate --resume` first."
                )
            origin: KeyOrigin = "operator" if rt.settings.is_production else "development"
            kek_id = rt.keys.add_version(origin=origin)
            typer.echo(f"added key-encryption key {kek_id}")
        target = rt.keys.current_version()
        try:
            for progress in rewrap_all(rt.sessions, rt.keys, batch_size=batch_size):
                typer.echo(f"rewrapped {progress.done}/{progress.total} data keys under {target}")
        except KeyManagementError as exc:
            raise fail(
                f"{exc} Rewrapped keys are kept; fix this and run `vrm keys rotate --resume`."
            ) from exc
    typer.echo("rotation complete")
