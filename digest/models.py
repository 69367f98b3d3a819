"""Database tables (SQLAlchemy 2.0 typed declarative). Only :mod:`digest.storage` queries them.

Portable across SQLite and PostgreSQL: JSON columns for small lists, strings for statuses
(checked by a CHECK constraint rather than a native enum, so migrations stay simple).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from digest.subscriptions import SUBSCRIBER_STATUSES

DELIVERY_STATUSES = ("queued", "sending", "sent", "failed", "bounced", "skipped")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Naive UTC: SQLite drops tz info anyway, so every stored time is UTC without it."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[dict[str, Any]]: JSON}

    if TYPE_CHECKING:  # SQLAlchemy allows any FromClause; every model here maps one Table
        __table__: ClassVar[Table]


class Topic(Base):
    """A distinct normalised topic; subscribers share rows so ranking scores each once."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)


class SubscriberTopic(Base):
    __tablename__ = "subscriber_topics"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)

    topic: Mapped[Topic] = relationship(lazy="joined")


class DigestList(Base):
    """One digest an install runs ("ML daily", "robotics weekly"): what it draws papers
    from, how often it goes out, who it is from. Every subscription belongs to one."""

    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # ["hf", "arxiv:cs.LG", "arxiv-query:all:glacier"]; [] = what the settings fetch
    sources: Mapped[list[str]] = mapped_column(default=list)
    cadence: Mapped[str] = mapped_column(String(20), default="daily")
    sender: Mapped[str | None] = mapped_column(String(320))  # None: DIGEST_SENDER
    suggested_topics: Mapped[list[str]] = mapped_column(default=list)
    max_papers: Mapped[int | None] = mapped_column(Integer)  # None: DIGEST_MAX_PAPERS
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Subscriber(Base):
    """One subscription: an address on one list, with its own topics, schedule and consent."""

    __tablename__ = "subscribers"
    __table_args__ = (
        CheckConstraint(f"status IN {SUBSCRIBER_STATUSES}", name="status"),
        CheckConstraint("send_hour >= 0 AND send_hour <= 23", name="send_hour"),
        Index("ix_subscribers_schedule", "status", "timezone", "send_hour"),  # who is due now
        UniqueConstraint("list_id", "email", name="uq_subscribers_list_email"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # indexed alone: a hard bounce stops every list's mail to the address
    email: Mapped[str] = mapped_column(String(320), index=True)
    # indexed by uq_subscribers_list_email, which it leads
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    cadence: Mapped[str | None] = mapped_column(String(20))  # None: the list's
    status: Mapped[str] = mapped_column(String(16), default="active")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    send_hour: Mapped[int] = mapped_column(Integer, default=7)
    max_papers: Mapped[int] = mapped_column(Integer, default=5)
    hard_bounces: Mapped[int] = mapped_column(Integer, default=0)
    show_trending: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    topic_links: Mapped[list[SubscriberTopic]] = relationship(
        order_by=SubscriberTopic.position, cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def topics(self) -> list[str]:
        return [link.topic.name for link in self.topic_links]


class Paper(Base):
    __tablename__ = "papers"

    arxiv_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    abstract: Mapped[str] = mapped_column(Text, default="")
    authors: Mapped[list[str]] = mapped_column(default=list)
    categories: Mapped[list[str]] = mapped_column(default=list)
    version: Mapped[int | None] = mapped_column(Integer)
    announce_type: Mapped[str | None] = mapped_column(String(20))
    upvotes: Mapped[int | None] = mapped_column(Integer)
    hf_url: Mapped[str | None] = mapped_column(String(300))
    ai_summary: Mapped[str | None] = mapped_column(Text)
    ai_keywords: Mapped[list[str]] = mapped_column(default=list)
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    featured_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # on HF Daily Papers
    first_seen_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    sources: Mapped[list[str]] = mapped_column(default=list)
    # what Hugging Face shows beside the paper
    github_repo: Mapped[str | None] = mapped_column(String(300))
    github_stars: Mapped[int | None] = mapped_column(Integer)
    project_page: Mapped[str | None] = mapped_column(String(300))
    num_comments: Mapped[int | None] = mapped_column(Integer)
    organization: Mapped[str | None] = mapped_column(String(200))
    submitted_by: Mapped[str | None] = mapped_column(String(200))


class Delivery(Base):
    """One digest edition for one subscriber: the unit of exactly-once sending."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "edition", name="uq_deliveries_subscriber_edition"),
        CheckConstraint(f"status IN {DELIVERY_STATUSES}", name="status"),
        Index("ix_deliveries_status_next_try", "status", "next_try_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    edition: Mapped[dt.date] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    # each pick whole ({arxiv_id, topic, reason, also?}), or with ``plan`` set, the numbers of
    # that planning run's PlannedPick rows (PostgreSQL's daily run: see PlannedPick)
    picks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    plan: Mapped[int | None] = mapped_column(Integer)
    # the subscriber's topics with nothing new that day ("Nothing new on agents today")
    quiet_topics: Mapped[list[str]] = mapped_column(default=list, server_default=text("'[]'"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # last handed to a send task
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    claim_token: Mapped[str | None] = mapped_column(String(32))  # whose claim it is
    # handed out again after its worker was lost: the message may have gone out twice
    resent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    subscriber: Mapped[Subscriber] = relationship(lazy="joined")


class PlannedPick(Base):
    """One distinct pick of one planning run, which many delivery rows name by number.

    A million readers get a few thousand distinct (paper, topic, reason) picks a day; written
    whole into every delivery row, they were 840 MB a day and most of the database's work
    in planning. ``plan`` is the run's first delivery id, unique as the sequence is."""

    __tablename__ = "planned_picks"

    plan: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    pick: Mapped[dict[str, Any]] = mapped_column()  # {arxiv_id, topic, reason, also?}


class SentPaper(Base):
    """Papers already mailed to a subscriber, so none is ever sent to them twice."""

    __tablename__ = "sent_papers"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    # indexed: the daily run reads who already got today's candidates, by paper
    arxiv_id: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    # indexed: removing a subscriber's deliveries sets this to NULL, found by this index
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Vote(Base):
    """A reader's "more like this" (+1) or "less like this" (-1) on a paper they were sent.
    One per (subscriber, paper): voting again replaces it, and removing it undoes it."""

    __tablename__ = "votes"
    __table_args__ = (CheckConstraint("value IN (-1, 1)", name="value"),)

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    arxiv_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
    # the topic the paper was sent for, when it was a pick: `digest feedback` counts by it
    topic: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class TextVector(Base):
    """A sentence embedding, computed once per text (a paper's passage or a topic) by whichever
    worker met it first, and read by every later ranking run instead of recomputing it."""

    __tablename__ = "text_vectors"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of model and text
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32 values, little-endian
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Installation(Base):
    """One row: this install's random id, part of every Message-ID, so two installs with the
    same key, or a database recreated the same day, never reuse each other's."""

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class HttpCache(Base):
    """Validators of the last successful fetch per URL, for conditional GET."""

    __tablename__ = "http_cache"

    url: Mapped[str] = mapped_column(String(500), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(300))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    fetched_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    """One tick or `digest run --now`: what it did and how it ended (`digest runs`). The send
    counts grow as the batches it handed out finish, often after the tick itself."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'ok', 'partial', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    trigger: Mapped[str] = mapped_column(String(16))  # beat | command
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)  # the tick itself crashed
    # worked: fetched or handed anything out; an idle tick says nothing about health
    worked: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    due: Mapped[int] = mapped_column(Integer, default=0)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    retrying: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    bounced: Mapped[int] = mapped_column(Integer, default=0)
    skipped_nothing_new: Mapped[int] = mapped_column(Integer, default=0)
    skipped_paused: Mapped[int] = mapped_column(Integer, default=0)
    skipped_already_sent: Mapped[int] = mapped_column(Integer, default=0)
    held_sources_down: Mapped[int] = mapped_column(Integer, default=0)


class RunSource(Base):
    """One source's fetch within a run."""

    __tablename__ = "run_sources"
    __table_args__ = (Index("ix_run_sources_source_run", "source", "run_id"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    # a source's name, or a list's arXiv query ("arxiv-query:all:glacier")
    source: Mapped[str] = mapped_column(String(220), primary_key=True)
    url: Mapped[str] = mapped_column(Text, default="")
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    seen: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


class AlertSent(Base):
    """An admin alert mailed: at most one per problem a day."""

    __tablename__ = "alerts_sent"

    problem: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
