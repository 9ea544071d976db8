"""webhook outbox: indexes of the waiting messages

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:30:00

Each app's webhook messages are delivered in queue order: only an app's oldest waiting
message (not delivered, not given up) is due. Two partial indexes cover only the waiting
messages, so finding each app's head and what is due stays quick however long the delivered
history grows (``bench/webhook_queue.py``, PostgreSQL, 500,000 delivered and 20,000 waiting:
the due heads in 7.5 ms with them, 288 ms without).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING = sa.text("delivered_at IS NULL AND abandoned_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_outbox_waiting",
            ["app_id", "created_at", "id"],
            unique=False,
            postgresql_where=_WAITING,
            sqlite_where=_WAITING,
        )
        batch_op.create_index(
            "ix_webhook_outbox_waiting_due",
            ["next_attempt_at", "created_at"],
            unique=False,
            postgresql_where=_WAITING,
            sqlite_where=_WAITING,
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_outbox_waiting_due")
        batch_op.drop_index("ix_webhook_outbox_waiting")
