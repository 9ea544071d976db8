"""Key files, the local KEK provider and data keys stored only wrapped."""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, unique_email
from tests.vault.conftest import make_settings
from vault.crypto import wrap_associated_data
from vault.keys import (
    KeyDirectory,
    KeyManagementError,
    LocalKeyProvider,
    SigningKeyFile,
    WrappedKey,
)
from vault.keystore import DataKeyRecord, KeyStore
from vault.runtime import Runtime
from vault.settings import SettingsError
from vault.signup import sign_up

SECRET_FILES = ("blind-index.json", "token-hash.json", "cookie.json", "webhook.json")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Key files must not depend on the operator's umask being strict."""
    old = os.umask(0)
    yield
    os.umask(old)


# -- Key files ---------------------------------------------------------------------------------


def test_initialise_creates_every_key_file_0600_in_a_0700_directory(
    tmp_path: Path, permissive_umask: None
) -> None:
    key_dir = tmp_path / "keys"
    created = KeyDirectory(key_dir).initialise(origin="operator")
    expected = {key_dir / name for name in SECRET_FILES} | {key_dir / "kek" / "v1.json"}
    assert set(created) == expected
    for path in expected:
        assert mode(path) == 0o600, path
        assert json.loads(path.read_text())["origin"] == "operator"
    assert mode(key_dir) == 0o700
    assert mode(key_dir / "kek") == 0o700
    assert sorted(p.name for p in key_dir.iterdir()) == sorted([*SECRET_FILES, "kek"])


