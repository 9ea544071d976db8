"""consent ledger: witnesses and their cosignatures

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 00:50:49

What the vault knows of each witness (the size it last cosigned, the ``old`` size of the next
request, and when to try it again), and the cosignatures (C2SP tlog-cosignature) witnesses
returned on signed checkpoints.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_witnesses",
        sa.Column("vkey", sa.String(length=500), nullable=False),
        sa.Column("cosigned_size", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("vkey", name=op.f("pk_ledger_witnesses")),
    )
    op.create_table(
        "ledger_cosignatures",
        sa.Column("checkpoint_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=500), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_size"],
            ["ledger_checkpoints.size"],
            name=op.f("fk_ledger_cosignatures_checkpoint_size_ledger_checkpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("checkpoint_size", "witness", name=op.f("pk_ledger_cosignatures")),
    )


def downgrade() -> None:
    op.drop_table("ledger_cosignatures")
    op.drop_table("ledger_witnesses")
