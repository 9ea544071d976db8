"""``vrm vendors``: vendors' apps (OAuth clients) and registration tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from consent.oauth.registration import issue_registration_token
from consent.vendors.service import AppInput, InvalidApp, register_app
from vrm.cli.common import fail, service

app = typer.Typer(help="Vendors' apps (OAuth clients).", no_args_is_help=True)


@app.command("add")
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
    with service() as rt, rt.sessions() as session, session.begin():
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
            raise fail("the app was not registered.\n  " + "\n  ".join(lines)) from exc
        client_id = app_row.client_id
    typer.echo(f"client_id: {client_id}")
    typer.echo(f"client_secret: {secret}")
    typer.echo("Store the secret now: it is shown only once (only a keyed hash is kept).")


@app.command("registration-token")
def vendors_registration_token(
    expires_in_hours: Annotated[
        int, typer.Option(min=1, max=720, help="Hours until the token expires.")
    ] = 24,
) -> None:
    """Issue a single-use initial access token for RFC 7591 registration at /oauth/register."""
    with service() as rt, rt.sessions() as session, session.begin():
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