def test_a_new_key_is_durable_name_and_all_before_it_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key file's bytes are fsynced before it is linked into place, and its directory
    after, so a power cut once ``add_version`` returns cannot lose the key that new data keys
    are then wrapped under."""
    provider = LocalKeyProvider(tmp_path / "keys")
    provider.add_version()
    steps: list[tuple[str, str]] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        steps.append(("fsync", "directory" if os.path.isdir(target) else Path(target).name))
        real_fsync(fd)

    def link(src: str | Path, dst: str | Path) -> None:
        steps.append(("link", Path(dst).name))
        real_link(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)

    added = provider.add_version()

    assert added == "local:v2"
    [(_, written), *rest] = steps
    assert written.startswith(".v2.json.") and written.endswith(".tmp")
    assert rest == [("link", "v2.json"), ("fsync", "directory")]


def test_processes_starting_together_share_the_keys_one_of_them_made(tmp_path: Path) -> None:
    """Several development workers starting at once on an empty key directory: none crashes
    on a key another created first, and all end up with the same keys."""
    key_dir = tmp_path / "keys"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(timeout=10)
            KeyDirectory(key_dir).initialise(origin="development")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert KeyDirectory(key_dir).exists()
    assert LocalKeyProvider(key_dir).versions() == ["local:v1"]


def test_initialise_tightens_an_existing_directory(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o755)
    key_dir.chmod(0o755)
    KeyDirectory(key_dir).initialise(origin="operator")
    assert mode(key_dir) == 0o700


def test_a_new_kek_version_is_also_0600(tmp_path: Path, permissive_umask: None) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    provider = LocalKeyProvider(tmp_path / "keys")
    assert provider.add_version() == "local:v2"
    assert mode(tmp_path / "keys" / "kek" / "v2.json") == 0o600


def test_initialise_again_creates_nothing_and_keeps_every_key(tmp_path: Path) -> None:
    key_dir = KeyDirectory(tmp_path / "keys")
    key_dir.initialise(origin="operator")
    before = key_dir.load_secrets()
    before_kek = (tmp_path / "keys" / "kek" / "v1.json").read_bytes()
    assert key_dir.initialise(origin="development") == []
    after = key_dir.load_secrets()
    assert (after.blind_index_key, after.token_hash_key, after.cookie_key, after.webhook_key) == (
        before.blind_index_key,
        before.token_hash_key,
        before.cookie_key,
        before.webhook_key,
    )
    assert (tmp_path / "keys" / "kek" / "v1.json").read_bytes() == before_kek
    assert set(after.origins.values()) == {"operator"}


def test_initialise_fills_in_only_the_missing_key(tmp_path: Path) -> None:
    key_dir = KeyDirectory(tmp_path / "keys")
    key_dir.initialise(origin="operator")
    token_key = key_dir.load_secrets().token_hash_key
    (tmp_path / "keys" / "cookie.json").unlink()
    assert key_dir.initialise(origin="operator") == [tmp_path / "keys" / "cookie.json"]
    assert key_dir.load_secrets().token_hash_key == token_key


def test_every_key_is_distinct_random_256_bit(tmp_path: Path) -> None:
    key_dir = KeyDirectory(tmp_path / "keys")
    key_dir.initialise(origin="operator")
    loaded = key_dir.load_secrets()
    keys = [loaded.blind_index_key, loaded.token_hash_key, loaded.cookie_key, loaded.webhook_key]
    assert all(len(k) == 32 for k in keys)
    assert len(set(keys)) == 4


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660])
def test_a_secret_file_readable_by_others_is_refused(tmp_path: Path, loose: int) -> None:
    key_dir = KeyDirectory(tmp_path / "keys")
    key_dir.initialise(origin="operator")
    cookie = tmp_path / "keys" / "cookie.json"
    cookie.chmod(loose)
    with pytest.raises(KeyManagementError) as refused:
        key_dir.load_secrets()
    assert str(cookie) in str(refused.value)
    assert "readable by others" in str(refused.value)
    assert "chmod 600" in str(refused.value)


def test_a_kek_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    (tmp_path / "keys" / "kek" / "v1.json").chmod(0o644)
    with pytest.raises(KeyManagementError, match=r"v1\.json is readable by others"):
        LocalKeyProvider(tmp_path / "keys")


@pytest.mark.parametrize("name", ["blind-index.json", "kek/v1.json"])
@pytest.mark.parametrize("environment", ["development", "production"])
def test_the_service_refuses_to_start_with_a_loose_key_file(
    tmp_path: Path, name: str, environment: str
) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    (tmp_path / "keys" / name).chmod(0o644)
    settings = make_settings(
        tmp_path / "keys",
        f"sqlite:///{tmp_path}/unused.db",
        environment=environment,
        base_url="https://vault.example",
        smtp_url="smtps://vault:generated-password@mail.example.org",
    )
    with pytest.raises(SettingsError, match=rf"{name} is readable by others .*chmod 600"):
        Runtime.from_settings(settings)


def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    key_dir = KeyDirectory(tmp_path / "keys")
    key_dir.initialise(origin="operator")
    cookie = tmp_path / "keys" / "cookie.json"
    cookie.chmod(0o600)
    for garbage in ("{not json", "[1, 2]", '{"origin": "operator"}'):
        cookie.write_text(garbage)
        with pytest.raises(KeyManagementError, match="is not a VRM key file"):
            key_dir.load_secrets()


def test_a_missing_secret_file_says_to_run_keys_init(tmp_path: Path) -> None:
    key_dir = KeyDirectory(tmp_path / "keys")
    key_dir.initialise(origin="operator")
    (tmp_path / "keys" / "token-hash.json").unlink()
    assert not key_dir.exists()
    with pytest.raises(KeyManagementError, match="vrm keys init"):
        key_dir.load_secrets()


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    kek = tmp_path / "keys" / "kek" / "v1.json"
    original = kek.read_bytes()
    provider = LocalKeyProvider(tmp_path / "keys")
    from vault.keys import _new_key_payload, _write_secret_file

    with pytest.raises(FileExistsError):
        _write_secret_file(kek, _new_key_payload("operator"))
    assert kek.read_bytes() == original
    assert provider.versions() == ["local:v1"]
    assert [p.name for p in kek.parent.iterdir()] == ["v1.json"]  # no temporary file left


def test_a_field_adopted_by_signers_racing_is_the_first_one_and_the_key_is_kept(
    tmp_path: Path,
) -> None:
    """Signers that each adopt a different value at once (a key made before the field was
    stored) all come away with the same one, and the key and its other fields stay."""
    key = SigningKeyFile("test-signing.json", "Ed25519", lambda: secrets.token_hex(16))
    key_dir = tmp_path / "keys"
    assert key.ensure(key_dir, "operator")
    before = json.loads((key_dir / key.filename).read_text())
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def adopt(n: int) -> None:
        barrier.wait(timeout=10)
        seen.append(key.adopt(key_dir, "log_origin", f"host-{n}/log"))

    threads = [threading.Thread(target=adopt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 8 and len(set(seen)) == 1
    after = json.loads((key_dir / key.filename).read_text())
    assert after == {**before, "log_origin": seen[0]}
    assert mode(key_dir / key.filename) == 0o600
    assert key.read(key_dir, production=False).field("log_origin") == seen[0]
    assert [p.name for p in key_dir.iterdir()] == [key.filename]  # no temporary file left


def test_fields_given_when_a_signing_key_is_made_are_stored_with_it(tmp_path: Path) -> None:
    key = SigningKeyFile("test-signing.json", "Ed25519", lambda: secrets.token_hex(16))
    stored = key.read(tmp_path, production=False, fields={"log_origin": "a.example/log"})

    assert stored.origin == "development"
    assert stored.field("log_origin") == "a.example/log"
    assert key.adopt(tmp_path, "log_origin", "b.example/log") == "a.example/log"
    assert stored.key not in repr(stored)


# -- The local KEK provider -------------------------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path) -> LocalKeyProvider:
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    return LocalKeyProvider(tmp_path / "keys")


def test_no_kek_says_to_run_keys_init(tmp_path: Path) -> None:
    with pytest.raises(KeyManagementError, match="vrm keys init"):
        LocalKeyProvider(tmp_path / "empty").current_version()


def test_wrap_unwrap_roundtrip_and_the_wrapped_form_hides_the_key(
    provider: LocalKeyProvider,
) -> None:
    key, aad = secrets.token_bytes(32), b"owner-and-key-id"
    wrapped = provider.wrap(key, aad)
    assert wrapped.kek_id == "local:v1"
    assert key not in wrapped.blob
    assert provider.unwrap(wrapped, aad) == key


def test_unwrap_refuses_other_associated_data_or_altered_blob(
    provider: LocalKeyProvider,
) -> None:
    wrapped = provider.wrap(secrets.token_bytes(32), b"aad")
    with pytest.raises(KeyManagementError, match="failed to unwrap"):
        provider.unwrap(wrapped, b"other")
    altered = bytearray(wrapped.blob)
    altered[-1] ^= 1
    with pytest.raises(KeyManagementError, match="failed to unwrap"):
        provider.unwrap(WrappedKey(wrapped.kek_id, bytes(altered)), b"aad")


def test_a_blob_relabelled_with_another_kek_version_fails(provider: LocalKeyProvider) -> None:
    wrapped = provider.wrap(secrets.token_bytes(32), b"aad")
    provider.add_version()
    with pytest.raises(KeyManagementError):
        provider.unwrap(WrappedKey("local:v2", wrapped.blob), b"aad")


def test_an_unknown_kek_version_is_named(provider: LocalKeyProvider) -> None:
    with pytest.raises(KeyManagementError, match="local:v9 is not available"):
        provider.unwrap(WrappedKey("local:v9", b"\x00" * 60), b"aad")


def test_old_versions_keep_unwrapping_after_a_new_one(provider: LocalKeyProvider) -> None:
    key = secrets.token_bytes(32)
    old = provider.wrap(key, b"aad")
    assert provider.add_version() == "local:v2"
    new = provider.wrap(key, b"aad")
    assert (old.kek_id, new.kek_id) == ("local:v1", "local:v2")
    assert provider.unwrap(old, b"aad") == provider.unwrap(new, b"aad") == key


def test_versions_are_ordered_by_number_not_text(provider: LocalKeyProvider) -> None:
    for _ in range(10):
        provider.add_version()
    assert provider.current_version() == "local:v11"
    assert provider.versions()[-3:] == ["local:v9", "local:v10", "local:v11"]
    assert provider.wrap(b"k" * 32, b"").kek_id == "local:v11"


def test_stray_files_in_the_kek_directory_are_ignored(
    provider: LocalKeyProvider, tmp_path: Path
) -> None:
    stray = tmp_path / "keys" / "kek" / "v2 copy.json"
    stray.write_text("{}")
    stray.chmod(0o600)
    assert LocalKeyProvider(tmp_path / "keys").versions() == ["local:v1"]


def test_a_running_service_sees_a_version_added_by_another_process(tmp_path: Path) -> None:
    """`vrm keys rotate` runs in its own process while the service keeps serving."""
    KeyDirectory(tmp_path / "keys").initialise(origin="operator")
    service = LocalKeyProvider(tmp_path / "keys")
    operator = LocalKeyProvider(tmp_path / "keys")
    key = secrets.token_bytes(32)
    assert operator.add_version() == "local:v2"
    rewrapped = operator.wrap(key, b"aad")
    assert service.unwrap(rewrapped, b"aad") == key  # no restart needed
    assert service.wrap(key, b"aad").kek_id == "local:v2"  # new data keys use the newest


# -- Data keys in the database ----------------------------------------------------------------


def test_data_key_is_stored_only_wrapped(db: Session, rt: Runtime) -> None:
    account = sign_up(db, rt, unique_email(), PASSWORD)
    key = KeyStore(db, rt.keys).for_owner(account.id)
    record = db.scalars(select(DataKeyRecord).where(DataKeyRecord.owner_id == account.id)).one()
    assert record.id == key.id
    assert record.kek_id == rt.keys.current_version()
    assert key.material not in record.wrapped
    assert key.material.hex() not in repr(record)


def test_a_wrapped_data_key_moved_to_another_owner_does_not_open(db: Session, rt: Runtime) -> None:
    alice = sign_up(db, rt, unique_email(), PASSWORD)
    bob = sign_up(db, rt, unique_email(), PASSWORD)
    alice_blob = db.scalars(
        select(DataKeyRecord.wrapped).where(DataKeyRecord.owner_id == alice.id)
    ).one()
    db.execute(
        update(DataKeyRecord).where(DataKeyRecord.owner_id == bob.id).values(wrapped=alice_blob)
    )
    db.expire_all()
    db.info.clear()
    with pytest.raises(KeyManagementError, match="failed to unwrap"):
        KeyStore(db, rt.keys).for_owner(bob.id)
    assert KeyStore(db, rt.keys).for_owner(alice.id).owner_id == alice.id


def test_wrap_associated_data_names_key_and_owner() -> None:
    key_id, owner = uuid.uuid4(), uuid.uuid4()
    assert wrap_associated_data(key_id, owner) != wrap_associated_data(owner, key_id)
    assert wrap_associated_data(key_id, owner) != wrap_associated_data(key_id, uuid.uuid4())
