"""`digest db`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from digest.cli.common import AppContext, pass_app


@click.group()
def db() -> None:
    """Database schema management (Alembic migrations).

    \b
    Example:
      digest db upgrade
    """


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Apply all pending migrations (after every upgrade of Paper Digest, on PostgreSQL).

    \b
    Example:
      DIGEST_DATABASE_URL=postgresql+psycopg://user@host/digest digest db upgrade
    """
    from digest.storage import Storage

    store = Storage.from_url(app.settings.resolved_database_url)
    before = store.db.schema_revision()
    store.db.upgrade()
    after = store.db.schema_revision()
    click.echo(f"database at revision {after} (was {before or 'empty'})")


@db.command("current")
@pass_app
def db_current(app: AppContext) -> None:
    """Show the database's schema revision and the newest this version knows.

    \b
    Example:
      digest db current
    """
    from digest.storage import Storage

    store = Storage.from_url(app.settings.resolved_database_url)
    click.echo(
        f"current: {store.db.schema_revision() or 'empty'}  head: {store.db.head_revision()}"
    )
