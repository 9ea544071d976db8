"""Field encryption: a ciphertext opens only where it was written, and any change is detected."""

from __future__ import annotations

import secrets
import uuid

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from tests.helpers import PASSWORD, unique_email
from vault.accounts.models import Account
from vault.accounts.service import AccountService, email_index
from vault.crypto import (
    FORMAT_VERSION,
    Binding,
    DataKey,
    DecryptionError,
    blind_index,
    hash_token,
    key_id_of,
    normalise_email,
)
from vault.keystore import KeyStore
from vault.profile.models import ProfileField
from vault.profile.service import Profile, ProfileService
from vault.runtime import Runtime
from vault.signup import sign_up

PLAINTEXT = "Zephyrine Ødegård".encode()

# Offsets in the version-1 format: version (1) | key id (16) | nonce (12) | body | tag (16).
VERSION, KEY_ID, NONCE, BODY = 0, 1, 17, 29
ROW = uuid.uuid4()


def new_key(owner_id: uuid.UUID | None = None) -> DataKey:
    return DataKey(
        id=uuid.uuid4(), owner_id=owner_id or uuid.uuid4(), material=secrets.token_bytes(32)
    )


def binding_for(key: DataKey, **changes: object) -> Binding:
    values: dict[str, object] = {
        "owner_id": key.owner_id,
        "table": "profile_fields",
        "column": "value_ct",
        "row_id": ROW,
        **changes,
    }
    return Binding(**values)  # type: ignore[arg-type]


# -- DataKey and Binding --------------------------------------------------------------------


def test_a_value_decrypts_where_it_was_written() -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    assert key.decrypt(ciphertext, binding_for(key)) == PLAINTEXT


def test_ciphertext_holds_neither_the_plaintext_nor_repeats_itself() -> None:
    key = new_key()
    first = key.encrypt(PLAINTEXT, binding_for(key))
    second = key.encrypt(PLAINTEXT, binding_for(key))
    assert PLAINTEXT not in first
    assert first != second  # a fresh random nonce each time
    assert first[NONCE:BODY] != second[NONCE:BODY]
    assert first[VERSION] == FORMAT_VERSION
    assert key_id_of(first) == key.id
    assert len(first) == 1 + 16 + 12 + len(PLAINTEXT) + 16


def test_ciphertext_moved_to_another_owner_fails() -> None:
    alice, bob = new_key(), new_key()
    ciphertext = alice.encrypt(PLAINTEXT, binding_for(alice))
    with pytest.raises(DecryptionError):
        bob.decrypt(ciphertext, binding_for(bob))


def test_ciphertext_relabelled_as_another_owners_fails_even_under_the_same_key() -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError):
        key.decrypt(ciphertext, binding_for(key, owner_id=uuid.uuid4()))


@pytest.mark.parametrize(
    "moved",
    [
        pytest.param({"column": "label_ct"}, id="another-column"),
        pytest.param({"row_id": uuid.uuid4()}, id="another-row"),
        pytest.param({"table": "intents"}, id="another-table"),
    ],
)
def test_ciphertext_moved_to_another_field_or_row_fails(moved: dict[str, object]) -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError, match="altered or does not belong here"):
        key.decrypt(ciphertext, binding_for(key, **moved))


def test_binding_parts_cannot_be_shifted_into_each_other() -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key, table="ab", column="c"))
    with pytest.raises(DecryptionError):
        key.decrypt(ciphertext, binding_for(key, table="a", column="bc"))


def flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(NONCE, id="nonce-first"),
        pytest.param(BODY - 1, id="nonce-last"),
        pytest.param(BODY, id="body-first"),
        pytest.param(BODY + 5, id="body-middle"),
        pytest.param(-16, id="tag-first"),
        pytest.param(-1, id="tag-last"),
    ],
)
def test_flipping_a_bit_of_nonce_body_or_tag_fails(where: int) -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError):
        key.decrypt(flip(ciphertext, where), binding_for(key))


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_another_format_version_is_refused(version: int) -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError, match="unknown ciphertext format"):
        key.decrypt(bytes([version]) + ciphertext[1:], binding_for(key))


