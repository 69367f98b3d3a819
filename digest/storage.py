"""The only module that talks to the database.

Callers get plain records (dataclasses) back, never live ORM objects, so the CLI, the web
app and the Celery tasks cannot trip over detached sessions or lazy loads. Every public
method is one short transaction.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import secrets
import zoneinfo
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from digest.models import (
    Delivery,
    HttpCache,
    Installation,
    Paper,
    PlannedPick,
    SentPaper,
    Subscriber,
    SubscriberTopic,
    TextVector,
    Topic,
    Vote,
    utcnow,
)
from digest.records import (
    ChangeReport,
    DeliveryRecord,
    NewDelivery,
    SentRecord,
    SubscriberDefaults,
    SubscriberRecord,
    VoteRecord,
    Votes,
)
from digest.sources import MERGED_FIELDS, PaperRecord, merge_paper
from digest.subscriptions import OPTED_OUT, SubscriberInput

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
CHUNK = 500  # rows per IN (...) / bulk statement: well under SQLite's variable limit
# above this many subscribers, reading a table's relevant rows in one pass beats IN lists of
# their ids (measured: 200 IN queries of 500 ids cost 2.5 s per 100,000 on PostgreSQL)
MANY_SUBSCRIBERS = 5_000
# Reading millions of rows: take them with .all() (one fetchall), never by iterating a result,
# which fetches row by row (measured: 3M rows cost 9 s one by one on psycopg, under 2 s at once)
EPOCH = dt.datetime(1970, 1, 1)  # first seen "long ago": a paper looked up, not announced
VOTES_USED = 50  # a reader's newest votes that ranking learns from: bounded work per reader
ARCHIVE_EDITIONS = 60  # past digests listed on the preferences page and in the feed


# The two statements every sent message runs, built once: constructing them per call cost
# about as much as executing them.
CLAIM = (
    update(Delivery.__table__)
    .where(
        Delivery.id.in_(bindparam("p_ids", expanding=True)),
        Delivery.status == "queued",
        or_(Delivery.next_try_at.is_(None), Delivery.next_try_at <= bindparam("p_now")),
    )
    .values(
        status="sending",
        claimed_at=bindparam("p_now"),
        claim_token=bindparam("p_claim"),
        attempts=Delivery.attempts + 1,
    )
    .returning(Delivery.id)
)
MARK_SENT = (
    update(Delivery.__table__)
    .where(
        Delivery.id == bindparam("p_id"),
        Delivery.status == "sending",
        Delivery.claim_token == bindparam("p_claim"),
    )
    .values(
        status="sent",
        sent_at=bindparam("p_now"),
        message_id=bindparam("p_message_id"),
        last_error=None,  # done: earlier trouble is history (a possible duplicate stays in `resent`)
    )
)
RECORD_SENT_PAPERS = {
    name: dialect.insert(SentPaper.__table__).on_conflict_do_nothing(
        index_elements=["subscriber_id", "arxiv_id"]
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


class StorageError(Exception):
    """A user-facing storage problem (unknown subscriber, schema out of date, ...)."""


def _to_record(sub: Subscriber) -> SubscriberRecord:
    return SubscriberRecord(
        id=sub.id,
        email=sub.email,
        status=sub.status,
        topics=tuple(sub.topics),
        timezone=sub.timezone,
        send_hour=sub.send_hour,
        max_papers=sub.max_papers,
        created_at=sub.created_at,
        confirmed_at=sub.confirmed_at,
        show_trending=sub.show_trending,
    )


RECORD_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.status,
    Subscriber.timezone,
    Subscriber.send_hour,
    Subscriber.max_papers,
    Subscriber.created_at,
    Subscriber.confirmed_at,
    Subscriber.show_trending,
)


def _subscriber_records(session: Session, condition: ColumnElement[bool]) -> list[SubscriberRecord]:
    """The subscribers matching ``condition`` as records, in two plain queries (their rows,
    then all their topics): the daily run reads a million of them, and building ORM
    objects with their topic links cost most of a planning tick."""
    topics: dict[int, list[str]] = {}
    conn = session.connection()
    topic_rows = conn.execute(
        select(SubscriberTopic.subscriber_id, Topic.name)
        .join(Topic)
        .join(Subscriber)
        .where(condition)
        .order_by(SubscriberTopic.position)
    )
    for subscriber_id, name in topic_rows.all():
        topics.setdefault(subscriber_id, []).append(name)
    rows = conn.execute(select(*RECORD_COLUMNS).where(condition).order_by(Subscriber.id))
    return [
        SubscriberRecord(
            sid,
            email,
            status,
            tuple(topics.get(sid, ())),
            tz,
            hour,
            size,
            created,
            confirmed,
            trend,
        )
        for sid, email, status, tz, hour, size, created, confirmed, trend in rows.all()
    ]


def _paper_record(paper: Paper) -> PaperRecord:
    return PaperRecord(
        arxiv_id=paper.arxiv_id,
        first_seen_at=paper.first_seen_at,
        **{name: getattr(paper, name) for name in MERGED_FIELDS},
    )


Planned = dict[tuple[int, int], dict[str, Any]]  # (plan, number) -> the pick


def _planned_picks(session: Session, deliveries: Iterable[Delivery]) -> Planned:
    """The PlannedPick rows that ``deliveries`` name by number, in one query per plan."""
    wanted: dict[int, set[int]] = {}
    for delivery in deliveries:
        if delivery.plan is not None:
            wanted.setdefault(delivery.plan, set()).update(delivery.picks)
    found: Planned = {}
    for plan, numbers in wanted.items():
        for chunk in _chunks(sorted(numbers)):
            rows = session.execute(
                select(PlannedPick.number, PlannedPick.pick).where(
                    PlannedPick.plan == plan, PlannedPick.number.in_(chunk)
                )
            )
            found.update(((plan, number), pick) for number, pick in rows)
    return found


def _picks_of(delivery: Delivery, planned: Planned) -> list[dict[str, Any]]:
    if delivery.plan is None:
        return list(delivery.picks)
    return [planned[(delivery.plan, number)] for number in delivery.picks]


def _to_delivery(delivery: Delivery, email: str, planned: Planned) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery.id,
        subscriber_id=delivery.subscriber_id,
        email=email,
        edition=delivery.edition,
        status=delivery.status,
        picks=_picks_of(delivery, planned),
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        message_id=delivery.message_id,
        sent_at=delivery.sent_at,
        next_try_at=delivery.next_try_at,
        resent=delivery.resent,
        quiet_topics=tuple(delivery.quiet_topics or ()),
    )


def _insert_ignoring_duplicates(
    session: Session,
    model: type,
    rows: Sequence[dict[str, object]],
    keys: list[str],
    returning: Sequence[str] = (),
) -> list[tuple]:
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


NEW_DELIVERY_COLUMNS = (
    "subscriber_id",
    "edition",
    "picks",
    "quiet_topics",
    "status",
    "attempts",
    "created_at",
    "enqueued_at",
)
COPY_LINES = 5_000  # delivery rows per write into a COPY
COMPACT = (",", ":")  # JSON without spaces: a million rows a day, each byte a megabyte


class _DeliveryLines:
    """New delivery rows as lines of COPY's text format, their picks by number.

    The picks of a day are shared objects across rows (see
    :class:`digest.editions.StoredPicks`): each distinct one is numbered and encoded once,
    and a row holds only the numbers (see :class:`digest.models.PlannedPick`). Objects are
    keyed by identity and held, so an id cannot be reused while this lives. JSON escapes
    control characters, so doubling backslashes is all COPY's text format needs."""

    def __init__(self, created_at: dt.datetime, handed_out_at: dt.datetime | None) -> None:
        self._numbers: dict[int, str] = {}  # id(pick) -> its number, as text
        self._picks: list[object] = []  # by number; also keeps each id taken
        self._dates: dict[dt.date, str] = {}
        self._created = created_at.isoformat(sep=" ")
        self._handed_out = handed_out_at.isoformat(sep=" ") if handed_out_at else "\\N"

    def __call__(self, row: NewDelivery) -> str:
        """One row's line. Runs a million times a planning run: lookups are inlined."""
        numbers = self._numbers
        picks = ",".join([numbers.get(id(p)) or self._number(p) for p in row.picks])
        edition = self._dates.get(row.edition) or self._date(row.edition)
        quiet = _copy_json(list(row.quiet_topics)) if row.quiet_topics else "[]"
        handed_out = self._handed_out if row.status == "queued" else "\\N"
        return (
            f"{row.subscriber_id}\t{edition}\t[{picks}]\t{quiet}\t{row.status}\t0\t"
            f"{self._created}\t{handed_out}\n"
        )

    def _number(self, pick: object) -> str:
        number = self._numbers[id(pick)] = str(len(self._picks))
        self._picks.append(pick)
        return number

    def _date(self, day: dt.date) -> str:
        text = self._dates[day] = day.isoformat()
        return text

    def planned_picks(self, plan: int) -> Iterator[str]:
        """The numbered picks as lines for COPY into planned_picks."""
        for number, pick in enumerate(self._picks):
            yield f"{plan}\t{number}\t{_copy_json(pick)}\n"


