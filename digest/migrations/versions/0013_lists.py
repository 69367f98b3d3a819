"""lists; a subscriber row becomes one subscription (address, list) (#34)

Every existing subscriber joins one list, made here: slug ``daily``, title "Paper Digest",
cadence daily, and no sources of its own (it draws on what the settings fetch, as the
install did), so nothing changes for an install that upgrades.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

DEFAULT_LIST = {"slug": "daily", "title": "Paper Digest", "description": "", "cadence": "daily"}


def upgrade() -> None:
    lists = op.create_table(
        "lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("cadence", sa.String(20), nullable=False),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.Column("suggested_topics", sa.JSON(), nullable=False),
        sa.Column("max_papers", sa.Integer(), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("slug", name=op.f("uq_lists_slug")),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    op.bulk_insert(
        lists,
        [
            {
                **DEFAULT_LIST,
                "sources": [],
                "suggested_topics": [],
                "public": True,
                "created_at": now,
            }
        ],
    )
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.add_column(sa.Column("list_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cadence", sa.String(20), nullable=True))
    op.execute(
        sa.text(
            "UPDATE subscribers SET list_id = (SELECT min(id) FROM lists WHERE slug = :slug)"
        ).bindparams(slug=DEFAULT_LIST["slug"])
    )
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.alter_column("list_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint("uq_subscribers_email", type_="unique")
        batch_op.create_unique_constraint("uq_subscribers_list_email", ["list_id", "email"])
        batch_op.create_foreign_key(
            op.f("fk_subscribers_list_id_lists"), "lists", ["list_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index(op.f("ix_subscribers_email"), ["email"])
    with op.batch_alter_table("run_sources") as batch_op:  # a list's query is a source
        batch_op.alter_column("source", existing_type=sa.String(40), type_=sa.String(220))


def downgrade() -> None:
    """Back to one implicit list: only the default list's subscriptions can stay."""
    op.execute(
        sa.text(
            "DELETE FROM subscribers WHERE list_id <> (SELECT min(id) FROM lists WHERE slug = :slug)"
        ).bindparams(slug=DEFAULT_LIST["slug"])
    )
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_index(op.f("ix_subscribers_email"))
        batch_op.drop_constraint(op.f("fk_subscribers_list_id_lists"), type_="foreignkey")
        batch_op.drop_constraint("uq_subscribers_list_email", type_="unique")
        batch_op.create_unique_constraint("uq_subscribers_email", ["email"])
        batch_op.drop_column("cadence")
        batch_op.drop_column("list_id")
    with op.batch_alter_table("run_sources") as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(220), type_=sa.String(40))
    op.drop_table("lists")
