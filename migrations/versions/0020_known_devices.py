"""accounts: the browsers each account was signed in from (for the new-device notice)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 04:10:00

Only a keyed hash of each browser's device-cookie token is kept. Accounts made before this
revision know no device yet: their next sign-in from each browser sends one new-device notice.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "known_devices",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("device_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_known_devices_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_devices")),
        sa.UniqueConstraint("device_hash", name=op.f("uq_known_devices_device_hash")),
    )
    op.create_index(
        op.f("ix_known_devices_account_id"), "known_devices", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_known_devices_account_id"), table_name="known_devices")
    op.drop_table("known_devices")
