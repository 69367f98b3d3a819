"""The database under storage: migrations, engines and their settings on SQLite and
PostgreSQL, connection limits and timeouts."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import DEFAULTS, sub
from sqlalchemy import UniqueConstraint, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from digest.models import Base
from digest.storage import Storage, StorageError
from digest.storage.database import PING_AFTER_IDLE


def test_migrations_reach_head_and_match_the_models(store: Storage) -> None:
    assert store.db.schema_revision() == store.db.head_revision()
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_upgrade_is_idempotent(store: Storage) -> None:
    store.db.upgrade()
    assert store.db.schema_revision() == store.db.head_revision()


def test_old_schema_is_refused_without_auto_upgrade(db_url: str) -> None:
    store = Storage.from_url(db_url)
    with pytest.raises(StorageError, match="digest db upgrade"):
        store.db.ensure_schema(auto_upgrade=False)
    store.db.ensure_schema(auto_upgrade=True)
    assert store.db.schema_revision() == store.db.head_revision()


def test_every_foreign_key_is_indexed() -> None:
    """PostgreSQL indexes the referenced side of a foreign key, never the referencing one:
    deleting a referenced row (removing a subscriber cascades to their deliveries) then scans
    the referencing table once per row. Measured on a million readers: 0.2 s per delivery
    removed while sent_papers.delivery_id had no index."""
    unindexed = []
    for table in Base.metadata.sorted_tables:
        leading = [tuple(c.name for c in table.primary_key.columns)]
        leading += [tuple(c.name for c in index.columns) for index in table.indexes]
        leading += [
            tuple(c.name for c in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ]
        for key in table.foreign_key_constraints:
            columns = tuple(c.name for c in key.columns)
            if not any(found[: len(columns)] == columns for found in leading):
                unindexed.append(f"{table.name}.{', '.join(columns)}")
    assert unindexed == []


PRAGMAS = ("foreign_keys", "journal_mode", "synchronous")


def test_sqlite_connections_enforce_foreign_keys_and_write_ahead(sqlite_url: str) -> None:
    """Removing a subscriber removes their deliveries only with foreign keys on (SQLite's are
    off by default); the write-ahead log lets the web app read while a worker writes, and
    with it ``synchronous=NORMAL`` loses no committed row on a crash."""
    with Storage.from_url(sqlite_url).db.engine.connect() as conn:
        said = [conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in PRAGMAS]
    assert said == [1, "wal", 1]


def test_a_sqlite_writer_waits_for_another_and_gives_up_after_the_statement_timeout(
    sqlite_url: str,
) -> None:
    Storage.from_url(sqlite_url).db.upgrade()
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    impatient = Storage.from_url(sqlite_url, statement_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="locked"):
        impatient.subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)
    assert time.monotonic() - started < 15, "the web app's statement timeout, not 30 s"

    threading.Timer(1.0, writer.rollback).start()
    Storage.from_url(sqlite_url).subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)
    assert time.monotonic() - started > 1, "a worker waited for the other write to end"
    writer.close()


@pytest.mark.postgres
def test_a_postgres_process_holds_ten_connections_and_the_next_waits_its_connect_timeout(
    pg_url: str,
) -> None:
    """Ten per process (5 kept, 5 more under load) sizes PostgreSQL's max_connections for a
    worker fleet; a request past them gives up like a database that does not answer."""
    engine = Storage.from_url(pg_url, connect_timeout=0.5).db.engine
    held = [engine.connect() for _ in range(10)]
    started = time.monotonic()
    try:
        with pytest.raises(PoolTimeout):
            engine.connect()
        assert time.monotonic() - started < 15, "its connect timeout, not the pool's default 30 s"
        assert engine.pool.size() == 5
    finally:
        for conn in held:
            conn.close()
        engine.dispose()


@pytest.mark.postgres
def test_a_connection_the_database_dropped_is_replaced_not_used(pg_url: str) -> None:
    """A PostgreSQL restart or an idle-session timeout ends pooled connections server side:
    the next query checks first and reconnects instead of failing."""
    store = Storage.from_url(pg_url)
    store.db.upgrade()
    with store.db.engine.connect() as conn:
        pooled = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with Storage.from_url(pg_url).db.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pooled})
    assert store.subscribers.counts() == {}


@pytest.mark.postgres
def test_a_records_connection_is_pinged_only_after_sitting_idle(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records engine serves statements milliseconds apart whose callers retry any
    failure (a sending worker's records): a connection used a moment ago goes without the
    ping, a round trip per message. One dropped in that moment fails once, and the retry
    gets a new one; one that sat idle is pinged, and replaced if the database dropped it."""
    store = Storage.from_url(pg_url)
    records = store.db.records
    pings: list[int] = []
    ping = records.dialect.do_ping
    monkeypatch.setattr(records.dialect, "do_ping", lambda conn: pings.append(1) or ping(conn))

    def backend() -> int:
        with records.connect() as conn:
            return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()

    def drop(pid: int) -> None:
        with store.db.engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})

    first = backend()
    assert backend() == first and pings == [], "the same connection, never pinged"
    drop(first)
    with pytest.raises(OperationalError):
        backend()
    second = backend()
    assert second != first and pings == []
    drop(second)
    time.sleep(PING_AFTER_IDLE + 0.1)
    assert backend() != second and pings == [1], "pinged after sitting idle, then replaced"
    store.dispose()


@pytest.mark.postgres
def test_an_opened_store_gives_up_on_a_statement_after_its_timeout(pg_url: str) -> None:
    """`digest web` opens its store with the web's statement timeout: a page waiting on a lock
    must fail fast (a 503), not hold a server thread."""
    Storage.from_url(pg_url).db.upgrade()
    store = Storage.open(pg_url, statement_timeout=0.5)
    errors: list[str] = []

    def read() -> None:
        try:
            store.subscribers.counts()
        except OperationalError as exc:
            errors.append(str(exc.orig))

    reader = threading.Thread(target=read)
    locker = Storage.from_url(pg_url).db.engine.connect()
    try:
        locker.execute(text("LOCK TABLE subscribers IN ACCESS EXCLUSIVE MODE"))
        reader.start()
        reader.join(timeout=5)
        assert errors and "statement timeout" in errors[0], "still waiting after 5 s"
    finally:
        locker.rollback()
        locker.close()
        if reader.is_alive():
            reader.join()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_needs_no_data_folder(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throwaway store for a trial run: no folder is made for a database with no file."""
    monkeypatch.chdir(tmp_path)
    store = Storage.open(url)
    store.subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)
    assert store.subscribers.counts() == {"active": 1}
    assert list(tmp_path.iterdir()) == []
