"""one consent event per token family

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 21:08:13.056421

A replayed authorization code or a reused refresh token is recorded (as a consent event and a
consent-ledger entry) once per token family: ``consent_events.family_id`` names the family and
a unique index keeps a second one out, also when replays arrive at once. Events recorded before
have no family (NULL, which the index admits any number of times) and stay as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("family_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_consent_events_family_id"), ["family_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_events_family_id"))
        batch_op.drop_column("family_id")
