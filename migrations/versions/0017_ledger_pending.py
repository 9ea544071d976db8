"""consent ledger: pending events for the batched sequencer

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 01:00:00

Consent events are committed with the change they record into ``ledger_pending`` (no lock
on the head row), and the sequencer integrates them into ``ledger_entries`` in batches.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_pending",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event", sa.LargeBinary(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("vendor_id", sa.Uuid(), nullable=True),
        sa.Column("subject", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_pending")),
    )


def downgrade() -> None:
    op.drop_table("ledger_pending")
