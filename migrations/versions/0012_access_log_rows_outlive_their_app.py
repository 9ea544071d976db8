"""access log rows outlive their app

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 22:00:31.067430

The access log is the individual's record of who read what: deleting a vendor app no longer
deletes it (``access_log.app_id`` was ``ON DELETE CASCADE``). Each row now carries the app's
name as it was when it read (``app_name``, written with the row), and ``app_id`` becomes NULL
when the app is deleted (``ON DELETE SET NULL``). Existing rows get their app's current name.

Going back removes the rows of deleted apps (the old schema cannot hold a read without its
app), as the cascade would have.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_name", sa.String(length=100), nullable=True))
    op.execute(
        "UPDATE access_log SET app_name = "
        "(SELECT vendor_apps.name FROM vendor_apps WHERE vendor_apps.id = access_log.app_id)"
    )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.alter_column("app_name", existing_type=sa.String(length=100), nullable=False)
        batch_op.alter_column("app_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.drop_constraint(batch_op.f("fk_access_log_app_id_vendor_apps"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_access_log_app_id_vendor_apps"),
            "vendor_apps",
            ["app_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    op.execute("DELETE FROM access_log WHERE app_id IS NULL")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_access_log_app_id_vendor_apps"), type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_access_log_app_id_vendor_apps"),
            "vendor_apps",
            ["app_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.alter_column("app_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column("app_name")
