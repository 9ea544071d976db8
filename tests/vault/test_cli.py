"""The ``vrm`` command line, run as an operator would against a real database and key dir."""

from __future__ import annotations

import os
import re
import stat
import uuid

import pytest

from tests.helpers import PASSWORD, unique_email
from tests.vault.conftest import CUSTOM_VALUE, PROFILE_VALUES, Deployment
from vault.accounts.errors import BadCredentials
from vault.accounts.models import Role
from vault.accounts.service import AccountService
from vault.migrate import head
from vault.profile.service import ProfileService

AUDITOR_PASSWORD = "a long auditor passphrase 7"


# -- vrm db ---------------------------------------------------------------------------------


def test_db_upgrade_brings_an_empty_database_to_head(deployment: Deployment) -> None:
    assert deployment.ok("db", "current").strip() == "empty (no revision)"

    output = deployment.ok("db", "upgrade")

    assert output.strip() == f"database at revision {head()}"
    assert deployment.ok("db", "current").strip() == head()
    assert deployment.ok("db", "upgrade").strip() == f"database at revision {head()}"


def test_commands_refuse_a_database_that_is_not_upgraded(deployment: Deployment) -> None:
    for command in (["users", "list"], ["keys", "status"], ["keys", "rotate"]):
        result = deployment.cli(*command)
        assert result.exit_code == 1, command
        assert "run `vrm db upgrade` first" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


# -- vrm keys -------------------------------------------------------------------------------


def test_keys_init_creates_operator_keys_once(deployment: Deployment) -> None:
    output = deployment.ok("keys", "init")
    created = re.findall(r"created (\S+) \(mode 0600\)", output)
    assert len(created) == 7
    for path in created:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(deployment.key_dir.stat().st_mode) == 0o700

    again = deployment.ok("keys", "init")
    assert "nothing changed" in again
    assert "created" not in again


def test_keys_status_counts_data_keys_per_kek(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    rt = deployment.runtime()
    for _ in range(2):
        deployment.add_individual(rt, unique_email(), full=False)

    output = deployment.ok("keys", "status")

    assert output.strip() == "local:v1 (current): 2 data keys"


def test_keys_status_names_a_kek_whose_file_is_gone(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    rt = deployment.runtime()
    deployment.add_individual(rt, unique_email(), full=False)
    deployment.ok("keys", "rotate")
    deployment.add_individual(rt, unique_email(), full=False)
    # Pretend v2 was lost (e.g. a restored key directory from before the rotation).
    (deployment.key_dir / "kek" / "v2.json").rename(deployment.key_dir / "kek-v2.bak")

    output = deployment.ok("keys", "status")

    assert "local:v1 (current): 0 data keys" in output
    assert "local:v2 (MISSING KEY FILE): 2 data keys" in output


def test_a_loose_key_file_stops_the_cli_with_a_clear_message(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    deployment.ok("keys", "init")
    (deployment.key_dir / "kek" / "v1.json").chmod(0o644)

    result = deployment.cli("users", "list")

    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert "v1.json is readable by others (mode 644)" in result.output
    assert "chmod 600" in result.output
    assert "Traceback" not in result.output


# -- vrm auditors / users -------------------------------------------------------------------


def test_auditors_add_creates_an_auditor_who_can_sign_in(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    email = unique_email("auditor")

    output = deployment.ok(
        "auditors", "add", "--email", email, "--password-stdin", input=AUDITOR_PASSWORD + "\n"
    )

    match = re.fullmatch(r"auditor account (\S+) created\n", output)
    assert match, output
    assert email not in output
    rt = deployment.runtime()
    with rt.sessions() as session:
        account = AccountService(session, rt).authenticate(email.upper(), AUDITOR_PASSWORD)
        assert str(account.id) == match.group(1)
        assert account.role == Role.AUDITOR.value
        assert ProfileService(session, rt).email_of(account.id) == email
        with pytest.raises(BadCredentials):
            AccountService(session, rt).authenticate(email, AUDITOR_PASSWORD + "x")


def test_auditors_add_refuses_a_taken_address_or_a_weak_password(deployment: Deployment) -> None:
    deployment.ok("db", "upgrade")
    email = unique_email("auditor")
    deployment.ok(
        "auditors", "add", "--email", email, "--password-stdin", input=AUDITOR_PASSWORD + "\n"
    )

    taken = deployment.cli(
        "auditors", "add", "--email", email, "--password-stdin", input="another long passphrase 9\n"
    )
    weak = deployment.cli(
        "auditors", "add", "--email", unique_email(), "--password-stdin", input="short\n"
    )

    assert taken.exit_code == 1
    assert taken.output.startswith("error: ")
    assert weak.exit_code == 1
    assert "at least 10 characters" in weak.output
    listing = deployment.ok("users", "list")
    assert listing.strip().endswith("1 shown of 1")


def test_users_list_shows_ids_roles_and_status_but_no_personal_data(
    deployment: Deployment,
) -> None:
    deployment.ok("db", "upgrade")
    rt = deployment.runtime()
    individual_email = unique_email("individual")
    individual = deployment.add_individual(rt, individual_email)
    auditor_email = unique_email("auditor")
    deployment.ok(
        "auditors",
        "add",
        "--email",
        auditor_email,
        "--password-stdin",
        input=AUDITOR_PASSWORD + "\n",
    )

    output = deployment.ok("users", "list")

    lines = output.splitlines()
    assert lines[0].split() == ["id", "role", "status", "created"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:-1]}
    assert rows[str(individual)] == ["individual", "active"]
    assert sorted(role for role, _ in rows.values()) == ["auditor", "individual"]
    assert all(uuid.UUID(account_id) for account_id in rows)
    assert lines[-1] == "2 shown of 2"
    assert "@" not in output
    for secret in (
        individual_email,
        auditor_email,
        PASSWORD,
        AUDITOR_PASSWORD,
        CUSTOM_VALUE,
        PROFILE_VALUES["given_name"],
        PROFILE_VALUES["family_name"],
    ):
        assert secret not in output

    only_auditors = deployment.ok("users", "list", "--role", "auditor")
    assert "individual" not in only_auditors
    assert only_auditors.strip().endswith("1 shown of 2")
