"""usage intervals: what servers, jobs, Dask workers and scoring servers held, and when

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'usage_intervals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('ref', sa.String(length=512), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('groups', sa.JSON(), nullable=True),
        sa.Column('profile', sa.String(length=64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('cpu', sa.Float(), nullable=False),
        sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
        sa.Column('gpus', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended', sa.Boolean(), nullable=False),
        sa.Column('cpu_used_seconds', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'ref', 'started_at'),
    )
    for column in ('owner', 'last_seen_at', 'ended'):
        op.create_index(f'ix_usage_intervals_{column}', 'usage_intervals', [column])


def downgrade():
    op.drop_table('usage_intervals')