def _copy_json(value: object) -> str:
    return json.dumps(value, separators=COMPACT).replace("\\", "\\\\")


def _copy_lines(cursor: psycopg.Cursor, target: str, lines: Iterable[str]) -> None:
    """COPY ``lines`` into ``target``. The writer sends from a thread of its own, so the
    database server takes in rows while Python formats the next ones (2 cores: both busy)."""
    from psycopg.copy import QueuedLibpqWriter

    lines = iter(lines)
    with cursor.copy(f"COPY {target} FROM STDIN", writer=QueuedLibpqWriter(cursor)) as copy:
        while chunk := "".join(itertools.islice(lines, COPY_LINES)):
            copy.write(chunk)


def _copy_new_deliveries(
    session: Session,
    rows: Collection[NewDelivery],
    created_at: dt.datetime,
    handed_out_at: dt.datetime | None,
) -> list[tuple[int, str]]:
    """PostgreSQL: COPY the planned rows straight into deliveries, ids drawn from its
    sequence first (COPY returns none). A row that already exists (two ticks planning the
    same subscriber's edition at once) fails that COPY as a whole; then the rows go through
    a temporary table and one INSERT ... SELECT ... ON CONFLICT DO NOTHING, which skips
    them (measured at 1M rows: 24 s straight, 43 s through the temporary table)."""
    from psycopg.errors import UniqueViolation

    if not rows:
        return []
    line = _DeliveryLines(created_at, handed_out_at)
    columns = ", ".join(NEW_DELIVERY_COLUMNS)
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("SAVEPOINT straight_copy")
    cursor.execute("SELECT nextval('deliveries_id_seq') FROM generate_series(1, %s)", [len(rows)])
    ids = [delivery_id for (delivery_id,) in cursor.fetchall()]
    plan = ids[0]  # unique: no other run draws it from the sequence
    statuses: list[str] = []

    def numbered() -> Iterator[str]:
        for delivery_id, row in zip(ids, rows, strict=True):
            statuses.append(row.status)
            yield f"{delivery_id}\t{plan}\t{line(row)}"

    try:
        _copy_lines(cursor, f"deliveries (id, plan, {columns})", numbered())
    except UniqueViolation:
        cursor.execute("ROLLBACK TO SAVEPOINT straight_copy")
        cursor.execute(
            "CREATE TEMPORARY TABLE new_deliveries (LIKE deliveries INCLUDING DEFAULTS)"
            " ON COMMIT DROP"
        )
        _copy_lines(cursor, f"new_deliveries ({columns})", map(line, rows))
        cursor.execute(
            f"INSERT INTO deliveries (plan, {columns}) SELECT %s, {columns} FROM new_deliveries"
            " ON CONFLICT (subscriber_id, edition) DO NOTHING RETURNING id, status",
            [plan],
        )
        created = cursor.fetchall()
    else:
        cursor.execute("RELEASE SAVEPOINT straight_copy")
        created = list(zip(ids, statuses, strict=True))
    _copy_lines(cursor, "planned_picks (plan, number, pick)", line.planned_picks(plan))
    return created


