"""``vrm vendors add`` and ``vrm vendors registration-token``, run against a real deployment."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from consent.oauth.models import RegistrationToken
from consent.vendors.models import VendorApp
from consent.vendors.service import app_for_client_id, authenticate_client
from tests.vault.conftest import Deployment
from vault.base import utcnow
from vrm.app import create_app

ADD = (
    "vendors",
    "add",
    "--name",
    "Acme Outdoor",
    "--redirect-uri",
    "https://acme.example/callback",
    "--redirect-uri",
    "http://localhost:8765/cb",
    "--homepage",
    "https://acme.example",
    "--privacy-policy",
    "https://acme.example/privacy",
    "--purpose",
    "Ship your orders.",
    "--agreement",
    "service-only",
    "--agreement",
    "intent-sharing",
)
METADATA = {
    "client_name": "Acme Outdoor",
    "redirect_uris": ["https://acme.example/callback"],
    "client_uri": "https://acme.example",
    "policy_uri": "https://acme.example/privacy",
    "purpose": "Ship your orders.",
    "accepted_agreements": ["service-only"],
}


def count_apps(deployment: Deployment) -> int:
    rt = deployment.runtime()
    with rt.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(VendorApp)) or 0)


def test_vendors_add_prints_a_client_id_and_a_working_secret(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")

    output = deployment.ok(
        *ADD, "--webhook-url", "https://acme.example/hook", "--scope", "offers:write"
    )

    client_id = re.search(r"^client_id: (vrm_\S{20})$", output, re.MULTILINE)
    secret = re.search(r"^client_secret: (\S{43,})$", output, re.MULTILINE)
    assert client_id and secret, output
    assert "shown only once" in output
    rt = deployment.runtime()
    with rt.sessions() as session:
        app = app_for_client_id(session, client_id.group(1))
        assert app is not None
        assert app.owner_id is None
        assert app.registered_via == "cli"
        assert app.redirect_uris == ["https://acme.example/callback", "http://localhost:8765/cb"]
        assert app.accepted_agreements == ["service-only", "intent-sharing"]
        assert app.vendor_scopes == ["offers:write"]
        assert app.webhook_url == "https://acme.example/hook"
        assert authenticate_client(session, rt, app.client_id, secret.group(1)) is not None
        assert secret.group(1).encode() not in (app.client_secret_hash or b"")


def test_vendors_add_refuses_bad_metadata_naming_the_options(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    bad = [*ADD]
    bad[bad.index("https://acme.example/callback")] = "http://acme.example/callback"
    bad[bad.index("intent-sharing")] = "anything-goes"

    result = deployment.cli(*bad)

    assert result.exit_code == 1
    assert result.output.startswith("error: the app was not registered.")
    assert "--redirect-uri: " in result.output
    assert "plain http is allowed only on 127.0.0.1" in result.output
    assert "--agreement: Unknown agreement: anything-goes" in result.output
    assert "client_secret" not in result.output
    assert "Traceback" not in result.output
    assert count_apps(deployment) == 0


def test_vendors_commands_refuse_a_database_that_is_not_upgraded(
    deployment: Deployment,
) -> None:
    for command in (ADD, ("vendors", "registration-token")):
        result = deployment.cli(*command)
        assert result.exit_code == 1, command
        assert "run `vrm db upgrade` first" in result.output


def test_registration_token_registers_exactly_one_client(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")

    result = deployment.cli("vendors", "registration-token")

    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), result.stdout
    assert "Single use" in result.stderr
    assert "/oauth/register" in result.stderr
    rt = deployment.runtime()
    with rt.sessions() as session:
        row = session.scalars(select(RegistrationToken)).one()
        assert row.used_at is None
        assert token.encode() not in row.token_hash
        assert timedelta(hours=23) < row.expires_at - utcnow() <= timedelta(hours=24)
    with TestClient(create_app(runtime=rt)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        first = client.post("/oauth/register", json=METADATA, headers=headers)
        second = client.post("/oauth/register", json=METADATA, headers=headers)
    assert first.status_code == 201, first.text
    assert second.status_code == 401
    assert count_apps(deployment) == 1


def test_registration_token_lifetime_is_an_option(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")

    deployment.ok("vendors", "registration-token", "--expires-in-hours", "2")
    too_long = deployment.cli("vendors", "registration-token", "--expires-in-hours", "10000")

    assert too_long.exit_code != 0
    rt = deployment.runtime()
    with rt.sessions() as session:
        row = session.scalars(select(RegistrationToken)).one()
        assert timedelta(hours=1) < row.expires_at - utcnow() <= timedelta(hours=2)
