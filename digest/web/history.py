"""The reader's recent days, as the archive page lists them: each day either links to its
digest or says, in a reader's words, why none came, so a quiet day is never mistaken for a
broken one (#35). Which it was comes from the runs recorded that day
(:meth:`digest.storage.Runs.day_summaries`)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from digest.records import DeliveryRecord, SubscriberRecord

RECENT_DAYS = 14  # how far back the archive page looks
QUIET = "Nothing new on your topics that day"
TROUBLED = "No digest: we had a problem and are on it"
PAUSED = "Paused: no digest"
NOT_YET = "No digest yet today"


@dataclass(frozen=True)
class ArchiveDay:
    """One day of the list: its digest (with the link to it), or why there was none."""

    day: dt.date
    digest: DeliveryRecord | None = None
    url: str | None = None
    why_none: str | None = None


def reader_today(sub: SubscriberRecord, now: dt.datetime) -> dt.date:
    """The reader's date at ``now`` (naive UTC): editions are named by the reader's day."""
    return now.replace(tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(sub.timezone)).date()


def recent_days(sub: SubscriberRecord, today: dt.date, sent: Collection[dt.date]) -> list[dt.date]:
    """The days to list, newest first: the last RECENT_DAYS, none before the reader joined
    (or their oldest digest, whichever is older: a day before they joined has no why)."""
    joined = (sub.confirmed_at or sub.created_at).date()
    first = min([joined, *sent]) if sent else joined
    start = max(first, today - dt.timedelta(days=RECENT_DAYS - 1))
    return [today - dt.timedelta(days=n) for n in range((today - start).days + 1)]


def archive_days(
    sub: SubscriberRecord,
    today: dt.date,
    days: Sequence[dt.date],
    sent: Mapping[dt.date, tuple[DeliveryRecord, str]],
    troubled: Mapping[dt.date, bool],
) -> list[ArchiveDay]:
    """Every listed day with its digest and link, or why there was none. When a pause began
    is not recorded, so only today says "paused" for a paused reader: an earlier day may
    have been quiet before the pause, and saying "paused" then would be a guess."""
    paused = sub.status == "paused"
    return [
        ArchiveDay(day, *sent[day])
        if day in sent
        else ArchiveDay(day, why_none=_why_none(day, today, troubled, paused))
        for day in days
    ]


def _why_none(day: dt.date, today: dt.date, troubled: Mapping[dt.date, bool], paused: bool) -> str:
    """A failure outranks a pause: the reader should know we failed even while paused."""
    if troubled.get(day):
        return TROUBLED
    if day == today:
        return PAUSED if paused else NOT_YET
    return QUIET
