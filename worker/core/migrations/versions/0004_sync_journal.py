"""sync journal: each CRM attempt's duration and requests; calls found by number

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_sync_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duration_ms", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("requests", sa.JSON(), nullable=True))
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calls_external_number"), ["external_number"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calls_external_number"))
    with op.batch_alter_table("crm_sync_attempts", schema=None) as batch_op:
        batch_op.drop_column("requests")
        batch_op.drop_column("duration_ms")
