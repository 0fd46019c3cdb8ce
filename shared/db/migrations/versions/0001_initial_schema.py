"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

import shared.db.models
from sqlalchemy.dialects import postgresql
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('alerts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('starts_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=32), nullable=False),
    sa.Column('alert_name', sa.String(length=255), nullable=False),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('annotations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('generator_url', sa.Text(), nullable=True),
    sa.Column('source_name', sa.String(length=253), nullable=False),
    sa.Column('workflow_name', sa.String(length=253), nullable=True),
    sa.Column('ai_analysis', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('ai_confidence', sa.Float(), nullable=True),
    sa.Column('auto_resolved', sa.Boolean(), nullable=False),
    sa.Column('received_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('times_seen', sa.Integer(), nullable=False),
    sa.Column('triage_started_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('triage_completed_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('source_name', 'fingerprint', 'starts_at', name=op.f('uq_alerts_source_name_fingerprint_starts_at'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_fingerprint'), ['fingerprint'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_status_received_at'), ['status', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_source_name_received_at'), ['source_name', 'received_at'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('task_name', sa.String(length=128), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('args', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('available_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_published_at_available_at'), ['published_at', 'available_at'], unique=False)

    op.create_table('resources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('namespace', sa.String(length=253), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('spec', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=1024), nullable=False),
    sa.Column('updated_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_resources')),
    sa.UniqueConstraint('kind', 'namespace', 'name', name=op.f('uq_resources_kind_namespace_name'))
    )
    op.create_table('source_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('source_name', sa.String(length=253), nullable=False),
    sa.Column('source_namespace', sa.String(length=253), nullable=False),
    sa.Column('source_type', sa.String(length=32), nullable=False),
    sa.Column('event_data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('workflow_triggered', sa.String(length=253), nullable=True),
    sa.Column('alerts_received', sa.Integer(), nullable=False),
    sa.Column('alerts_filtered', sa.Integer(), nullable=False),
    sa.Column('alerts_deduplicated', sa.Integer(), nullable=False),
    sa.Column('workflows_started', sa.Integer(), nullable=False),
    sa.Column('workflows_rate_limited', sa.Integer(), nullable=False),
    sa.Column('received_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_events'))
    )
    with op.batch_alter_table('source_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_source_events_source_name_received_at'), ['source_name', 'received_at'], unique=False)

    op.create_table('alert_source_events',
    sa.Column('alert_id', sa.Uuid(), nullable=False),
    sa.Column('source_event_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_source_events_alert_id_alerts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_event_id'], ['source_events.id'], name=op.f('fk_alert_source_events_source_event_id_source_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('alert_id', 'source_event_id', name=op.f('pk_alert_source_events'))
    )
    op.create_table('workflow_runs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workflow_name', sa.String(length=253), nullable=False),
    sa.Column('namespace', sa.String(length=253), nullable=False),
    sa.Column('source_name', sa.String(length=253), nullable=True),
    sa.Column('alert_id', sa.Uuid(), nullable=True),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('steps_completed', sa.Integer(), nullable=False),
    sa.Column('total_steps', sa.Integer(), nullable=False),
    sa.Column('current_step', sa.String(length=253), nullable=True),
    sa.Column('input_context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('context', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('outputs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_workflow_runs_alert_id_alerts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workflow_runs'))
    )
    with op.batch_alter_table('workflow_runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workflow_runs_alert_id'), ['alert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflow_runs_source_name_created_at'), ['source_name', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_workflow_runs_workflow_name_phase'), ['workflow_name', 'phase'], unique=False)

    op.create_table('sink_deliveries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=False),
    sa.Column('sink_name', sa.String(length=253), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('response', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', shared.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_sink_deliveries_run_id_workflow_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sink_deliveries')),
    sa.UniqueConstraint('run_id', 'sink_name', name=op.f('uq_sink_deliveries_run_id_sink_name'))
    )
    op.create_table('step_runs',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('run_id', sa.Uuid(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=253), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('phase', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('output', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', shared.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_step_runs_run_id_workflow_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step_runs')),
    sa.UniqueConstraint('run_id', 'index', name=op.f('uq_step_runs_run_id_index'))
    )
    


def downgrade() -> None:
    
    op.drop_table('step_runs')
    op.drop_table('sink_deliveries')
    with op.batch_alter_table('workflow_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workflow_runs_workflow_name_phase'))
        batch_op.drop_index(batch_op.f('ix_workflow_runs_source_name_created_at'))
        batch_op.drop_index(batch_op.f('ix_workflow_runs_alert_id'))

    op.drop_table('workflow_runs')
    op.drop_table('alert_source_events')
    with op.batch_alter_table('source_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_events_source_name_received_at'))

    op.drop_table('source_events')
    op.drop_table('resources')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_published_at_available_at'))

    op.drop_table('outbox')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_source_name_received_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_status_received_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_received_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_fingerprint'))

    op.drop_table('alerts')
    
