"""KEK rotation: rewraps data keys only, resumable, and every profile stays readable throughout."""

from __future__ import annotations

import secrets
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from tests.helpers import unique_email
from tests.vault.conftest import PROFILE_VALUES, Deployment
from vault.crypto import wrap_associated_data
from vault.keys import LocalKeyProvider, WrappedKey
from vault.keystore import DataKeyRecord, count_by_kek, rewrap_all
from vault.profile.models import ProfileField
from vault.runtime import Runtime

pytestmark = pytest.mark.migrated  # the database is not the subject: start at the head

PEOPLE = 3


@pytest.fixture
def populated(deployment: Deployment) -> tuple[Runtime, list[uuid.UUID]]:
    """A database at head with three individuals whose profiles are filled in, committed."""
    deployment.upgrade()
    rt = deployment.runtime()
    owners = [deployment.add_individual(rt, unique_email()) for _ in range(PEOPLE)]
    return rt, owners


def kek_counts(deployment: Deployment) -> dict[str, int]:
    rt = deployment.runtime()
    with rt.sessions() as session:
        return count_by_kek(session)


def wrapped_keys(rt: Runtime) -> dict[uuid.UUID, tuple[str, bytes]]:
    with rt.sessions() as session:
        rows = session.execute(
            select(DataKeyRecord.id, DataKeyRecord.kek_id, DataKeyRecord.wrapped)
        ).all()
    return {key_id: (kek_id, blob) for key_id, kek_id, blob in rows}


def profile_ciphertexts(rt: Runtime) -> set[bytes]:
    with rt.sessions() as session:
        return set(session.scalars(select(ProfileField.value_ct)))


def assert_all_readable(deployment: Deployment, owners: list[uuid.UUID]) -> None:
    """Read every profile as a newly started service would: no cached key, no cached KEK."""
    rt = deployment.runtime()
    for owner in owners:
        profile = deployment.profile(rt, owner)
        assert profile.values["given_name"] == PROFILE_VALUES["given_name"]
        assert profile.values["address"] == PROFILE_VALUES["address"]
        assert len(profile.custom) == 1


