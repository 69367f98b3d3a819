"""papers: what Hugging Face shows beside a paper (code, stars, project page, comments,
organization, submitter), so the digest can show it too;
subscribers.show_trending: the "Trending today" section can be switched off;
deliveries.quiet_topics: the subscriber's topics with nothing new that day, said in the email

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PAPER_COLUMNS = (
    ("github_repo", sa.String(length=300)),
    ("github_stars", sa.Integer()),
    ("project_page", sa.String(length=300)),
    ("num_comments", sa.Integer()),
    ("organization", sa.String(length=200)),
    ("submitted_by", sa.String(length=200)),
)


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        for name, type_ in PAPER_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(
            sa.Column("show_trending", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(
            sa.Column("quiet_topics", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("quiet_topics")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("show_trending")
    with op.batch_alter_table("papers") as batch:
        for name, _ in reversed(PAPER_COLUMNS):
            batch.drop_column(name)
