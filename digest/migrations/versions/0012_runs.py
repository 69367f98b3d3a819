"""runs, run_sources, alerts_sent: a receipt for every tick and `run --now` (#35)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COUNTS = (
    "due",
    "planned",
    "sent",
    "retrying",
    "failed",
    "bounced",
    "skipped_nothing_new",
    "skipped_paused",
    "skipped_already_sent",
    "held_sources_down",
)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worked", sa.Boolean(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'partial', 'failed')", name=op.f("ck_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_started_at"), "runs", ["started_at"])
    op.create_index(op.f("ix_runs_worked"), "runs", ["worked"])
    op.create_table(
        "run_sources",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_sources_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "source", name=op.f("pk_run_sources")),
    )
    op.create_index("ix_run_sources_source_run", "run_sources", ["source", "run_id"])
    op.create_table(
        "alerts_sent",
        sa.Column("problem", sa.String(200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("problem", "day", name=op.f("pk_alerts_sent")),
    )


def downgrade() -> None:
    op.drop_table("alerts_sent")
    op.drop_index("ix_run_sources_source_run", table_name="run_sources")
    op.drop_table("run_sources")
    op.drop_index(op.f("ix_runs_worked"), table_name="runs")
    op.drop_index(op.f("ix_runs_started_at"), table_name="runs")
    op.drop_table("runs")