def test_rotate_adds_a_kek_version_and_rewraps_every_data_key(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    rt, owners = populated
    before = wrapped_keys(rt)
    ciphertexts = profile_ciphertexts(rt)
    assert kek_counts(deployment) == {"local:v1": PEOPLE}

    output = deployment.ok("keys", "rotate")

    assert "added key-encryption key local:v2" in output
    assert f"rewrapped {PEOPLE}/{PEOPLE} data keys under local:v2" in output
    assert output.rstrip().endswith("rotation complete")
    assert (deployment.key_dir / "kek" / "v2.json").exists()
    assert kek_counts(deployment) == {"local:v2": PEOPLE}
    after = wrapped_keys(rt)
    assert after.keys() == before.keys()  # the same data keys, rewrapped
    assert all(after[k][1] != before[k][1] for k in before)
    assert profile_ciphertexts(rt) == ciphertexts  # values themselves are not re-encrypted
    assert_all_readable(deployment, owners)


def test_rotate_shows_progress_batch_by_batch(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    output = deployment.ok("keys", "rotate", "--batch-size", "1")
    progress = [line for line in output.splitlines() if line.startswith("rewrapped")]
    assert progress == [
        f"rewrapped {n}/{PEOPLE} data keys under local:v2" for n in range(PEOPLE + 1)
    ]


def test_interrupted_rotation_keeps_data_readable_and_resume_finishes_it(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    rt, owners = populated
    service = deployment.runtime()  # a service that was running before the rotation began
    assert deployment.profile(service, owners[0]).values["family_name"]

    # The operator's process adds v2 and commits one batch of one key, then dies.
    operator = LocalKeyProvider(deployment.key_dir)
    operator.add_version(origin="development")
    progress = rewrap_all(rt.sessions, operator, batch_size=1)
    assert next(progress).done == 0
    assert next(progress).done == 1
    progress.close()

    assert kek_counts(deployment) == {"local:v1": PEOPLE - 1, "local:v2": 1}
    assert_all_readable(deployment, owners)  # mixed KEK versions all open
    for owner in owners:  # and the running service, which never restarted, reads them too
        assert deployment.profile(service, owner).values["given_name"]

    status = deployment.ok("keys", "status")
    assert f"local:v1: {PEOPLE - 1} data keys" in status
    assert "local:v2 (current): 1 data keys" in status

    refused = deployment.cli("keys", "rotate")
    assert refused.exit_code == 1
    assert f"{PEOPLE - 1} data keys are still wrapped by an older KEK (local:v1)" in refused.output
    assert "vrm keys rotate --resume" in refused.output
    assert not (deployment.key_dir / "kek" / "v3.json").exists()

    output = deployment.ok("keys", "rotate", "--resume")
    assert "added key-encryption key" not in output
    assert f"rewrapped {PEOPLE - 1}/{PEOPLE - 1} data keys under local:v2" in output
    assert kek_counts(deployment) == {"local:v2": PEOPLE}
    assert_all_readable(deployment, owners)
    for owner in owners:
        assert deployment.profile(service, owner).values["given_name"]


def test_profiles_stay_readable_after_every_batch(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    rt, owners = populated
    operator = LocalKeyProvider(deployment.key_dir)
    operator.add_version(origin="development")
    seen = []
    for progress in rewrap_all(rt.sessions, operator, batch_size=1):
        seen.append(progress.done)
        assert_all_readable(deployment, owners)
    assert seen == list(range(PEOPLE + 1))


def test_rotation_that_crashes_midway_is_finished_by_resume(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    _rt, owners = populated
    real_wrap = LocalKeyProvider.wrap
    calls = iter(range(100))

    def failing_wrap(self: LocalKeyProvider, key: bytes, aad: bytes):  # type: ignore[no-untyped-def]
        if next(calls) == 1:
            raise RuntimeError("power cut")
        return real_wrap(self, key, aad)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalKeyProvider, "wrap", failing_wrap)
        crashed = deployment.cli("keys", "rotate", "--batch-size", "1")
    assert isinstance(crashed.exception, RuntimeError)
    assert kek_counts(deployment) == {"local:v1": PEOPLE - 1, "local:v2": 1}
    assert_all_readable(deployment, owners)

    deployment.ok("keys", "rotate", "--resume")
    assert kek_counts(deployment) == {"local:v2": PEOPLE}
    assert_all_readable(deployment, owners)


def test_resume_with_nothing_left_changes_nothing(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    rt, owners = populated
    deployment.ok("keys", "rotate")
    before = wrapped_keys(rt)

    output = deployment.ok("keys", "rotate", "--resume")

    assert "rewrapped 0/0 data keys under local:v2" in output
    assert wrapped_keys(rt) == before
    assert sorted(p.name for p in (deployment.key_dir / "kek").iterdir()) == ["v1.json", "v2.json"]
    assert_all_readable(deployment, owners)


def test_a_finished_rotation_allows_the_next_one(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    _rt, owners = populated
    deployment.ok("keys", "rotate")
    output = deployment.ok("keys", "rotate")
    assert "added key-encryption key local:v3" in output
    assert kek_counts(deployment) == {"local:v3": PEOPLE}
    assert_all_readable(deployment, owners)


def test_two_rewraps_at_once_each_key_rewrapped_once(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    rt, owners = populated
    LocalKeyProvider(deployment.key_dir).add_version(origin="development")
    first = rewrap_all(rt.sessions, LocalKeyProvider(deployment.key_dir), batch_size=1)
    second = rewrap_all(rt.sessions, LocalKeyProvider(deployment.key_dir), batch_size=1)
    done = {"first": 0, "second": 0}
    running = {"first": first, "second": second}
    while running:
        for name, gen in list(running.items()):
            try:
                done[name] = next(gen).done
            except StopIteration:
                del running[name]
    assert done["first"] + done["second"] == PEOPLE
    assert kek_counts(deployment) == {"local:v2": PEOPLE}
    assert_all_readable(deployment, owners)


def test_a_service_running_through_the_rotation_signs_up_under_the_new_kek(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]]
) -> None:
    _rt, owners = populated
    service = deployment.runtime()
    deployment.ok("keys", "rotate")
    newcomer = deployment.add_individual(service, unique_email())
    assert kek_counts(deployment) == {"local:v2": PEOPLE + 1}
    for owner in [*owners, newcomer]:
        assert deployment.profile(service, owner).values["given_name"]


def test_a_data_key_made_under_the_old_kek_behind_the_cursor_is_rewrapped_too(
    deployment: Deployment, populated: tuple[Runtime, list[uuid.UUID]], tmp_path: Path
) -> None:
    """A process that had not yet seen the new version wraps a data key under the old one
    while the rotation runs, with an id the paging cursor has already passed: the rotation
    does not call itself complete until that key is rewrapped too."""
    rt, owners = populated
    stale = tmp_path / "stale-keys"  # what a process that started before the rotation saw
    shutil.copytree(deployment.key_dir, stale)
    provider = LocalKeyProvider(deployment.key_dir)
    provider.add_version(origin="development")
    rotation = rewrap_all(rt.sessions, provider, batch_size=1)
    for _ in range(PEOPLE + 1):  # the first count, then one batch per key: the cursor is last
        next(rotation)
    late_owner = owners[0]
    late_id = uuid.UUID(int=1)  # lower than every id the cursor passed
    material = secrets.token_bytes(32)
    wrapped = LocalKeyProvider(stale).wrap(material, wrap_associated_data(late_id, late_owner))
    assert wrapped.kek_id == "local:v1"
    with rt.sessions() as session, session.begin():
        session.execute(delete(DataKeyRecord).where(DataKeyRecord.owner_id == late_owner))
        session.add(
            DataKeyRecord(
                id=late_id, owner_id=late_owner, kek_id=wrapped.kek_id, wrapped=wrapped.blob
            )
        )

    for _ in rotation:
        pass

    assert kek_counts(deployment) == {"local:v2": PEOPLE}
    with rt.sessions() as session:
        record = session.get_one(DataKeyRecord, late_id)
        opened = provider.unwrap(
            WrappedKey(record.kek_id, record.wrapped), wrap_associated_data(late_id, late_owner)
        )
    assert opened == material
