"""Lists: the rules of a list's cadence, sources and headers, over plain data (pure).

One install runs several digests ("ML daily", "robotics weekly"); each reader's row is a
subscription to one list. This module says, without touching storage:

* which edition a subscription owes at a moment (:func:`due_edition`): ``daily``,
  ``weekdays`` (nothing on Saturday or Sunday) or ``weekly:DAY``, sent on that day at the
  reader's hour; a weekly edition missed while the workers were down goes out late, once,
  for up to six days;
* which papers are a list's candidates (:func:`from_sources`, :func:`candidate_window`):
  a weekly edition is the best of the week, a daily one of the last announcement days;
* what the install must fetch so that every list has its papers (:func:`fetch_plan`);
* who a list's digests are from, the ``List-Id`` they carry and the title they show
  (:func:`sender_of`, :func:`list_id`, :func:`titles`).

Storage keeps the rows (:mod:`digest.storage.lists`); the planner groups the subscriptions
due by list and window and ranks each group at once (:mod:`digest.pipeline`).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from email.utils import parseaddr

from email_validator import EmailNotValidError, validate_email

from digest.records import ListRecord
from digest.sources import ARXIV_CATEGORY, HF, HF_RSS, PaperRecord
from digest.subscriptions import InvalidInput, first_digest_time

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CADENCES = ("daily", "weekdays", *(f"weekly:{day}" for day in DAYS))
CADENCE_HELP = "daily, weekdays or weekly:DAY (DAY one of mon..sun)"
WEEKLY = "weekly:"
DAILY_WINDOW = "day"
WEEKLY_WINDOW = "week"
WEEK = dt.timedelta(days=7)
WEEK_ANNOUNCEMENT_DAYS = 5  # arXiv announces on five days a week
ARXIV_PREFIX = "arxiv:"
QUERY_PREFIX = "arxiv-query:"
SOURCE_HELP = 'hf, arxiv:CATEGORY (arxiv:cs.LG) or arxiv-query:QUERY ("arxiv-query:all:glacier")'
MAX_QUERY_CHARS = 200
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TITLE_CHARS = 200
DEFAULT_TITLE = "Paper Digest"
# what a digest carries when its list is not known (tests, and a subscription being removed)
DEFAULT_LIST = ListRecord(0, "daily", DEFAULT_TITLE)


def validate_cadence(raw: str) -> str:
    """``daily``, ``weekdays`` or ``weekly:DAY`` (``mon`` or ``monday``); case and spaces do
    not matter."""
    cadence = re.sub(r"\s+", "", raw).lower()
    day = cadence.removeprefix(WEEKLY)
    if cadence.startswith(WEEKLY) and day in DAY_NAMES:
        cadence = WEEKLY + day[:3]
    if cadence not in CADENCES:
        raise InvalidInput(f"{raw!r} is not a cadence: {CADENCE_HELP}")
    return cadence


def validate_source(raw: str) -> str:
    """A list's source: Hugging Face Daily Papers, an arXiv category, or an arXiv API query."""
    source = raw.strip()
    if source.lower() == HF:
        return HF
    if source.lower().startswith(ARXIV_PREFIX):
        category = source[len(ARXIV_PREFIX) :].strip()
        if ARXIV_CATEGORY.match(category):
            return ARXIV_PREFIX + category
    elif source.lower().startswith(QUERY_PREFIX):
        query = source[len(QUERY_PREFIX) :].strip()
        if query and len(query) <= MAX_QUERY_CHARS and not CONTROL.search(query):
            return QUERY_PREFIX + query
    raise InvalidInput(f"{raw!r} is not a source: {SOURCE_HELP}")


def validate_sender(raw: str) -> str:
    """A list's From: ``Name <address>`` with a valid address."""
    sender = raw.strip()
    _, address = parseaddr(sender)
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(
            f"{raw!r} has no valid address ({exc}); like: ML Weekly <ml@example.org>"
        ) from None
    return sender


def validate_title(raw: str) -> str:
    title = " ".join(raw.split())
    if not title or len(title) > TITLE_CHARS or CONTROL.search(title):
        raise InvalidInput(f"a list's title is 1-{TITLE_CHARS} characters of text")
    return title


def is_weekly(cadence: str) -> bool:
    return cadence.startswith(WEEKLY)


def sends_on(cadence: str, day: dt.date) -> bool:
    """Whether ``cadence`` has an edition dated ``day``."""
    if is_weekly(cadence):
        return DAYS[day.weekday()] == cadence.removeprefix(WEEKLY)
    return cadence == "daily" or day.weekday() < 5


def due_edition(
    cadence: str, local_now: dt.datetime, hour: int, ignore_hour: bool = False
) -> dt.date | None:
    """The edition a subscription owes at ``local_now`` (its own time zone), by its date, if
    any. Daily and weekdays: today's, once its hour has come (as it always was: a day the
    workers were down all along is not sent later). Weekly: the latest of its days in the
    last week whose hour has come, so a Monday missed goes out on Tuesday; the caller sends
    it only if there is no edition since (never twice) and, for a day before today, only to
    subscriptions that existed then (a new reader does not get last week's)."""
    today = local_now.date()
    came = ignore_hour or local_now.hour >= hour
    if not is_weekly(cadence):
        return today if came and sends_on(cadence, today) else None
    back = (today.weekday() - DAYS.index(cadence.removeprefix(WEEKLY))) % 7
    if back == 0 and not came:
        return None  # last week's was owed until its day came round again
    return today - dt.timedelta(days=back)


