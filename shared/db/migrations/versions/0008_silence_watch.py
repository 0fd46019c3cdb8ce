"""alert sink states: the silence watch's claim (who checked, until when, how often)

While a silence holds, AlertManager mutes the alert's resolved notification; the
notifier asks AlertManager instead, and leases each check on the Sink state row with
columns of its own, apart from the resolution's claim.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

import shared.db.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_sink_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("watch_worker", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                "watch_until", shared.db.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("watch_checks", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_sink_states", schema=None) as batch_op:
        batch_op.drop_column("watch_checks")
        batch_op.drop_column("watch_until")
        batch_op.drop_column("watch_worker")
