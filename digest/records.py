"""The plain records every layer passes around: subscribers, deliveries, change counts.

Storage fills them from SQL and the pure modules (editions, rendering) read them, so they
live here, apart from both: importing a record never imports a database driver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from digest.subscriptions import SubscriberInput


@dataclass(frozen=True)
class SubscriberRecord:
    id: int
    email: str
    status: str
    topics: tuple[str, ...]
    timezone: str
    send_hour: int
    max_papers: int
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    show_trending: bool = True  # the digest's "Trending today" section
    list_id: int = 0  # the list this subscription is to
    cadence: str | None = None  # their own cadence; None: the list's

    def as_row(self, list_slug: str = "") -> dict[str, object]:
        """The export format's columns (and the JSON listing); ``list_slug``: its list's."""
        return {
            "email": self.email,
            "topics": list(self.topics),
            "timezone": self.timezone,
            "send_hour": self.send_hour,
            "max_papers": self.max_papers,
            "status": self.status,
            "list": list_slug,
        }


@dataclass(frozen=True)
class ListRecord:
    """One list: its sign-up page, its sources, how often it goes out and from whom.
    ``sources`` empty: what the settings fetch (the list an upgrade made, see
    :mod:`digest.lists`); ``sender``, ``max_papers``, ``suggested_topics`` empty: the
    settings' too."""

    id: int
    slug: str
    title: str
    description: str = ""
    sources: tuple[str, ...] = ()
    cadence: str = "daily"
    sender: str | None = None
    suggested_topics: tuple[str, ...] = ()
    max_papers: int | None = None
    public: bool = True
    created_at: dt.datetime | None = None


@dataclass(frozen=True)
class Votes:
    """A reader's "more like this" and "less like this" papers (arXiv ids), oldest first."""

    liked: tuple[str, ...] = ()
    disliked: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.liked or self.disliked)

    @property
    def papers(self) -> set[str]:
        return {*self.liked, *self.disliked}


@dataclass(frozen=True)
class VoteRecord:
    """One vote as the preferences page and `digest feedback` show it."""

    arxiv_id: str
    value: int  # +1 more like this, -1 less like this
    title: str
    topic: str | None  # the topic it was sent for, when it was a pick
    created_at: dt.datetime


@dataclass(frozen=True)
class SubscriberDefaults:
    """What a subscriber gets for the optional fields they did not give."""

    timezone: str = "UTC"
    send_hour: int = 7
    max_papers: int = 5

    def schedule_of(self, data: SubscriberInput) -> dict[str, Any]:
        """The time zone, send hour and digest size to store for ``data``: its own, or ours."""
        return {
            "timezone": data.timezone or self.timezone,
            "send_hour": data.send_hour if data.send_hour is not None else self.send_hour,
            "max_papers": data.max_papers or self.max_papers,
        }


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    subscriber_id: int
    email: str
    edition: dt.date
    status: str
    picks: list[dict[str, object]]
    attempts: int
    last_error: str | None
    message_id: str | None
    sent_at: dt.datetime | None
    next_try_at: dt.datetime | None
    resent: bool = False  # handed out again after its worker was lost: a duplicate is possible
    quiet_topics: tuple[str, ...] = ()  # the subscriber's topics with nothing new that day
    list_id: int = 0  # the list of the subscription it is for

    @property
    def papers(self) -> int:
        """The papers picked for the reader's topics, as the mail counts them."""
        return sum(1 for pick in self.picks if pick.get("topic"))

    @property
    def trending(self) -> int:
        """The "Trending today" papers: shown beside the picks, never counted with them."""
        return len(self.picks) - self.papers


@dataclass(frozen=True)
class NewDelivery:
    subscriber_id: int
    edition: dt.date
    picks: list[dict[str, object]]
    status: str = "queued"
    quiet_topics: tuple[str, ...] = ()


class NewDeliveries(Protocol):
    """Rows to plan, counted and read (twice at most): a Collection without ``in``, so that
    :class:`digest.pipeline.PlannedDeliveries` can make them as they are read."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[NewDelivery]: ...


@dataclass(frozen=True)
class SentRecord:
    """A message the SMTP server accepted, to be recorded under the claim it was sent with."""

    delivery_id: int
    subscriber_id: int
    claim: str
    message_id: str
    sent_at: dt.datetime
    paper_ids: tuple[str, ...]


@dataclass
class ChangeReport:
    """What a bulk write did: rows created, changed, and found already as given."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # opted out (unsubscribed or bounced): left exactly as they were

    def add(self, other: ChangeReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.kept += other.kept
