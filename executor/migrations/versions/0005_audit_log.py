"""the audit log: who did what, and when

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 22:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=255), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=255), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    for column in ('at', 'actor', 'action', 'owner'):
        op.create_index(f'ix_audit_log_{column}', 'audit_log', [column])


def downgrade():
    op.drop_table('audit_log')