def test_a_changed_key_id_is_refused() -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError, match="another key"):
        key.decrypt(flip(ciphertext, KEY_ID + 3), binding_for(key))
    forged = ciphertext[:KEY_ID] + uuid.uuid4().bytes + ciphertext[NONCE:]
    with pytest.raises(DecryptionError):
        key.decrypt(forged, binding_for(key))


@pytest.mark.parametrize("length", [0, 1, BODY, BODY + 15])
def test_truncated_ciphertext_is_refused(length: int) -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError):
        key.decrypt(ciphertext[:length], binding_for(key))


def test_appended_bytes_are_refused() -> None:
    key = new_key()
    ciphertext = key.encrypt(PLAINTEXT, binding_for(key))
    with pytest.raises(DecryptionError):
        key.decrypt(ciphertext + b"\x00", binding_for(key))


def test_a_data_key_refuses_to_encrypt_another_owners_value() -> None:
    key = new_key()
    with pytest.raises(ValueError, match="only its owner's values"):
        key.encrypt(PLAINTEXT, binding_for(key, owner_id=uuid.uuid4()))


def test_data_key_repr_hides_the_key_material() -> None:
    key = new_key()
    assert key.material.hex() not in repr(key)
    assert repr(key.material) not in repr(key)


def test_token_hash_is_keyed() -> None:
    token = "a-random-session-token"
    one, two = secrets.token_bytes(32), secrets.token_bytes(32)
    assert hash_token(one, token) == hash_token(one, token)
    assert hash_token(one, token) != hash_token(two, token)
    assert hash_token(one, token) != hash_token(one, token + "x")
    assert token.encode() not in hash_token(one, token)


# -- End to end: ciphertexts swapped in the database are detected, not served ------------


def individual(db: Session, rt: Runtime, given: str, family: str) -> Account:
    account = sign_up(db, rt, unique_email(), PASSWORD)
    profile = ProfileService(db, rt)
    profile.set_field(account, "given_name", given)
    profile.set_field(account, "family_name", family)
    return account


def field_row(db: Session, owner: Account, key: str) -> ProfileField:
    return db.scalars(
        select(ProfileField).where(ProfileField.owner_id == owner.id, ProfileField.field_key == key)
    ).one()


def copy_column(
    db: Session,
    source: ProfileField,
    target: ProfileField,
    source_column: str = "value_ct",
    target_column: str = "value_ct",
) -> None:
    """What an attacker with SQL access does: copy bytes from one cell to another."""
    cell = db.execute(
        select(ProfileField.__table__.c[source_column]).where(ProfileField.id == source.id)
    ).scalar_one()
    db.execute(
        update(ProfileField.__table__)
        .where(ProfileField.__table__.c.id == target.id)
        .values({target_column: cell})
    )
    db.expire_all()


def fresh_session_profile(rt: Runtime, db: Session, owner: Account) -> Profile:
    """Read with a clean data-key cache, as the next request would."""
    db.info.clear()
    return ProfileService(db, rt).get(owner.id)


@pytest.fixture
def two(db: Session, rt: Runtime) -> tuple[Account, Account]:
    alice = individual(db, rt, "Alice-Quenby", "Vanderwolk")
    bob = individual(db, rt, "Bob-Ytterbium", "Zandpoort")
    db.flush()
    return alice, bob


