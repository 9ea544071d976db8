"""rate limit shards

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 19:39:48.661628

The counters become a few shards per app and bucket (the primary key gains ``shard``). They
are the current minute's counts only, so the table is made anew rather than converted.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _table(*, sharded: bool) -> None:
    columns = [
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("bucket", sa.String(length=16), nullable=False),
    ]
    if sharded:
        columns.append(sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False))
    key = ["app_id", "bucket", "shard"] if sharded else ["app_id", "bucket"]
    op.create_table(
        "vendor_rate_limits",
        *columns,
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["vendor_apps.id"],
            name=op.f("fk_vendor_rate_limits_app_id_vendor_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(*key, name=op.f("pk_vendor_rate_limits")),
    )


def upgrade() -> None:
    op.drop_table("vendor_rate_limits")
    _table(sharded=True)


def downgrade() -> None:
    op.drop_table("vendor_rate_limits")
    _table(sharded=False)
