"""source events: refused alerts; index for the retention pass

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("alerts_refused", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "refusals",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_source_events_received_at"), ["received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("source_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_events_received_at"))
        batch_op.drop_column("refusals")
        batch_op.drop_column("alerts_refused")
