"""endpoint alerts: rules and webhook per endpoint, firings with their delivery state

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 19:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'endpoint_alerts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('webhook', sa.String(length=2048), nullable=True),
        sa.Column('rules', sa.JSON(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('endpoint_id'),
    )
    op.create_table(
        'endpoint_alert_firings',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('rule_index', sa.Integer(), nullable=False),
        sa.Column('rule', sa.JSON(), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('fired_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('webhook', sa.String(length=2048), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_endpoint_alert_firings_endpoint_id', 'endpoint_alert_firings', ['endpoint_id'])
    op.create_index('ix_endpoint_alert_firings_state_next', 'endpoint_alert_firings', ['state', 'next_attempt_at'])


def downgrade():
    op.drop_table('endpoint_alert_firings')
    op.drop_table('endpoint_alerts')
