"""sink deliveries: one per (run, Sink, event), so a run can notify a Sink more than once

A run that pauses for approval tells its Sinks (``approval_requested``, one per
approval) before the run's result (``run_finished``). ``event_id`` names what the
event is about (the approval's id; '' for the run's end), so the unique key stays
free of NULLs, which PostgreSQL would count as distinct.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sink_deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "event", sa.String(length=32), server_default="run_finished", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("event_id", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.drop_constraint("uq_sink_deliveries_run_id_sink_name", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_sink_deliveries_run_id_sink_name_event_event_id"),
            ["run_id", "sink_name", "event", "event_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("sink_deliveries", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_sink_deliveries_run_id_sink_name_event_event_id"), type_="unique"
        )
        batch_op.execute("DELETE FROM sink_deliveries WHERE event <> 'run_finished'")
        batch_op.create_unique_constraint(
            "uq_sink_deliveries_run_id_sink_name", ["run_id", "sink_name"]
        )
        batch_op.drop_column("event_id")
        batch_op.drop_column("event")