def slot_start(edition: dt.date, hour: int, zone: dt.tzinfo) -> dt.datetime:
    """When an edition's hour came, as naive UTC (how every time is stored)."""
    local = dt.datetime.combine(edition, dt.time(hour), tzinfo=zone)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def zone(name: str) -> dt.tzinfo:
    """An IANA zone; a name the system does not know counts as UTC (as it always did)."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def candidate_window(cadence: str) -> str:
    """The span a cadence's edition picks from: the day's news, or the week's."""
    return WEEKLY_WINDOW if is_weekly(cadence) else DAILY_WINDOW


def window_span(window: str, first_seen: dt.timedelta, days: int) -> tuple[dt.timedelta, int]:
    """(how recently first seen, how many announcement days) a window's candidates are,
    given the daily edition's: a week adds seven days and arXiv's five announcement days."""
    if window == WEEKLY_WINDOW:
        return first_seen + WEEK, days + WEEK_ANNOUNCEMENT_DAYS - 1
    return first_seen, days


def from_sources(papers: Sequence[PaperRecord], sources: Sequence[str]) -> list[PaperRecord]:
    """The papers a list with ``sources`` draws on (no sources: all of them). ``hf``: seen
    on Hugging Face; ``arxiv:CAT``: in that arXiv category; ``arxiv-query:Q``: found by that
    query. A paper no source recorded (none of today's fetches make one) is everyone's."""
    if not sources:
        return list(papers)
    wanted = {HF, HF_RSS} if HF in sources else set()
    wanted |= {s for s in sources if s.startswith(QUERY_PREFIX)}
    categories = {s[len(ARXIV_PREFIX) :] for s in sources if s.startswith(ARXIV_PREFIX)}
    return [
        p
        for p in papers
        if not p.sources or wanted.intersection(p.sources) or categories.intersection(p.categories)
    ]


def fetch_plan(
    lists: Iterable[ListRecord], categories: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(arXiv categories, arXiv API queries) to fetch so that every list gets its papers:
    the settings' categories (the lists without sources of their own draw on them) and
    every list's. Hugging Face is always fetched: it is where "trending" comes from."""
    wanted = list(categories)
    queries: list[str] = []
    for listed in lists:
        for source in listed.sources:
            if source.startswith(ARXIV_PREFIX) and source[len(ARXIV_PREFIX) :] not in wanted:
                wanted.append(source[len(ARXIV_PREFIX) :])
            elif source.startswith(QUERY_PREFIX) and source not in queries:
                queries.append(source)
    return wanted, queries


def sender_of(listed: ListRecord, default: str) -> str:
    """Who a list's digests are from: its own sender, or DIGEST_SENDER."""
    return listed.sender or default


def list_id(listed: ListRecord, domain: str) -> str:
    """The ``List-Id`` (RFC 2919) a list's digests carry: ``Title <slug.digest.domain>``,
    one per list of this install, so that mail clients filter each list apart. The default
    list's (``daily``) is the one every digest carried before there were lists."""
    return f"{listed.title} <{listed.slug}.digest.{domain}>"


def titles(listed: ListRecord, default_sender: str) -> tuple[str, str]:
    """(the title a digest's heading shows, the one its subject starts with). The subject
    names the list unless the From name already does ("Paper Digest" from Paper Digest),
    so an install with one list sends the subjects it always sent."""
    name = parseaddr(sender_of(listed, default_sender))[0]
    return listed.title, "" if name == listed.title else listed.title


def shown_sources(listed: ListRecord, categories: Sequence[str]) -> list[str]:
    """A list's sources as `digest lists` shows them; a list without its own: the settings'."""
    if listed.sources:
        return list(listed.sources)
    return [HF, *(ARXIV_PREFIX + c for c in categories)]


def cadence_words(cadence: str) -> str:
    """A cadence as a page says it: "Daily", "Every weekday", "Weekly, on Mondays"."""
    if is_weekly(cadence):
        return f"Weekly, on {_day_name(cadence)}s"
    return "Every weekday" if cadence == "weekdays" else "Daily"


def first_edition_time(now: dt.datetime, timezone: str, send_hour: int, cadence: str) -> str:
    """When someone confirmed at ``now`` (naive UTC) gets their first edition of
    ``cadence``, as the confirmed page says it. A daily one as it always was
    (:func:`digest.subscriptions.first_digest_time`); on a day the cadence sends, past its
    hour, today's edition goes out at the next tick (:func:`due_edition`); else the next day
    it sends."""
    if cadence == "daily":
        return first_digest_time(now, timezone, send_hour)
    local = now.replace(tzinfo=dt.UTC).astimezone(zone(timezone))
    at = f"at {send_hour:02d}:00 {timezone}"
    every = f"every {_day_name(cadence)}" if is_weekly(cadence) else "every weekday"
    today = local.date()
    if sends_on(cadence, today) and local.hour < send_hour:
        return f"today, {_day_label(today)}, {at}, then {every}"
    week = (today + dt.timedelta(days=n) for n in range(1, 8))
    following = next(day for day in week if sends_on(cadence, day))
    if sends_on(cadence, today):
        return f"within minutes (today's edition), then from {_day_label(following)}, {every} {at}"
    return f"on {_day_label(following)}, {at}, then {every}"


def _day_name(cadence: str) -> str:
    return DAY_NAMES[DAYS.index(cadence.removeprefix(WEEKLY))].capitalize()


def _day_label(day: dt.date) -> str:
    return f"{day:%A} {day.day} {day:%B}"
