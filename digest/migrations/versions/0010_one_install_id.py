"""installation: the install id is made once, here, instead of by the first process that
sends (two processes starting at once on a new database each made one and signed
Message-IDs differently). A database that already has ids keeps them; the oldest serves.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import datetime as dt
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    installation = sa.table(
        "installation", sa.column("id", sa.String), sa.column("created_at", sa.DateTime)
    )
    if op.get_bind().scalar(sa.select(sa.func.count()).select_from(installation)) == 0:
        op.execute(
            installation.insert().values(
                id=secrets.token_hex(16), created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)
            )
        )


def downgrade() -> None:
    """The id stays: Message-IDs already sent were signed with it."""
