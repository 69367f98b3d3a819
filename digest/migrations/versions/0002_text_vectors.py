"""text_vectors: sentence embeddings stored once per text, shared by every worker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "text_vectors",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_text_vectors")),
    )
    op.create_index(
        op.f("ix_text_vectors_created_at"), "text_vectors", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_text_vectors_created_at"), table_name="text_vectors")
    op.drop_table("text_vectors")
