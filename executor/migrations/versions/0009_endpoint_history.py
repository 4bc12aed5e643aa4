"""endpoint history: every deploy, update, rollback and delete of an endpoint, with its versions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 03:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'endpoint_history',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('endpoint', sa.String(length=63), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=255), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('versions', sa.JSON(), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    for column in ('endpoint_id', 'endpoint'):
        op.create_index(f'ix_endpoint_history_{column}', 'endpoint_history', [column])


def downgrade():
    op.drop_table('endpoint_history')
