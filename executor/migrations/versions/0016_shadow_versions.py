"""shadow versions: a scoring server may be a shadow (a copy of some traffic, answers recorded only)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 19:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('scoring_servers') as batch:
        batch.add_column(sa.Column('shadow', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('traffic_percent', sa.Integer(), nullable=True))
    op.create_table(
        'endpoint_shadow_predictions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.String(length=32), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=255), nullable=False),
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('latency_ms', sa.Double(), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('outputs', sa.Text(), nullable=True),
        sa.Column('live_model', sa.String(length=255), nullable=False),
        sa.Column('live_version', sa.String(length=32), nullable=False),
        sa.Column('live_latency_ms', sa.Double(), nullable=False),
        sa.Column('live_status', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_endpoint_shadow_predictions_endpoint_time', 'endpoint_shadow_predictions', ['endpoint_id', 'time'])
    op.create_index('ix_endpoint_shadow_predictions_request_id', 'endpoint_shadow_predictions', ['request_id'])


def downgrade():
    op.drop_table('endpoint_shadow_predictions')
    with op.batch_alter_table('scoring_servers') as batch:
        batch.drop_column('traffic_percent')
        batch.drop_column('shadow')
