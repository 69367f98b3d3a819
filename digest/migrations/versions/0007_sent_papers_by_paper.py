"""sent_papers: an index by paper, so the daily run reads who already got today's candidates
without reading every subscriber's whole history

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_sent_papers_arxiv_id"), "sent_papers", ["arxiv_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sent_papers_arxiv_id"), table_name="sent_papers")
