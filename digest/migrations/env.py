"""Alembic environment: runs against the engine the caller hands over (see storage.alembic_config)."""

from alembic import context

from digest.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    """On SQLite, foreign keys are off while migrating: a batch migration rebuilds a table
    by copying it and dropping the old one, and dropping a parent table (subscribers) with
    them on would cascade-delete its children (deliveries, topics, votes)."""
    engine = context.config.attributes["engine"]
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    render_as_batch=sqlite,  # SQLite cannot ALTER most things
                    compare_type=True,
                )
                context.run_migrations()
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


run_migrations()
