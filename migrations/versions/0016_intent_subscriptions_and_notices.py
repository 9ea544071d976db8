"""intent subscriptions and notices

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 00:49:27

Vendor apps' subscriptions (saved listing filters; ``ix_intent_subscriptions_match`` over the
category, country and currency keys, where '' means any, finds the subscriptions an intent
matches in one query) and the record of which apps were told of an intent.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "intent_notices",
        sa.Column("intent_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("told_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["vendor_apps.id"],
            name=op.f("fk_intent_notices_app_id_vendor_apps"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["intents.id"],
            name=op.f("fk_intent_notices_intent_id_intents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("intent_id", "app_id", name=op.f("pk_intent_notices")),
    )
    with op.batch_alter_table("intent_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intent_notices_app_id"), ["app_id"], unique=False)

    op.create_table(
        "intent_subscriptions",
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("category_key", sa.String(length=64), nullable=False),
        sa.Column("country_key", sa.String(length=2), nullable=False),
        sa.Column("currency_key", sa.String(length=3), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("budget_min", sa.BigInteger(), nullable=True),
        sa.Column("budget_max", sa.BigInteger(), nullable=True),
        sa.Column("needed_before", sa.Date(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["vendor_apps.id"],
            name=op.f("fk_intent_subscriptions_app_id_vendor_apps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intent_subscriptions")),
    )
    with op.batch_alter_table("intent_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_intent_subscriptions_app_created", ["app_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_intent_subscriptions_match",
            ["category_key", "country_key", "currency_key"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("intent_subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_intent_subscriptions_match")
        batch_op.drop_index("ix_intent_subscriptions_app_created")

    op.drop_table("intent_subscriptions")
    with op.batch_alter_table("intent_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intent_notices_app_id"))

    op.drop_table("intent_notices")
