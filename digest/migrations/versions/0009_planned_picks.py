"""planned_picks: the daily run on PostgreSQL writes each distinct pick once and delivery
rows name them by number (deliveries.plan), instead of every row carrying its picks whole

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "planned_picks",
        sa.Column("plan", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("pick", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("plan", "number", name=op.f("pk_planned_picks")),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("plan", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("plan")
    op.drop_table("planned_picks")
