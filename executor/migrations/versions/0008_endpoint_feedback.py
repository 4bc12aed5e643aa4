"""endpoint predictions and feedback (labels), and an endpoint's declared task

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('endpoints') as batch:
        batch.add_column(sa.Column('task', sa.String(length=16), nullable=True))
    op.create_table(
        'endpoint_predictions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.String(length=32), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=255), nullable=False),
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('outputs', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('request_id'),
    )
    op.create_index('ix_endpoint_predictions_endpoint_time', 'endpoint_predictions', ['endpoint_id', 'time'])
    op.create_table(
        'endpoint_feedback',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('request_id', sa.String(length=32), nullable=False),
        sa.Column('label', sa.JSON(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('by', sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['endpoints.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('endpoint_id', 'request_id'),
    )
    op.create_index('ix_endpoint_feedback_at', 'endpoint_feedback', ['at'])


def downgrade():
    op.drop_table('endpoint_feedback')
    op.drop_table('endpoint_predictions')
    with op.batch_alter_table('endpoints') as batch:
        batch.drop_column('task')
