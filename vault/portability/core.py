"""The vault core's own part: the account, the profile, preferences and sessions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.accounts.models import Account, AccountSession, KnownDevice, SignInThrottle
from vault.crypto import blind_index, normalise_email
from vault.errors import InvalidInput
from vault.keystore import KeyStore
from vault.portability.parts import (
    ErasureContext,
    ExportItem,
    ImportContext,
    Section,
    count_rows,
    deleted,
)
from vault.profile.catalogue import CUSTOM_PREFIX, FIELDS
from vault.profile.models import ProfileField
from vault.profile.service import ProfileService
from vault.runtime import Runtime


class AccountItem(ExportItem):
    """The account itself, as the vault keeps it."""

    account_id: str
    role: str
    status: str
    created_at: datetime
    password_changed_at: datetime


class ProfileItem(ExportItem):
    """One profile field, as the person entered it."""

    key: str = Field(description="A catalogue key (`email`, `phone`, ...) or `custom.<id>`.")
    label: str
    value: Any = Field(description="The stored value: text, or structured for some fields.")


class SessionItem(ExportItem):
    """A signed-in browser session."""

    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class CorePart:
    name = "vault"

    def prepare_export(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> None:
        """Nothing to prepare."""

    def finish_erasure(self, db: Session, rt: Runtime, context: ErasureContext) -> None:
        """Nothing left to do."""

    def sections(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[Section]:
        account = db.get_one(Account, owner_id)

        def account_rows() -> Iterator[AccountItem]:
            yield AccountItem(
                account_id=str(account.id),
                role=account.role,
                status=account.status,
                created_at=account.created_at,
                password_changed_at=account.password_changed_at,
            )

        def profile_rows() -> Iterator[ProfileItem]:
            profile = ProfileService(db, rt).get(owner_id)
            for key, spec in FIELDS.items():
                if key in profile.values:
                    yield ProfileItem(key=key, label=spec.label, value=profile.values[key])
            for custom in profile.custom:
                yield ProfileItem(key=custom.key, label=custom.label, value=custom.value)

        def session_rows() -> Iterator[SessionItem]:
            for row in db.scalars(
                select(AccountSession)
                .where(AccountSession.account_id == owner_id)
                .order_by(AccountSession.created_at)
            ):
                yield SessionItem(
                    created_at=row.created_at,
                    last_seen_at=row.last_seen_at,
                    expires_at=row.expires_at,
                )

        profile_count = count_rows(db, ProfileField, ProfileField.owner_id == owner_id)

        session_count = count_rows(db, AccountSession, AccountSession.account_id == owner_id)

        return [
            Section(
                "account",
                "Account",
                "Your account in this vault.",
                "observed",
                AccountItem,
                account_rows,
                lambda: 1,
            ),
            Section(
                "profile",
                "Profile",
                "Every field of your profile, as you entered it.",
                "provided",
                ProfileItem,
                profile_rows,
                profile_count,
                csv_columns=("key", "label", "value"),
            ),
            Section(
                "sessions",
                "Sessions",
                "The browsers signed in to your vault.",
                "observed",
                SessionItem,
                session_rows,
                session_count,
                csv_columns=("created_at", "last_seen_at", "expires_at"),
            ),
        ]

    def import_data(
        self,
        db: Session,
        rt: Runtime,
        owner: Account,
        sections: dict[str, list[dict[str, Any]]],
        context: ImportContext,
    ) -> None:
        """The profile, each value validated again as if entered now.

        The email address is the new account's sign-in, chosen on import; the exported one is
        not copied over it.
        """
        profile = ProfileService(db, rt)
        imported = 0
        seen: set[str] = set()
        for raw in sections.get("profile", []):
            item = ProfileItem.model_validate(raw)
            if item.key in seen:
                raise InvalidInput(
                    f"The export lists the profile field {item.key[:40]!r} twice.", field="archive"
                )
            seen.add(item.key)
            try:
                if item.key.startswith(CUSTOM_PREFIX):
                    profile.add_custom(owner, item.label, item.value)
                elif item.key == "email":
                    continue
                elif item.key in FIELDS:
                    profile.set_field(owner, item.key, item.value)
                else:
                    context.notes.append(f"profile field {item.key[:40]!r} is unknown here")
                    continue
            except InvalidInput as exc:
                raise InvalidInput(
                    f"The export's profile field {item.key[:40]!r} is not valid here: "
                    f"{exc.message}",
                    field="archive",
                ) from exc
            imported += 1
        context.imported["profile"] = imported
        db.flush()

    def erase(self, db: Session, rt: Runtime, owner_id: uuid.UUID, context: ErasureContext) -> None:
        """The profile, sessions, known devices, sign-in throttle, the data key (crypto-shredding
        every ciphertext of the individual) and last the account row with its blind email
        index."""
        email = ProfileService(db, rt).email_of(owner_id)
        context.deleted["profile_fields"] = deleted(
            db, delete(ProfileField).where(ProfileField.owner_id == owner_id)
        )
        context.deleted["sessions"] = deleted(
            db, delete(AccountSession).where(AccountSession.account_id == owner_id)
        )
        context.deleted["known_devices"] = deleted(
            db, delete(KnownDevice).where(KnownDevice.account_id == owner_id)
        )
        if email:
            bucket = blind_index(
                rt.secrets.blind_index_key, "throttle-account", normalise_email(email)
            )
            deleted(db, delete(SignInThrottle).where(SignInThrottle.bucket == bucket))
        KeyStore(db, rt.keys).destroy(owner_id)
        context.deleted["data_keys"] = 1
        context.deleted["accounts"] = deleted(db, delete(Account).where(Account.id == owner_id))
        db.flush()
