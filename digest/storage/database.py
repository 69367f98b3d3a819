"""The database itself: the engine and its settings, sessions, the schema's migrations, and
the few statement helpers every concept's queries share.

Each concept (:mod:`.subscribers`, :mod:`.papers`, ...) holds a :class:`Database` and runs
its own short transactions through :meth:`Database.session`; nothing here knows a table."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, ExceptionContext, Result, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

    from digest.models import Base

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"
CHUNK = 500  # rows per IN (...) / bulk statement: well under SQLite's variable limit
# above this many subscribers, reading a table's relevant rows in one pass beats IN lists of
# their ids (measured: 200 IN queries of 500 ids cost 2.5 s per 100,000 on PostgreSQL)
MANY_SUBSCRIBERS = 5_000
# PostgreSQL connections probe an idle peer (after 30 s, every 10 s, 3 times) and drop one
# whose sent data goes unacknowledged for 30 s: a worker learns of a vanished database in a
# minute, not after the kernel's two hours
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
DEADLINE_GRACE = 2.0  # seconds past the server's statement timeout before the client gives up
DEADLINE_CHECK = 0.25  # seconds between the deadline watcher's looks
PING_AFTER_IDLE = 1.0  # seconds in the pool after which a records connection is pinged
# Reading millions of rows: take them with .all() (one fetchall), never by iterating a result,
# which fetches row by row (measured: 3M rows cost 9 s one by one on psycopg, under 2 s at once)


class StorageError(Exception):
    """A user-facing storage problem (unknown subscriber, schema out of date, ...)."""


class Database:
    """One engine and its sessions. Cheap to create; share one per process.

    Rows leave a session only as the plain records of `digest.records`: SQLAlchemy's default
    expiry on commit stays on, so code that slipped an ORM object past its session would
    fail loudly (DetachedInstanceError) instead of reading values that may be stale."""

    def __init__(self, engine: Engine, connect_timeout: float = 5.0) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine)
        self._connect_timeout = connect_timeout
        self._records: Engine | None = None
        self._records_lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
    ) -> Database:
        return cls(make_engine(url, connect_timeout, statement_timeout), connect_timeout)

    @property
    def records(self) -> Engine:
        """PostgreSQL: an engine of its own for single statements that follow each other by
        milliseconds and whose callers retry them on any failure, a sending worker's records.
        Each statement commits by itself (autocommit), and a connection is pinged only after
        sitting idle for :data:`PING_AFTER_IDLE`: the ping before every use was a round trip
        to a database backend that must first be woken, 2 ms per message on a busy machine
        (docs/performance.md, "The one-message window"). Elsewhere, the engine itself."""
        if self.engine.dialect.name != "postgresql":
            return self.engine
        with self._records_lock:
            if self._records is None:
                url = self.engine.url.render_as_string(hide_password=False)
                self._records = make_engine(url, self._connect_timeout, records=True)
            return self._records

    @classmethod
    def open(
        cls, url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
    ) -> Database:
        """A database ready for work: the embedded SQLite database brings its own schema up
        to date; any other must have been migrated by `digest db upgrade` first."""
        db = cls.from_url(url, connect_timeout, statement_timeout)
        try:
            db.ensure_schema(auto_upgrade=url.startswith("sqlite"))
        except OperationalError as exc:
            raise StorageError(
                f"cannot reach the database at {db.engine.url!r}: {exc.orig}"
            ) from None
        return db

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close the pools' connections (a test's database is dropped after it)."""
        self.engine.dispose()
        if self._records is not None:
            self._records.dispose()

    # -- schema ---------------------------------------------------------------------------

    def schema_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(alembic_config(self.engine)).get_current_head()

    def upgrade(self) -> None:
        """Apply every pending Alembic migration (idempotent)."""
        command.upgrade(alembic_config(self.engine), "head")

    def ensure_schema(self, auto_upgrade: bool) -> None:
        """Upgrade when allowed (embedded SQLite); otherwise refuse to run on an old schema."""
        if self.schema_revision() == self.head_revision():
            return
        if auto_upgrade:
            self.upgrade()
            return
        raise StorageError("the database schema is not up to date: run `digest db upgrade` first")


