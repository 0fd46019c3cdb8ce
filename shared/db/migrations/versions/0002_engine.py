"""engine: run spec snapshot, step leases, schedule ticks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import shared.db.models
from sqlalchemy.dialects import postgresql
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('schedule_ticks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_namespace', sa.String(length=253), nullable=False),
    sa.Column('source_name', sa.String(length=253), nullable=False),
    sa.Column('tick_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schedule_ticks')),
    sa.UniqueConstraint('source_namespace', 'source_name', 'tick_at', name=op.f('uq_schedule_ticks_source_namespace_source_name_tick_at'))
    )
    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('worker', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('lease_until', shared.db.models.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('workflow_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('spec', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True))
        batch_op.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('updated_at', shared.db.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_workflow_runs_phase_updated_at'), ['phase', 'updated_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflow_runs_workflow_name_fingerprint_started_at'), ['workflow_name', 'fingerprint', 'started_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('workflow_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workflow_runs_workflow_name_fingerprint_started_at'))
        batch_op.drop_index(batch_op.f('ix_workflow_runs_phase_updated_at'))
        batch_op.drop_column('updated_at')
        batch_op.drop_column('fingerprint')
        batch_op.drop_column('spec')
        batch_op.drop_column('message')

    with op.batch_alter_table('step_runs', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('worker')

    op.drop_table('schedule_ticks')
