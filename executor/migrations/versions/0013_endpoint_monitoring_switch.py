"""endpoint monitoring switch: false keeps no sample of requests and no predictions

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-06 08:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('endpoints') as batch:
        batch.add_column(sa.Column('monitoring', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade():
    with op.batch_alter_table('endpoints') as batch:
        batch.drop_column('monitoring')