_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` :data:`CHUNK` at a time, for IN lists and bulk statements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def insert_ignoring_duplicates(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, object]],
    keys: list[str],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT DO NOTHING on either backend; returns the new rows' ``returning``
    columns (by default their first key).

    One statement, compiled once, that SQLAlchemy sends in large multi-row batches
    ("insertmanyvalues"). A multi-row VALUES built per chunk cost more to compile than to
    run: 100,000 deliveries took 33 s that way on PostgreSQL."""
    if not rows:
        return []
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = model.__table__
    statement = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(*(table.c[name] for name in returning or keys[:1]))
    )
    return [tuple(row) for row in session.execute(statement, list(rows))]


def changed_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched. ``rowcount`` is on the CursorResult such
    statements return, which ``Session.execute`` types as a plain Result."""
    assert isinstance(result, CursorResult)
    return result.rowcount


def make_engine(
    url: str,
    connect_timeout: float = 5.0,
    statement_timeout: float | None = None,
    records: bool = False,
) -> Engine:
    """Create an engine with the per-backend settings that matter for concurrent workers.

    A database that hangs instead of refusing must not hang its callers: connecting gives up
    after ``connect_timeout`` seconds, and with a ``statement_timeout`` (the web app) so does
    any statement, lock waits included (SQLite: its busy wait). ``records``: PostgreSQL
    only, autocommit and pinged after idle (see :attr:`Database.records`).
    """
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError):
        raise StorageError(
            f"DIGEST_DATABASE_URL {url!r} is not a database URL SQLAlchemy knows; like "
            "postgresql+psycopg://user@host/db, or empty for SQLite in DIGEST_DATA_DIR"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _make_data_dir(Path(parsed.database).parent)
    try:
        return _engine(url, connect_timeout, statement_timeout, records)
    except ImportError as exc:
        raise StorageError(
            f"DIGEST_DATABASE_URL {url!r} needs a database driver that is not installed ({exc.name}); "
            "Paper Digest supports PostgreSQL (postgresql+psycopg://) and SQLite"
        ) from None


def _make_data_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot use {folder} for the database (DIGEST_DATA_DIR): {exc.strerror}"
        ) from None


def _engine(
    url: str, connect_timeout: float, statement_timeout: float | None, records: bool
) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": statement_timeout or 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: object) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args: dict[str, object] = {
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        **KEEPALIVES,
    }
    if statement_timeout:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    engine = create_engine(
        url,
        pool_pre_ping=not statement_timeout and not records,
        pool_size=5,
        max_overflow=5,
        pool_timeout=connect_timeout,
        connect_args=connect_args,
        **({"isolation_level": "AUTOCOMMIT"} if records else {}),
    )
    if statement_timeout:
        StatementDeadline(statement_timeout + DEADLINE_GRACE).watch(engine)
    if records:
        _ping_after_idle(engine, PING_AFTER_IDLE)
    return engine


def _ping_after_idle(engine: Engine, idle: float) -> None:
    """What pool_pre_ping does, only for a connection that sat in the pool longer than
    ``idle`` seconds: a dead one is replaced (DisconnectionError). One used a moment ago
    is handed out as it is; if the server went away in that moment, the statement fails
    and its caller tries again on a new connection (the pool discards the dead ones)."""

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _back(_dbapi_conn: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: DBAPIConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in", 0.0) > idle:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:  # noqa: BLE001 - any failure: the connection is not usable
                raise DisconnectionError(str(exc)) from exc


class StatementDeadline:
    """The client's own limit on how long a statement waits for PostgreSQL.

    The server's statement timeout never fires on a server that hears nothing (a hung
    network path, not a refused connection), and TCP keepalives only notice a peer that has
    gone for good, after minutes. A web request must not wait that long: a watcher thread
    shuts down the socket of any statement (or pre-use ping) overdue by ``seconds``, which
    psycopg reports as a lost connection; the pool discards it and the page is a 503."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._due: dict[int, tuple[float, socket.socket]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, name="statement-deadline", daemon=True).start()

    def watch(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._arm_statement)
        event.listen(engine, "after_cursor_execute", self._disarm_statement)
        event.listen(engine, "handle_error", self._disarm_failed)
        event.listen(engine, "checkout", self._ping)

    def _ping(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        """What pool_pre_ping does, under the deadline: a dead pooled connection is
        replaced (DisconnectionError), and the replacement is bounded by connect_timeout."""
        self.arm(dbapi_conn, dbapi_conn)
        try:
            dbapi_conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure: the connection is not usable
            raise DisconnectionError(str(exc)) from exc
        finally:
            self.disarm(dbapi_conn)

    def arm(self, key: object, dbapi_conn: Any) -> None:
        """Starts the clock for ``key`` (a cursor, or the connection while it is pinged).
        The watcher keeps its own handle on the socket, so it can never reach another
        socket that later gets the same descriptor number."""
        handle = socket.socket(fileno=os.dup(dbapi_conn.fileno()))
        with self._lock:
            self._due[id(key)] = (time.monotonic() + self.seconds, handle)

    def disarm(self, key: object) -> None:
        with self._lock:
            entry = self._due.pop(id(key), None)
        if entry:
            entry[1].close()

    def _arm_statement(self, conn: Connection, cursor: Any, *_args: Any) -> None:
        self.arm(cursor, conn.connection.dbapi_connection)

    def _disarm_statement(self, _conn: Connection, cursor: Any, *_args: Any) -> None:
        self.disarm(cursor)

    def _disarm_failed(self, context: ExceptionContext) -> None:
        cursor = getattr(context, "cursor", None)  # unset when no connection was made
        if cursor is not None:
            self.disarm(cursor)

    def _watch(self) -> None:
        while True:
            time.sleep(DEADLINE_CHECK)
            now = time.monotonic()
            with self._lock:
                overdue = [key for key, (due, _) in self._due.items() if due <= now]
                handles = [self._due.pop(key)[1] for key in overdue]
            for handle in handles:
                with suppress(OSError):
                    handle.shutdown(socket.SHUT_RDWR)
                handle.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A brand-new PostgreSQL database on ``admin_url``'s server, named ``prefix`` and a random
    suffix, dropped afterwards: what the tests and benchmarks fill, so they never touch a
    database they did not create."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
