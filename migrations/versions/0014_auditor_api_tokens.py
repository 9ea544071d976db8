"""auditor api tokens: bearer tokens for scripts on the audit API and the log tiles

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_api_tokens",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_account_api_tokens_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_account_api_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_account_api_tokens_account_id"), "account_api_tokens", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_account_api_tokens_account_id"), table_name="account_api_tokens")
    op.drop_table("account_api_tokens")
