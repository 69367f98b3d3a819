"""papers.featured_at: when Hugging Face Daily Papers first featured the paper, so an old
paper trending today is a candidate by its feature, not by when this install first saw it

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("featured_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.drop_column("featured_at")
