"""source events: how many alerts AlertManager dropped from the group (truncatedAlerts)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("alerts_truncated", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("source_events", schema=None) as batch_op:
        batch_op.drop_column("alerts_truncated")
