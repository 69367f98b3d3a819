"""sent_papers: an index by delivery, so removing a subscriber (whose deliveries go with
them, setting sent_papers.delivery_id to NULL) does not scan every reader's sent papers once
per delivery

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_sent_papers_delivery_id"), "sent_papers", ["delivery_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sent_papers_delivery_id"), table_name="sent_papers")
