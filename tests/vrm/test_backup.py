"""``vrm backup``: a copy of the SQLite database taken while a writer writes, restored into a
fresh directory with the key directory beside it, serves the same vault."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import threading
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import test_settings as make_settings
from tests.consent.factories import account_of, bearer, connect, make_app
from tests.helpers import sign_in, sign_up, unique_email
from tests.served import vault
from vault.profile.service import ProfileService
from vault.settings import get_settings
from vrm.app import create_app
from vrm.cli import app as cli_app


def backup(database_url: str, *args: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli_app, ["backup", *args], env={"VRM_DATABASE_URL": database_url}
        )
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


def test_a_backup_taken_while_writing_restores_and_serves_the_same_vault(tmp_path: Path) -> None:
    live_url = f"sqlite:///{tmp_path / 'live' / 'vrm.db'}"
    live_keys = tmp_path / "live" / "keys"
    email = unique_email()
    with vault(live_url, live_keys) as rt:
        with TestClient(create_app(runtime=rt), follow_redirects=False) as client:
            sign_up(client, email)
        with rt.sessions() as db:
            account = account_of(db, rt, email)
            ProfileService(db, rt).set_field(account, "given_name", "Zephyrine")
            db.commit()
            shop = make_app(db)
            grant = connect(db, rt, account, shop, ["given_name"])
            vendor_headers = bearer(db, rt, shop, grant, expires_in=3600)

        writes = 0
        stop = threading.Event()

        def writer() -> None:  # another person's profile, changing all through the backup
            nonlocal writes
            with rt.sessions() as session:
                other = account_of(session, rt, other_email)
                while not stop.is_set():
                    ProfileService(session, rt).set_field(other, "family_name", f"W{writes}")
                    session.commit()
                    writes += 1

        other_email = unique_email("writer")
        with TestClient(create_app(runtime=rt), follow_redirects=False) as client:
            sign_up(client, other_email)
        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while writes < 5:
                stop.wait(0.01)
            target = tmp_path / "vrm-backup.db"
            before = writes
            code, output = backup(live_url, str(target))
            during = writes
        finally:
            stop.set()
            thread.join()
    assert code == 0, output
    assert "back up the key directory separately" in output
    assert during > before  # the writer wrote while the copy was taken
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with sqlite3.connect(target) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    fresh = tmp_path / "restored"
    fresh.mkdir()
    shutil.copy(target, fresh / "vrm.db")
    shutil.copytree(live_keys, fresh / "keys")
    restored = create_app(make_settings(fresh / "keys", f"sqlite:///{fresh / 'vrm.db'}"))
    with TestClient(restored, base_url="http://testserver", follow_redirects=False) as client:
        assert sign_in(client, email).status_code == 303
        profile = client.get("/api/v1/profile")
        assert profile.status_code == 200, profile.text
        assert "Zephyrine" in profile.text
        read = client.get("/vendor/v1/profile", headers=vendor_headers)
        assert read.status_code == 200, read.text
        assert "Zephyrine" in read.text


def test_backup_refuses_to_overwrite_a_file_unless_forced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vrm.db'}"
    with vault(url, tmp_path / "keys"):
        pass
    target = tmp_path / "copy.db"
    target.write_bytes(b"an older backup")

    code, output = backup(url, str(target))
    assert code == 1
    assert "exists; choose another file or pass --force" in output
    assert target.read_bytes() == b"an older backup"

    code, output = backup(url, str(target), "--force")
    assert code == 0, output
    with sqlite3.connect(target) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_backup_refuses_postgresql_and_names_pg_dump(tmp_path: Path) -> None:
    code, output = backup(
        "postgresql://vault:s3cret@db.internal:5432/vrm", str(tmp_path / "vrm.dump")
    )
    assert code == 1
    assert "pg_dump -Fc --file" in output
    assert "postgresql://vault@db.internal:5432/vrm" in output
    assert "s3cret" not in output
    assert "pg_restore" in output
    assert not (tmp_path / "vrm.dump").exists()
