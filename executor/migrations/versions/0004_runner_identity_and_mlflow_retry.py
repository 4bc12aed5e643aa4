"""the runner's start time (to tell it from a later process with its pid), and jobs whose MLflow
run is still to be closed (MLflow was down when they ended)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('runner_started', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('mlflow_pending', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('mlflow_pending')
        batch_op.drop_column('runner_started')