def test_profiles_read_back_before_any_tampering(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, bob = two
    assert ProfileService(db, rt).get(alice.id).values["given_name"] == "Alice-Quenby"
    assert fresh_session_profile(rt, db, bob).values["family_name"] == "Zandpoort"


def test_value_copied_to_another_owners_row_is_detected(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, bob = two
    copy_column(db, field_row(db, alice, "given_name"), field_row(db, bob, "given_name"))
    with pytest.raises(DecryptionError):
        fresh_session_profile(rt, db, bob)
    # Alice's own profile is untouched and still reads.
    assert ProfileService(db, rt).get(alice.id).values["given_name"] == "Alice-Quenby"


def test_value_copied_to_another_field_of_the_same_owner_is_detected(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, _bob = two
    copy_column(db, field_row(db, alice, "given_name"), field_row(db, alice, "family_name"))
    with pytest.raises(DecryptionError, match="does not belong here"):
        fresh_session_profile(rt, db, alice)


def test_value_copied_into_the_label_column_is_detected(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, _bob = two
    custom = ProfileService(db, rt).add_custom(alice, "Pet's name", "Mr Whiskers")
    row = field_row(db, alice, custom.key)
    copy_column(db, row, row, source_column="value_ct", target_column="label_ct")
    with pytest.raises(DecryptionError):
        fresh_session_profile(rt, db, alice)


def test_flipped_byte_in_a_stored_value_is_detected(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, _bob = two
    row = field_row(db, alice, "given_name")
    db.execute(
        update(ProfileField)
        .where(ProfileField.id == row.id)
        .values(value_ct=flip(row.value_ct, BODY + 2))
    )
    db.expire_all()
    with pytest.raises(DecryptionError):
        fresh_session_profile(rt, db, alice)


def test_swapping_field_keys_between_two_rows_is_detected(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, _bob = two
    given, family = field_row(db, alice, "given_name"), field_row(db, alice, "family_name")
    table = ProfileField.__table__
    for row_id, key in (
        (given.id, "tmp.swap"),
        (family.id, "given_name"),
        (given.id, "family_name"),
    ):
        db.execute(update(table).where(table.c.id == row_id).values(field_key=key))
    db.expire_all()
    with pytest.raises(DecryptionError):
        fresh_session_profile(rt, db, alice)


def test_an_erased_data_key_leaves_nothing_that_decrypts(
    db: Session, rt: Runtime, two: tuple[Account, Account]
) -> None:
    alice, _bob = two
    stored = field_row(db, alice, "given_name")
    binding = Binding(alice.id, "profile_fields", "value_ct", stored.id)
    KeyStore(db, rt.keys).destroy(alice.id)
    db.info.clear()
    with pytest.raises(DecryptionError, match="no data key"):
        KeyStore(db, rt.keys).decrypt(binding, stored.value_ct)


# -- Blind index of the email address ---------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "Ada.Lovelace@Example.ORG",
        "  ada.lovelace@example.org\t",
        "ADA.LOVELACE@EXAMPLE.ORG",
        "\uff41da.lovelace@example.org",
    ],  # fullwidth "a": NFKC folds it
)
def test_same_email_in_another_case_or_spacing_has_the_same_index(variant: str) -> None:
    key = secrets.token_bytes(32)
    expected = blind_index(key, "email", normalise_email("ada.lovelace@example.org"))
    assert blind_index(key, "email", normalise_email(variant)) == expected


def test_blind_index_depends_on_key_purpose_and_address() -> None:
    key, other_key = secrets.token_bytes(32), secrets.token_bytes(32)
    email = normalise_email("ada@example.org")
    index = blind_index(key, "email", email)
    assert len(index) == 32
    assert blind_index(other_key, "email", email) != index
    assert blind_index(key, "throttle-account", email) != index
    assert blind_index(key, "email", normalise_email("ada2@example.org")) != index


def test_sign_in_finds_the_account_whatever_the_case_and_spacing(db: Session, rt: Runtime) -> None:
    email = unique_email("Mixed.Case")
    created = sign_up(db, rt, email, PASSWORD)
    found = AccountService(db, rt).authenticate(f"  {email.upper()} ", PASSWORD)
    assert found.id == created.id
    assert email_index(rt, email.upper()) == created.email_index


def test_accounts_table_never_holds_the_email_in_clear(db: Session, rt: Runtime) -> None:
    email = unique_email("Clear.Text.Probe")
    account = sign_up(db, rt, email, PASSWORD)
    db.flush()
    row = (
        db.execute(
            text("SELECT * FROM accounts WHERE email_index = :index"),
            {"index": account.email_index},
        )
        .mappings()
        .one()
    )
    forms = {email, email.lower(), email.split("@")[0], email.split("@")[0].lower()}
    for column, value in row.items():
        cell = value if isinstance(value, bytes) else str(value).encode()
        for form in forms:
            assert form.encode() not in cell, f"accounts.{column} holds the email"
    assert ProfileService(db, rt).email_of(account.id) == email  # kept, but encrypted
