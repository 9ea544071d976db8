"""consent ledger: where each pending event's index goes

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 07:15:00

``record()`` notes the byte offset in the pending event's canonical JSON where the sequencer
inserts ``"index":N``, so that the sequencer makes each entry by splicing bytes instead of
parsing and re-serialising the event. Events recorded before this revision (or by a process
still running the code before it) have none, and are re-serialised as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ledger_pending", sa.Column("index_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("ledger_pending", "index_at")
