"""Reading and writing an individual's profile; every value encrypted at rest."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vault.accounts.models import Account
from vault.crypto import Binding, blind_index, normalise_email
from vault.errors import Conflict, InvalidInput, NotFound
from vault.keystore import KeyStore
from vault.profile.catalogue import (
    CUSTOM_PREFIX,
    FIELDS,
    MAX_CUSTOM_FIELDS,
    FieldSpec,
    parse_custom_label,
    parse_custom_value,
    validate_email,
)
from vault.profile.models import ProfileField
from vault.runtime import Runtime

__all__ = ["CustomField", "Profile", "ProfileService", "validate_email"]

_TABLE = ProfileField.__tablename__


@dataclass(frozen=True, slots=True)
class CustomField:
    key: str
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Profile:
    values: dict[str, Any]
    custom: list[CustomField]

    def display(self, key: str) -> str | None:
        if key not in self.values:
            return None
        return FIELDS[key].display(self.values[key])


def _binding(row: ProfileField, column: str) -> Binding:
    return Binding(row.owner_id, _TABLE, column, row.id, label=row.field_key)


class ProfileService:
    def __init__(self, db: Session, rt: Runtime) -> None:
        self.db = db
        self.rt = rt
        self.keys = KeyStore(db, rt.keys)

    def _rows(self, owner_id: uuid.UUID) -> list[ProfileField]:
        return list(
            self.db.scalars(
                select(ProfileField)
                .where(ProfileField.owner_id == owner_id)
                .order_by(ProfileField.created_at, ProfileField.id)
            )
        )

    def _row(self, owner_id: uuid.UUID, key: str) -> ProfileField | None:
        return self.db.scalars(
            select(ProfileField).where(
                ProfileField.owner_id == owner_id, ProfileField.field_key == key
            )
        ).one_or_none()

    def _decrypt(self, row: ProfileField, column: str, ct: bytes) -> Any:
        return json.loads(self.keys.decrypt(_binding(row, column), ct))

    def _write(self, owner_id: uuid.UUID, key: str, value: Any, label: str | None = None) -> None:
        row = self._row(owner_id, key)
        if row is None:
            row = ProfileField(id=uuid.uuid4(), owner_id=owner_id, field_key=key, value_ct=b"")
            self.db.add(row)
        row.value_ct = self.keys.encrypt(
            _binding(row, "value_ct"), json.dumps(value, ensure_ascii=False).encode()
        )
        if label is not None:
            row.label_ct = self.keys.encrypt(_binding(row, "label_ct"), json.dumps(label).encode())
        self.db.flush()

    def get(self, owner_id: uuid.UUID) -> Profile:
        values: dict[str, Any] = {}
        custom: list[CustomField] = []
        for row in self._rows(owner_id):
            value = self._decrypt(row, "value_ct", row.value_ct)
            if row.field_key.startswith(CUSTOM_PREFIX):
                label = self._decrypt(row, "label_ct", row.label_ct or b"")
                custom.append(CustomField(row.field_key, label, value))
            elif row.field_key in FIELDS:
                values[row.field_key] = value
        return Profile(values, custom)

    def values(self, owner_id: uuid.UUID, keys: list[str]) -> dict[str, Any]:
        """Only the named standard fields that are filled in; nothing else is decrypted."""
        wanted = [key for key in keys if key in FIELDS]
        if not wanted:
            return {}
        rows = self.db.scalars(
            select(ProfileField).where(
                ProfileField.owner_id == owner_id, ProfileField.field_key.in_(wanted)
            )
        )
        found = {row.field_key: self._decrypt(row, "value_ct", row.value_ct) for row in rows}
        return {key: found[key] for key in wanted if key in found}

    def email_of(self, owner_id: uuid.UUID) -> str | None:
        row = self._row(owner_id, "email")
        return None if row is None else str(self._decrypt(row, "value_ct", row.value_ct))

    def store_email(self, account: Account, email: str) -> None:
        self._write(account.id, "email", email)

    def set_field(self, account: Account, key: str, raw: Any, *, confirmed: bool = False) -> Any:
        """Validate and store one standard field; returns the stored (normalised) value.

        The email is the sign-in address: it changes only once the new address is confirmed
        from a mail (:func:`vault.recovery.confirm_email_change` passes ``confirmed``)."""
        spec = self.spec(key)
        if key == "email" and not confirmed:
            raise InvalidInput(
                "Your email address is how you sign in: change it on your Account page, "
                "where the new address is confirmed by email first.",
                field=key,
            )
        value = spec.parse(raw)
        if key == "email":
            index = blind_index(self.rt.secrets.blind_index_key, "email", normalise_email(value))
            taken = self.db.scalar(
                select(func.count())
                .select_from(Account)
                .where(Account.email_index == index, Account.id != account.id)
            )
            if taken:
                raise Conflict(
                    "Another account already uses this email address.", code="email_unavailable"
                )
            account.email_index = index
        self._write(account.id, key, value)
        return value

    def clear_field(self, account: Account, key: str) -> None:
        if key.startswith(CUSTOM_PREFIX):
            self._require_custom(account.id, key)
        else:
            spec = self.spec(key)
            if not spec.deletable:
                raise InvalidInput(
                    "Your email address is how you sign in: you can change it but not remove it.",
                    field=key,
                )
        self.db.execute(
            delete(ProfileField).where(
                ProfileField.owner_id == account.id, ProfileField.field_key == key
            )
        )

    def add_custom(self, account: Account, label: Any, value: Any) -> CustomField:
        clean_label, clean_value = parse_custom_label(label), parse_custom_value(value)
        count = (
            self.db.scalar(
                select(func.count())
                .select_from(ProfileField)
                .where(
                    ProfileField.owner_id == account.id,
                    ProfileField.field_key.startswith(CUSTOM_PREFIX),
                )
            )
            or 0
        )
        if count >= MAX_CUSTOM_FIELDS:
            raise InvalidInput(
                f"You can keep at most {MAX_CUSTOM_FIELDS} custom fields.", field="label"
            )
        key = CUSTOM_PREFIX + secrets.token_hex(6)
        self._write(account.id, key, clean_value, clean_label)
        return CustomField(key, clean_label, clean_value)

    def update_custom(self, account: Account, key: str, label: Any, value: Any) -> CustomField:
        self._require_custom(account.id, key)
        clean_label, clean_value = parse_custom_label(label), parse_custom_value(value)
        self._write(account.id, key, clean_value, clean_label)
        return CustomField(key, clean_label, clean_value)

    def custom(self, owner_id: uuid.UUID, key: str) -> CustomField:
        row = self._require_custom(owner_id, key)
        return CustomField(
            key,
            self._decrypt(row, "label_ct", row.label_ct or b""),
            self._decrypt(row, "value_ct", row.value_ct),
        )

    def _require_custom(self, owner_id: uuid.UUID, key: str) -> ProfileField:
        row = self._row(owner_id, key) if key.startswith(CUSTOM_PREFIX) else None
        if row is None:
            raise NotFound("There is no such custom field in your profile.")
        return row

    @staticmethod
    def spec(key: str) -> FieldSpec:
        spec = FIELDS.get(key)
        if spec is None:
            raise NotFound(f"There is no profile field called {key[:64]!r}.")
        return spec
