"""gated retraining: a schedule's promotion policy, jobs whose decision is pending, the decisions

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 19:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('schedules') as batch:
        batch.add_column(sa.Column('promotion', sa.JSON(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('promotion_pending', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index('ix_jobs_promotion_pending', ['promotion_pending'])
    op.create_table(
        'promotion_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('schedule_id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('owner', sa.String(length=255), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('model', sa.String(length=255), nullable=False),
        sa.Column('metric', sa.String(length=255), nullable=False),
        sa.Column('greater_is_better', sa.Boolean(), nullable=False),
        sa.Column('margin', sa.Float(), nullable=False),
        sa.Column('alias', sa.String(length=255), nullable=False),
        sa.Column('endpoint', sa.String(length=63), nullable=True),
        sa.Column('challenger_version', sa.String(length=32), nullable=True),
        sa.Column('champion_version', sa.String(length=32), nullable=True),
        sa.Column('challenger_value', sa.Float(), nullable=True),
        sa.Column('champion_value', sa.Float(), nullable=True),
        sa.Column('promoted', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('endpoint_history_id', sa.Integer(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_id'),
    )
    op.create_index('ix_promotion_decisions_schedule_id', 'promotion_decisions', ['schedule_id'])


def downgrade():
    op.drop_table('promotion_decisions')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_promotion_pending')
        batch.drop_column('promotion_pending')
    with op.batch_alter_table('schedules') as batch:
        batch.drop_column('promotion')
