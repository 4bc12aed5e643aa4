"""gpu leases: the table as GPUInventory made it with create_all before the store was migrated

Revision ID: 0001
Revises:
Create Date: 2026-12-05 07:27:28.073859
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('gpu_leases',
    sa.Column('device', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('device')
    )
    with op.batch_alter_table('gpu_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gpu_leases_holder'), ['holder'], unique=False)


def downgrade():
    with op.batch_alter_table('gpu_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gpu_leases_holder'))

    op.drop_table('gpu_leases')
