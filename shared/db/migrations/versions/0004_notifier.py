"""notifier: delivery claims and retries, per-alert Sink state (Slack thread, silence)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text  # noqa: F401  autogenerate renders JSONB(astext_type=Text())

import shared.db.models
from sqlalchemy.dialects import postgresql
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_sink_states',
    sa.Column('alert_id', sa.Uuid(), nullable=False),
    sa.Column('sink_name', sa.String(length=253), nullable=False),
    sa.Column('sink_namespace', sa.String(length=253), nullable=False),
    sa.Column('channel', sa.String(length=64), nullable=True),
    sa.Column('thread_ts', sa.String(length=32), nullable=True),
    sa.Column('parent_delivery_id', sa.Uuid(), nullable=True),
    sa.Column('silence_id', sa.String(length=64), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('lease_until', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql'), nullable=True),
    sa.Column('resolution_attempts', sa.Integer(), nullable=False),
    sa.Column('resolution_error', sa.Text(), nullable=True),
    sa.Column('resolved_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_sink_states_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('alert_id', 'sink_name', name=op.f('pk_alert_sink_states'))
    )
    with op.batch_alter_table('sink_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('lease_until', shared.db.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', shared.db.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', shared.db.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_sink_deliveries_phase_next_attempt_at'), ['phase', 'next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sink_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sink_deliveries_phase_next_attempt_at'))
        batch_op.drop_column('updated_at')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('lease_until')
        batch_op.drop_column('worker')

    op.drop_table('alert_sink_states')
