"""The mail channel's part in export, import and erasure: the notices a person was shown (the
portal's list) and their email switches go into the export; erasure deletes them with the
mail still queued about the person and the links sent to them.

An import takes none of it, on purpose: notices tell what happened in the vault that exported
them (its connections, its offers, its sign-ins), and the new vault starts its own list with
every switch on. The importer reads only the sections it takes (``IMPORTED_SECTIONS``), so an
export that has these sections imports like one that has not."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vault.accounts.models import Account
from vault.mail.models import AccountLink, MailMessage, Notice, NoticeSetting
from vault.mail.notices import LISTED
from vault.portability.parts import (
    ErasureContext,
    ExportItem,
    ImportContext,
    Section,
    count_rows,
    deleted,
)
from vault.runtime import Runtime


class NoticeItem(ExportItem):
    """A notice of the portal's list."""

    kind: str = Field(description="`new_offer`, `new_connection`, `password_changed`, ...")
    text: str = Field(description="What the list says.")
    count: int = Field(description="How many events it gathers (new offers on one intent).")
    about: str | None = Field(description="The id of what it is about (an intent), if any.")
    created_at: datetime
    updated_at: datetime
    read_at: datetime | None


class NoticeSwitchItem(ExportItem):
    """An email switch the person set on the account page (unset switches are on)."""

    kind: str
    email: bool


class NoticesPart:
    name = "notices"

    def prepare_export(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> None:
        """Nothing to prepare."""

    def finish_erasure(self, db: Session, rt: Runtime, context: ErasureContext) -> None:
        """Nothing left to do."""

    def sections(self, db: Session, rt: Runtime, owner_id: uuid.UUID) -> list[Section]:
        def notice_rows() -> Iterator[NoticeItem]:
            for row in db.scalars(
                select(Notice)
                .where(Notice.account_id == owner_id)
                .order_by(Notice.created_at, Notice.id)
            ):
                yield NoticeItem(
                    kind=row.kind,
                    text=LISTED.get(row.kind, row.kind),
                    count=row.count,
                    about=row.ref,
                    created_at=row.created_at,
                    updated_at=row.updated_at,
                    read_at=row.read_at,
                )

        def switch_rows() -> Iterator[NoticeSwitchItem]:
            for row in db.scalars(
                select(NoticeSetting)
                .where(NoticeSetting.account_id == owner_id)
                .order_by(NoticeSetting.kind)
            ):
                yield NoticeSwitchItem(kind=row.kind, email=row.email)

        return [
            Section(
                "notices",
                "Notices",
                "What the vault told you in its list of notices (and, per your switches, "
                "by email).",
                "observed",
                NoticeItem,
                notice_rows,
                count_rows(db, Notice, Notice.account_id == owner_id),
                csv_columns=("kind", "text", "count", "about", "created_at", "read_at"),
            ),
            Section(
                "notice_switches",
                "Email switches",
                "The kinds of notice you chose to get by email or not.",
                "provided",
                NoticeSwitchItem,
                switch_rows,
                count_rows(db, NoticeSetting, NoticeSetting.account_id == owner_id),
                csv_columns=("kind", "email"),
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
        """Nothing: notices belong to the vault that showed them (see the module)."""

    def erase(self, db: Session, rt: Runtime, owner_id: uuid.UUID, context: ErasureContext) -> None:
        context.deleted["notices"] = deleted(
            db, delete(Notice).where(Notice.account_id == owner_id)
        )
        context.deleted["notice_switches"] = deleted(
            db, delete(NoticeSetting).where(NoticeSetting.account_id == owner_id)
        )
        context.deleted["queued_mail"] = deleted(
            db, delete(MailMessage).where(MailMessage.account_id == owner_id)
        )
        context.deleted["mailed_links"] = deleted(
            db, delete(AccountLink).where(AccountLink.account_id == owner_id)
        )
        db.flush()