def _chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def make_engine(
    url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
) -> Engine:
    """Create an engine with the per-backend settings that matter for concurrent workers.

    A database that hangs instead of refusing must not hang its callers: connecting gives up
    after ``connect_timeout`` seconds, and with a ``statement_timeout`` (the web app) so does
    any statement, lock waits included (SQLite: its busy wait).
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
        return _engine(url, connect_timeout, statement_timeout)
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


def _engine(url: str, connect_timeout: float, statement_timeout: float | None) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": statement_timeout or 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args: dict[str, object] = {"connect_timeout": max(1, math.ceil(connect_timeout))}
    if statement_timeout:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout * 1000)}"
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_timeout=connect_timeout,
        connect_args=connect_args,
    )


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


class Store:
    """Storage operations over one engine. Cheap to create; share one per process.

    Rows leave a session only as the plain records of `digest.records`: SQLAlchemy's default
    expiry on commit stays on, so code that slipped an ORM object past its session would
    fail loudly (DetachedInstanceError) instead of reading values that may be stale."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine)
        self._install_id: str | None = None

    @classmethod
    def from_url(
        cls, url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
    ) -> Store:
        return cls(make_engine(url, connect_timeout, statement_timeout))

    @classmethod
    def open(
        cls, url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
    ) -> Store:
        """A store ready for work: the embedded SQLite database brings its own schema up to
        date; any other must have been migrated by `digest db upgrade` first."""
        store = cls.from_url(url, connect_timeout, statement_timeout)
        try:
            store.ensure_schema(auto_upgrade=url.startswith("sqlite"))
        except OperationalError as exc:
            raise StorageError(
                f"cannot reach the database at {store.engine.url!r}: {exc.orig}"
            ) from None
        return store

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

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

    # -- topics ---------------------------------------------------------------------------

    def _topic_ids(self, session: Session, names: Iterable[str]) -> dict[str, int]:
        """Ids for the given topic names, creating the missing ones in bulk."""
        wanted = sorted(set(names))
        ids: dict[str, int] = {}
        for chunk in _chunks(wanted):
            ids.update(
                session.execute(select(Topic.name, Topic.id).where(Topic.name.in_(chunk))).all()
            )
        missing = [name for name in wanted if name not in ids]
        # another sign-up or import may create the same new topic at this moment
        ids.update(
            _insert_ignoring_duplicates(
                session, Topic, [{"name": n} for n in missing], ["name"], ("name", "id")
            )
        )
        for chunk in _chunks([name for name in missing if name not in ids]):
            ids.update(
                session.execute(select(Topic.name, Topic.id).where(Topic.name.in_(chunk))).all()
            )
        return ids

    def _set_topics(
        self, session: Session, subscriber_ids_topics: dict[int, Sequence[str]]
    ) -> None:
        ids = self._topic_ids(session, (t for ts in subscriber_ids_topics.values() for t in ts))
        for chunk in _chunks(list(subscriber_ids_topics)):
            session.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id.in_(chunk)))
        links = [
            {"subscriber_id": sid, "topic_id": ids[name], "position": pos}
            for sid, names in subscriber_ids_topics.items()
            for pos, name in enumerate(names)
        ]
        for chunk in _chunks(links):
            session.execute(insert(SubscriberTopic), list(chunk))
        self._drop_unused_topics(session)

    @staticmethod
    def _drop_unused_topics(session: Session) -> None:
        used = select(SubscriberTopic.topic_id).distinct()
        session.execute(delete(Topic).where(Topic.id.not_in(used)))

    def topic_counts(self) -> list[tuple[str, int]]:
        """Topics with how many active subscribers follow them, most followed first."""
        with self.session() as session:
            count = func.count()
            rows = session.execute(
                select(Topic.name, count)
                .join(SubscriberTopic)
                .join(Subscriber)
                .where(Subscriber.status == "active")
                .group_by(Topic.name)
                .order_by(count.desc(), Topic.name)
            )
            return [(name, n) for name, n in rows]

    def rename_topic(self, old: str, new: str) -> int:
        """Rename ``old`` to ``new`` for everyone; merges when ``new`` already exists.

        Returns the number of subscribers affected.
        """
        with self.session() as session:
            old_topic = session.scalar(select(Topic).where(Topic.name == old))
            if old_topic is None:
                raise StorageError(f"no subscriber follows the topic {old!r}")
            new_topic = session.scalar(select(Topic).where(Topic.name == new))
            if new_topic is None:
                old_topic.name = new
                return session.execute(
                    select(func.count()).where(SubscriberTopic.topic_id == old_topic.id)
                ).scalar_one()
            holders = set(
                session.scalars(
                    select(SubscriberTopic.subscriber_id).where(
                        SubscriberTopic.topic_id == new_topic.id
                    )
                )
            )
            links = session.scalars(
                select(SubscriberTopic).where(SubscriberTopic.topic_id == old_topic.id)
            ).all()
            for link in links:
                if link.subscriber_id in holders:
                    session.delete(link)
                else:
                    link.topic_id = new_topic.id
            session.flush()
            session.delete(old_topic)
            return len(links)

    # -- subscribers ----------------------------------------------------------------------

    def _get(self, session: Session, email: str) -> Subscriber:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
        if sub is None:
            raise StorageError(f"no subscriber with email {email}")
        return sub

    def get_subscriber(self, email: str) -> SubscriberRecord | None:
        with self.session() as session:
            sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
            return _to_record(sub) if sub else None

    def install_id(self) -> str:
        """This database's install id, made on first use. Two processes starting at once on a
        new database may each make one; the oldest then serves everyone, and either keeps
        Message-IDs apart from another install's."""
        if self._install_id is None:
            with self.session() as session:
                self._install_id = session.scalar(
                    select(Installation.id)
                    .order_by(Installation.created_at, Installation.id)
                    .limit(1)
                )
                if self._install_id is None:
                    self._install_id = secrets.token_hex(16)
                    session.add(Installation(id=self._install_id))
        return self._install_id

    def require_subscriber(self, email: str) -> SubscriberRecord:
        """The subscriber, or a StorageError that says there is none."""
        with self.session() as session:
            return _to_record(self._get(session, email))

    def get_subscriber_by_id(self, subscriber_id: int) -> SubscriberRecord | None:
        with self.session() as session:
            sub = session.get(Subscriber, subscriber_id)
            return _to_record(sub) if sub else None

    def add_subscriber(
        self, data: SubscriberInput, defaults: SubscriberDefaults, status: str = "active"
    ) -> SubscriberRecord:
        with self.session() as session:
            existing = session.scalar(
                select(Subscriber.status).where(Subscriber.email == data.email)
            )
            if existing in OPTED_OUT:
                raise StorageError(
                    f"{data.email} is {existing}: they asked to stop, or their mailbox refused "
                    f"our mail. Only with their consent: digest subscribers resume --force {data.email}"
                )
            if existing:
                raise StorageError(
                    f"{data.email} is already subscribed (use `digest subscribers set` to change it)"
                )
            sub = Subscriber(
                email=data.email,
                status=status,
                confirmed_at=utcnow() if status == "active" else None,
                **defaults.schedule_of(data),
            )
            session.add(sub)
            session.flush()
            self._set_topics(session, {sub.id: data.topics})
            session.refresh(sub)
            return _to_record(sub)

    def request_subscription(
        self, data: SubscriberInput, defaults: SubscriberDefaults
    ) -> tuple[SubscriberRecord, bool]:
        """A self-service sign-up: returns the subscriber and whether a confirmation is needed.

        A new or still pending address is (or stays) pending with the settings just given. An
        unsubscribed or bounced row is left exactly as it is, history included: the record
        that this person opted out must survive anyone re-typing their address, so the new
        settings travel in the confirmation link and apply only when it is used
        (:meth:`confirm_subscription`). An active or paused subscriber is left as it is too.
        Two sign-ups of one new address at once: the second finds the first's row.
        """
        try:
            return self._request_subscription(data, defaults)
        except IntegrityError:
            return self._request_subscription(data, defaults)

    def _request_subscription(
        self, data: SubscriberInput, defaults: SubscriberDefaults
    ) -> tuple[SubscriberRecord, bool]:
        with self.session() as session:
            sub = session.scalar(select(Subscriber).where(Subscriber.email == data.email))
            if sub is not None and sub.status != "pending":
                return _to_record(sub), sub.status in OPTED_OUT
            if sub is None:
                sub = Subscriber(email=data.email, status="pending")
                session.add(sub)
            for name, value in defaults.schedule_of(data).items():
                setattr(sub, name, value)
            session.flush()
            self._set_topics(session, {sub.id: data.topics})
            session.refresh(sub)
            return _to_record(sub), True

    def confirm_subscription(
        self,
        subscriber_id: int,
        data: SubscriberInput,
        defaults: SubscriberDefaults,
        link_issued_at: dt.datetime,
    ) -> SubscriberRecord | None:
        """Activate a sign-up from its confirmation link, with the settings the link carries.

        One conditional UPDATE decides, so two confirmations at once (a person and a mail
        scanner, say) both see an active subscription and only one applies it. A link older
        than the subscriber's last unsubscribe or bounce changes nothing: only a link sent
        after it is fresh consent. Returns the subscriber as it now is (None if gone).
        """
        consent = or_(
            Subscriber.status == "pending",
            and_(
                Subscriber.status.in_(OPTED_OUT),
                or_(
                    Subscriber.unsubscribed_at.is_(None),
                    Subscriber.unsubscribed_at < link_issued_at,
                ),
            ),
        )
        with self.session() as session:
            activated = session.execute(
                update(Subscriber)
                .where(Subscriber.id == subscriber_id, consent)
                .values(
                    status="active",
                    confirmed_at=utcnow(),
                    hard_bounces=0,
                    **defaults.schedule_of(data),
                )
            ).rowcount
            if activated:
                self._set_topics(session, {subscriber_id: data.topics})
            sub = session.get(Subscriber, subscriber_id)
            if sub is None:
                return None
            session.refresh(sub)
            return _to_record(sub)

    def delete_expired_pending(self, older_than: dt.datetime) -> int:
        """Unconfirmed sign-ups expire: we keep no address that never confirmed."""
        with self.session() as session:
            result = session.execute(
                delete(Subscriber).where(
                    Subscriber.status == "pending", Subscriber.updated_at < older_than
                )
            )
            self._drop_unused_topics(session)
            return result.rowcount

    def remove_subscriber(self, email: str) -> None:
        """Delete the subscriber and everything about them (their deliveries cascade)."""
        with self.session() as session:
            session.delete(self._get(session, email))
            session.flush()
            self._drop_unused_topics(session)

    def set_status(
        self, email: str, status: str, allowed_from: Sequence[str] | None = None
    ) -> SubscriberRecord:
        with self.session() as session:
            sub = self._get(session, email)
            if allowed_from is not None and sub.status not in allowed_from:
                raise StorageError(f"{email} is {sub.status}; cannot make it {status}")
            sub.status = status
            if status == "active" and sub.confirmed_at is None:
                sub.confirmed_at = utcnow()
            if status == "unsubscribed":
                sub.unsubscribed_at = utcnow()
            session.flush()
            return _to_record(sub)

    def update_subscriber(
        self,
        email: str,
        topics: Sequence[str] | None = None,
        timezone: str | None = None,
        send_hour: int | None = None,
        max_papers: int | None = None,
        show_trending: bool | None = None,
    ) -> SubscriberRecord:
        with self.session() as session:
            sub = self._get(session, email)
            if show_trending is not None:
                sub.show_trending = show_trending
            if timezone is not None:
                sub.timezone = timezone
            if send_hour is not None:
                sub.send_hour = send_hour
            if max_papers is not None:
                sub.max_papers = max_papers
            if topics is not None:
                self._set_topics(session, {sub.id: list(topics)})
                sub.updated_at = utcnow()
            session.flush()
            session.refresh(sub)
            return _to_record(sub)

    def list_subscribers(
        self, status: str | None = None, topic: str | None = None
    ) -> list[SubscriberRecord]:
        with self.session() as session:
            query = select(Subscriber).order_by(Subscriber.email)
            if status:
                query = query.where(Subscriber.status == status)
            if topic:
                query = query.join(SubscriberTopic).join(Topic).where(Topic.name == topic)
            return [_to_record(sub) for sub in session.scalars(query)]

    def count_subscribers(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            )
            return dict(rows.all())

    def import_subscribers(
        self, rows: Sequence[SubscriberInput], defaults: SubscriberDefaults, dry_run: bool = False
    ) -> ChangeReport:
        """Create new subscribers and update changed ones, in bulk; identical rows are no-ops.

        A row's blank optional fields leave an existing subscriber's value alone; its status
        (as `export` writes it) is applied, except that an unsubscribed or bounced subscriber
        is never changed by an import: those are counted as ``kept``. With ``dry_run`` the
        transaction is rolled back, so the report shows what would happen.
        """
        report = ChangeReport()
        session = self._sessions()
        try:
            existing = self._existing_by_email(session, [row.email for row in rows])
            new_rows = [row for row in rows if row.email not in existing]
            changed_topics: dict[int, Sequence[str]] = {}
            for row in rows:
                sub = existing.get(row.email)
                if sub is None:
                    continue
                if sub.status in OPTED_OUT:
                    report.kept += 1
                elif self._apply_row(sub, row, changed_topics):
                    report.updated += 1
                else:
                    report.unchanged += 1
            created_ids = self._insert_subscribers(session, new_rows, defaults)
            changed_topics.update({created_ids[row.email]: row.topics for row in new_rows})
            self._set_topics(session, changed_topics)
            report.created = len(new_rows)
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        return report

    @staticmethod
    def _existing_by_email(session: Session, emails: Sequence[str]) -> dict[str, Subscriber]:
        found: dict[str, Subscriber] = {}
        for chunk in _chunks(list(emails)):
            for sub in session.scalars(select(Subscriber).where(Subscriber.email.in_(chunk))):
                found[sub.email] = sub
        return found

    @staticmethod
    def _apply_row(
        sub: Subscriber, row: SubscriberInput, changed_topics: dict[int, Sequence[str]]
    ) -> bool:
        changed = False
        for attr in ("timezone", "send_hour", "max_papers", "status"):
            value = getattr(row, attr)
            if value is not None and getattr(sub, attr) != value:
                setattr(sub, attr, value)
                changed = True
        if tuple(sub.topics) != row.topics:
            changed_topics[sub.id] = row.topics
            changed = True
        return changed

    @staticmethod
    def _insert_subscribers(
        session: Session, rows: Sequence[SubscriberInput], defaults: SubscriberDefaults
    ) -> dict[str, int]:
        now = utcnow()
        ids: dict[str, int] = {}
        values = [
            {
                "email": row.email,
                "status": row.status or "active",
                **defaults.schedule_of(row),
                "confirmed_at": now if (row.status or "active") in ("active", "paused") else None,
                "unsubscribed_at": now if row.status in OPTED_OUT else None,
            }
            for row in rows
        ]
        for chunk in _chunks(values):
            result = session.execute(
                insert(Subscriber).returning(Subscriber.email, Subscriber.id), list(chunk)
            )
            ids.update(result.all())
        return ids

    def sent_paper_ids(
        self, subscriber_ids: Sequence[int], among: Sequence[str]
    ) -> dict[int, set[str]]:
        """For each subscriber, which of the papers ``among`` (today's candidates) they have
        already been sent. Only candidates matter, and a subscriber's whole history grows by
        a digest a day, so it is never read. Many subscribers at once (the daily run): one
        pass over the candidates' rows; a few (a preview): their own rows."""
        sent: dict[int, set[str]] = {sid: set() for sid in subscriber_ids}
        if not among or not subscriber_ids:
            return sent
        columns = select(SentPaper.subscriber_id, SentPaper.arxiv_id)
        with self.engine.connect() as session:
            if len(sent) > MANY_SUBSCRIBERS:
                for chunk in _chunks(sorted(set(among))):
                    for sid, arxiv_id in session.execute(
                        columns.where(SentPaper.arxiv_id.in_(chunk))
                    ).all():
                        if sid in sent:
                            sent[sid].add(arxiv_id)
                return sent
            for chunk in _chunks(list(sent)):
                rows = session.execute(
                    columns.where(SentPaper.subscriber_id.in_(chunk), SentPaper.arxiv_id.in_(among))
                )
                for sid, arxiv_id in rows:
                    sent[sid].add(arxiv_id)
        return sent

    # -- reader feedback ------------------------------------------------------------------

    def record_vote(self, subscriber_id: int, arxiv_id: str, value: int, now: dt.datetime) -> None:
        """Set the reader's vote on a paper (voting again replaces it). The topic the paper was
        sent for is kept beside it, for `digest feedback`."""
        if value not in (-1, 1):
            raise ValueError(f"a vote is +1 or -1, not {value!r}")
        with self.session() as session:
            topic = self._sent_for_topic(session, subscriber_id, arxiv_id)
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            statement = dialect.insert(Vote.__table__).values(
                subscriber_id=subscriber_id,
                arxiv_id=arxiv_id,
                value=value,
                topic=topic,
                created_at=now,
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["subscriber_id", "arxiv_id"],
                    set_={"value": value, "topic": topic, "created_at": now},
                )
            )

    @staticmethod
    def _sent_for_topic(session: Session, subscriber_id: int, arxiv_id: str) -> str | None:
        delivery = session.scalar(
            select(Delivery)
            .join(SentPaper)
            .where(SentPaper.subscriber_id == subscriber_id, SentPaper.arxiv_id == arxiv_id)
        )
        if delivery is None:
            return None
        picks = _picks_of(delivery, _planned_picks(session, [delivery]))
        return next((p.get("topic") for p in picks if p["arxiv_id"] == arxiv_id), None)

    def remove_vote(self, subscriber_id: int, arxiv_id: str) -> bool:
        with self.session() as session:
            removed = session.execute(
                delete(Vote).where(Vote.subscriber_id == subscriber_id, Vote.arxiv_id == arxiv_id)
            )
            return removed.rowcount > 0

    def vote_of(self, subscriber_id: int, arxiv_id: str) -> int | None:
        with self.session() as session:
            return session.scalar(
                select(Vote.value).where(
                    Vote.subscriber_id == subscriber_id, Vote.arxiv_id == arxiv_id
                )
            )

    def votes_of(self, subscriber_id: int) -> list[VoteRecord]:
        """The reader's votes, newest first, with each paper's title."""
        with self.session() as session:
            rows = session.execute(
                select(Vote.arxiv_id, Vote.value, Paper.title, Vote.topic, Vote.created_at)
                .outerjoin(Paper, Paper.arxiv_id == Vote.arxiv_id)
                .where(Vote.subscriber_id == subscriber_id)
                .order_by(Vote.created_at.desc(), Vote.arxiv_id)
            )
            return [
                VoteRecord(pid, value, title or pid, topic, created)
                for pid, value, title, topic, created in rows
            ]

    def reader_votes(self, subscriber_ids: Sequence[int]) -> dict[int, Votes]:
        """For each subscriber who voted, their newest :data:`VOTES_USED` votes, oldest first.
        Many subscribers at once (the daily run): one pass over the votes; a few: theirs."""
        wanted = set(subscriber_ids)
        columns = select(Vote.subscriber_id, Vote.arxiv_id, Vote.value).order_by(
            Vote.subscriber_id, Vote.created_at, Vote.arxiv_id
        )
        said: dict[int, list[tuple[str, int]]] = {}
        with self.session() as session:
            if len(wanted) > MANY_SUBSCRIBERS:
                queries = [columns]
            else:
                queries = [
                    columns.where(Vote.subscriber_id.in_(c)) for c in _chunks(sorted(wanted))
                ]
            for query in queries:
                for sid, pid, value in session.execute(query).all():
                    if sid in wanted:
                        said.setdefault(sid, []).append((pid, value))
        return {
            sid: Votes(
                tuple(pid for pid, v in votes[-VOTES_USED:] if v > 0),
                tuple(pid for pid, v in votes[-VOTES_USED:] if v < 0),
            )
            for sid, votes in said.items()
        }

    def votes_by_topic(self, since: dt.datetime) -> list[tuple[str, int, int]]:
        """(topic, more like this, less like this) for the votes cast since ``since``, the most
        voted topic first; votes on trending papers count under "(trending)"."""
        with self.session() as session:
            rows = session.execute(
                select(
                    Vote.topic,
                    func.sum(case((Vote.value > 0, 1), else_=0)),
                    func.sum(case((Vote.value < 0, 1), else_=0)),
                )
                .where(Vote.created_at >= since)
                .group_by(Vote.topic)
            ).all()
        totals = [(topic or "(trending)", int(up), int(down)) for topic, up, down in rows]
        return sorted(totals, key=lambda row: (-(row[1] + row[2]), row[0]))

    def most_liked_papers(
        self, since: dt.datetime, limit: int = 10
    ) -> list[tuple[str, str, int, int]]:
        """(arxiv id, title, likes, dislikes) of the papers most liked since ``since``."""
        likes = func.sum(case((Vote.value > 0, 1), else_=0))
        dislikes = func.sum(case((Vote.value < 0, 1), else_=0))
        with self.session() as session:
            rows = session.execute(
                select(Vote.arxiv_id, Paper.title, likes, dislikes)
                .outerjoin(Paper, Paper.arxiv_id == Vote.arxiv_id)
                .where(Vote.created_at >= since)
                .group_by(Vote.arxiv_id, Paper.title)
                .having(likes > 0)
                .order_by(likes.desc(), dislikes, Vote.arxiv_id)
                .limit(limit)
            ).all()
        return [(pid, title or pid, int(up), int(down)) for pid, title, up, down in rows]

    # -- the archive of sent digests ---------------------------------------------------------

    def sent_digests(
        self, subscriber_id: int, limit: int = ARCHIVE_EDITIONS
    ) -> list[DeliveryRecord]:
        """The digests sent to a subscriber, newest first."""
        with self.session() as session:
            rows = session.execute(
                select(Delivery, Subscriber.email)
                .join(Subscriber)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.status == "sent")
                .order_by(Delivery.edition.desc())
                .limit(limit)
            ).all()
            planned = _planned_picks(session, (d for d, _ in rows))
            return [_to_delivery(d, email, planned) for d, email in rows]

    def sent_digest(self, subscriber_id: int, edition: dt.date) -> DeliveryRecord | None:
        """The digest of ``edition`` as sent to the subscriber; None if none was sent."""
        with self.session() as session:
            row = session.execute(
                select(Delivery, Subscriber.email)
                .join(Subscriber)
                .where(
                    Delivery.subscriber_id == subscriber_id,
                    Delivery.edition == edition,
                    Delivery.status == "sent",
                )
            ).first()
            return _to_delivery(*row, _planned_picks(session, [row[0]])) if row else None

    # -- papers ---------------------------------------------------------------------------

    def upsert_papers(self, records: Sequence[PaperRecord], as_news: bool = True) -> ChangeReport:
        """Insert new papers and merge new facts into known ones; re-running changes nothing.
        ``as_news`` off (a paper looked up by id): a new paper counts as first seen when it was
        published, so an old one never becomes a candidate of today's digests."""
        merged: dict[str, dict[str, object]] = {}
        with self.session() as session:
            existing = self._papers_by_id(session, list(dict.fromkeys(r.arxiv_id for r in records)))
            for record in records:
                base = merged.get(record.arxiv_id) or existing.get(record.arxiv_id)
                merged[record.arxiv_id] = merge_paper(base, record)
            now = utcnow()
            new_rows = [
                {
                    "arxiv_id": pid,
                    **values,
                    "first_seen_at": now if as_news else values.get("published_at") or EPOCH,
                }
                for pid, values in merged.items()
                if pid not in existing
            ]
            # Another run may store the same new papers at this moment (a cron `run --now`
            # beside the beat tick): the database's own upsert lets both finish, and papers
            # the other run stored first count as already given.
            created = len(_insert_ignoring_duplicates(session, Paper, new_rows, ["arxiv_id"]))
            report = ChangeReport(created=created, unchanged=len(new_rows) - created)
            for pid, values in merged.items():
                if pid not in existing:
                    continue
                if values == existing[pid]:
                    report.unchanged += 1
                    continue
                session.execute(update(Paper).where(Paper.arxiv_id == pid).values(**values))
                report.updated += 1
        return report

    @staticmethod
    def _papers_by_id(session: Session, ids: Sequence[str]) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        columns = [getattr(Paper, name) for name in MERGED_FIELDS]
        for chunk in _chunks(list(ids)):
            for row in session.execute(
                select(Paper.arxiv_id, *columns).where(Paper.arxiv_id.in_(chunk))
            ):
                found[row[0]] = dict(zip(MERGED_FIELDS, row[1:], strict=True))
        return found

    def list_papers(
        self,
        since: dt.datetime | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[PaperRecord]:
        """Stored papers, newest first seen first; ``since`` filters on first_seen_at, ``ids``
        keeps those papers (looked up :data:`CHUNK` at a time, in no particular order)."""
        query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.arxiv_id)
        if since is not None:
            query = query.where(Paper.first_seen_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.session() as session:
            if ids is None:
                return [_paper_record(paper) for paper in session.scalars(query)]
            return [
                _paper_record(paper)
                for chunk in _chunks(sorted(set(ids)))
                for paper in session.scalars(query.where(Paper.arxiv_id.in_(chunk)))
            ]

    def count_papers(self) -> int:
        with self.session() as session:
            return session.scalar(select(func.count()).select_from(Paper)) or 0

    # -- sentence embeddings, computed once per text ---------------------------------------

    def load_vectors(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self.session() as session:
            for chunk in _chunks(list(dict.fromkeys(keys))):
                rows = session.execute(
                    select(TextVector.key, TextVector.vector).where(TextVector.key.in_(chunk))
                )
                found.update((key, bytes(vector)) for key, vector in rows)
        return found

    def save_vectors(self, vectors: dict[str, bytes]) -> None:
        """Keeps the first vector stored for a key: two workers computing one text agree anyway."""
        with self.session() as session:
            _insert_ignoring_duplicates(
                session,
                TextVector,
                [{"key": key, "vector": vector} for key, vector in vectors.items()],
                ["key"],
            )

    def prune_vectors(self, older_than: dt.datetime) -> int:
        """Drops old vectors (papers long gone); a topic still in use is simply embedded again."""
        with self.session() as session:
            return (
                session.execute(
                    delete(TextVector).where(TextVector.created_at < older_than)
                ).rowcount
                or 0
            )

    # -- conditional GET validators -------------------------------------------------------

    def http_validators(self, url: str) -> tuple[str | None, str | None]:
        with self.session() as session:
            row = session.get(HttpCache, url)
            return (row.etag, row.last_modified) if row else (None, None)

    def last_fetched_at(self) -> dt.datetime | None:
        with self.session() as session:
            return session.scalar(select(func.max(HttpCache.fetched_at)))

    def save_http_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        with self.session() as session:
            row = session.get(HttpCache, url) or HttpCache(url=url)
            row.etag, row.last_modified, row.fetched_at = etag, last_modified, utcnow()
            session.add(row)

    # -- deliveries: the exactly-once state machine -----------------------------------------
    #   queued --claim--> sending --250--> sent
    #     ^                  |--4xx / connection--> queued (attempts+1, not before next_try_at)
    #     |                  |--5xx recipient-----> bounced (hard bounce counted) | failed
    #     +---- stale claim (worker died) is requeued after the lease, noted in last_error

    def due_subscribers(
        self, now: dt.datetime, ignore_send_hour: bool = False
    ) -> list[tuple[SubscriberRecord, dt.date]]:
        """Active subscribers whose local send hour has come and who have no edition for
        their local date yet. Grouped by (time zone, hour) so the clock maths runs per group,
        not per subscriber."""
        aware_now = now.replace(tzinfo=dt.UTC)
        due: list[tuple[SubscriberRecord, dt.date]] = []
        with self.session() as session:
            groups = session.execute(
                select(Subscriber.timezone, Subscriber.send_hour)
                .where(Subscriber.status == "active")
                .distinct()
            ).all()
            for tz_name, hour in groups:
                local = aware_now.astimezone(_zone(tz_name))
                if local.hour < hour and not ignore_send_hour:
                    continue
                edition = local.date()
                already = exists().where(
                    and_(Delivery.subscriber_id == Subscriber.id, Delivery.edition == edition)
                )
                condition = and_(
                    Subscriber.status == "active",
                    Subscriber.timezone == tz_name,
                    Subscriber.send_hour == hour,
                    ~already,
                )
                due.extend((sub, edition) for sub in _subscriber_records(session, condition))
        return due

    def create_deliveries(
        self, rows: Collection[NewDelivery], handed_out_at: dt.datetime | None = None
    ) -> tuple[int, list[int]]:
        """One row per (subscriber, edition); rows that already exist are left alone.

        Returns how many rows were new, and the ids of the new queued ones. With
        ``handed_out_at`` those are written as already handed to a send task (the caller
        enqueues them at once), which spares rewriting every new row a moment later.
        ``rows`` may be made as they are read (see :class:`digest.pipeline.PlannedDeliveries`),
        and is read a second time when some of them already exist."""
        now = utcnow()
        if self.engine.dialect.name == "postgresql":
            with self.session() as session:
                created = _copy_new_deliveries(session, rows, now, handed_out_at)
            return len(created), sorted(i for i, status in created if status == "queued")
        values = [
            {
                "subscriber_id": r.subscriber_id,
                "edition": r.edition,
                "picks": r.picks,
                "quiet_topics": list(r.quiet_topics),
                "status": r.status,
                "enqueued_at": handed_out_at if r.status == "queued" else None,
            }
            for r in rows
        ]
        with self.session() as session:
            keys = ["subscriber_id", "edition"]
            created = _insert_ignoring_duplicates(session, Delivery, values, keys, ("id", "status"))
        return len(created), sorted(i for i, status in created if status == "queued")

    def take_deliveries_to_send(
        self, now: dt.datetime, enqueue_lease: dt.timedelta, edition: dt.date | None = None
    ) -> list[int]:
        """Queued deliveries that are due and not already in a send task's hands; marks them
        handed out, in one statement. A task lost with its queue (Redis restart) is handed out
        again after the lease. Ids come back in order, so batches follow the plan."""
        conditions = [
            Delivery.status == "queued",
            or_(Delivery.next_try_at.is_(None), Delivery.next_try_at <= now),
            or_(Delivery.enqueued_at.is_(None), Delivery.enqueued_at <= now - enqueue_lease),
        ]
        if edition is not None:
            conditions.append(Delivery.edition == edition)
        with self.engine.begin() as conn:
            handed_out = update(Delivery.__table__).where(*conditions).values(enqueued_at=now)
            return sorted(conn.execute(handed_out.returning(Delivery.id)).scalars())

    def claim_deliveries(self, ids: Sequence[int], now: dt.datetime) -> tuple[str, set[int]]:
        """Atomically take the queued, due deliveries among ``ids``, in one statement.

        Returns the claim's token and the ids taken; the others are done or in another
        worker's hands. Every later write of this attempt must show the token, so a worker
        that stalled past its lease and lost a delivery to another cannot record over it.
        """
        claim = secrets.token_hex(8)
        with self.engine.begin() as conn:
            taken = conn.execute(CLAIM, {"p_ids": list(ids), "p_now": now, "p_claim": claim})
            return claim, {row[0] for row in taken}

    @staticmethod
    def _claim_lost(conn: Connection, delivery_id: int, claim: str, then: str) -> bool:
        """After a write of ``claim`` changed nothing: True if the delivery is already where
        that write would have put it under the same claim (an earlier try committed, and
        only its answer was lost); else the claim passed to another worker, and is logged."""
        row = conn.execute(
            select(Delivery.status, Delivery.claim_token).where(Delivery.id == delivery_id)
        ).first()
        if row is not None and tuple(row) == (then, claim):
            return False
        log.warning(
            "delivery %d: this worker's claim was lost (now %s); another worker has it",
            delivery_id,
            row[0] if row else "deleted",
        )
        return True

    def load_deliveries(self, ids: Sequence[int]) -> list[tuple[DeliveryRecord, SubscriberRecord]]:
        with self.session() as session:
            found = []
            for chunk in _chunks(list(ids)):
                deliveries = session.scalars(
                    select(Delivery).where(Delivery.id.in_(chunk)).order_by(Delivery.id)
                ).all()
                planned = _planned_picks(session, deliveries)
                for delivery in deliveries:
                    sub = _to_record(delivery.subscriber)
                    found.append((_to_delivery(delivery, sub.email, planned), sub))
            return found

    def mark_sent(self, sent: Sequence[SentRecord]) -> set[int]:
        """Record, in one transaction, the server's acceptance of each message, and the papers
        each person has now been sent. Returns the ids recorded as this worker's: a delivery
        whose claim passed to another worker is left alone (and logged); one that an earlier
        try of this very write already committed counts as recorded."""
        if not sent:
            return set()
        with self.engine.begin() as conn:
            updated = conn.execute(
                MARK_SENT,
                [
                    {
                        "p_id": s.delivery_id,
                        "p_claim": s.claim,
                        "p_now": s.sent_at,
                        "p_message_id": s.message_id,
                    }
                    for s in sent
                ],
            ).rowcount
            ours = {s.delivery_id for s in sent}
            if updated != len(sent):
                ours = {
                    s.delivery_id
                    for s in sent
                    if not self._claim_lost(conn, s.delivery_id, s.claim, "sent")
                }
            papers = [
                {
                    "subscriber_id": s.subscriber_id,
                    "arxiv_id": pid,
                    "delivery_id": s.delivery_id,
                    "sent_at": s.sent_at,
                }
                for s in sent
                if s.delivery_id in ours
                for pid in dict.fromkeys(s.paper_ids)
            ]
            if papers:
                conn.execute(RECORD_SENT_PAPERS[conn.dialect.name], papers)
            return ours

    def skip_delivery(self, delivery_id: int, reason: str) -> bool:
        """A queued digest that must not go out (the subscriber paused or left since it was
        planned): closed as 'skipped' so no later tick hands it out again."""
        with self.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status == "queued")
                .values(status="skipped", last_error=reason)
            )
            return result.rowcount == 1

    def mark_retry(
        self, delivery_id: int, claim: str, error: str, next_try_at: dt.datetime
    ) -> bool:
        """Back to the queue, not before ``next_try_at``; False if the claim was lost."""
        with self.engine.begin() as conn:
            requeued = conn.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.status == "sending",
                    Delivery.claim_token == claim,
                )
                .values(
                    status="queued",
                    last_error=error[:2000],
                    next_try_at=next_try_at,
                    enqueued_at=None,
                )
            ).rowcount
            return bool(requeued) or not self._claim_lost(conn, delivery_id, claim, "queued")

    def mark_failed(
        self, delivery_id: int, claim: str, error: str, hard_bounce: bool, bounce_limit: int
    ) -> bool:
        """A final failure. A hard bounce counts against the address; enough of them and the
        subscriber is marked bounced, so we stop mailing a dead mailbox. False if the claim
        was lost."""
        final = "bounced" if hard_bounce else "failed"
        with self.session() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None or (delivery.status, delivery.claim_token) != ("sending", claim):
                return not self._claim_lost(session.connection(), delivery_id, claim, final)
            delivery.status = final
            delivery.last_error = error[:2000]
            if hard_bounce:
                sub = delivery.subscriber
                sub.hard_bounces += 1
                if sub.hard_bounces >= bounce_limit and sub.status == "active":
                    sub.status = "bounced"
                    sub.unsubscribed_at = utcnow()
            return True

    def requeue_stale_claims(self, now: dt.datetime, lease: dt.timedelta) -> int:
        """'sending' rows whose worker died. The message may or may not have been accepted
        just before the crash: we resend (no digest is lost) and say so in last_error."""
        with self.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.status == "sending", Delivery.claimed_at <= now - lease)
                .values(
                    status="queued",
                    enqueued_at=None,
                    next_try_at=None,
                    claim_token=None,
                    resent=True,
                    last_error="worker lost while sending; resent (a duplicate is possible)",
                )
            )
            return result.rowcount

    def list_deliveries(
        self, edition: dt.date | None = None, status: str | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        with self.session() as session:
            query = (
                select(Delivery, Subscriber.email)
                .join(Subscriber)
                .order_by(Delivery.edition.desc(), Delivery.id)
            )
            if edition is not None:
                query = query.where(Delivery.edition == edition)
            if status is not None:
                query = query.where(Delivery.status == status)
            if limit is not None:
                query = query.limit(limit)
            rows = session.execute(query).all()
            planned = _planned_picks(session, (d for d, _ in rows))
            return [_to_delivery(d, email, planned) for d, email in rows]

    def delivery_counts(
        self, edition: dt.date | None = None, status: str | None = None
    ) -> dict[str, int]:
        with self.session() as session:
            query = select(Delivery.status, func.count()).group_by(Delivery.status)
            if edition is not None:
                query = query.where(Delivery.edition == edition)
            if status is not None:
                query = query.where(Delivery.status == status)
            return dict(session.execute(query).all())

    def next_retry_at(self) -> dt.datetime | None:
        """When the earliest delivery waiting for a retry is due."""
        with self.session() as session:
            return session.scalar(
                select(func.min(Delivery.next_try_at)).where(Delivery.status == "queued")
            )

    def retry_failed(self, edition: dt.date | None = None) -> int:
        """Put failed (not bounced) deliveries back in the queue with fresh attempts."""
        with self.session() as session:
            query = update(Delivery).where(Delivery.status == "failed")
            if edition is not None:
                query = query.where(Delivery.edition == edition)
            return session.execute(
                query.values(status="queued", attempts=0, next_try_at=None, enqueued_at=None)
            ).rowcount


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC
