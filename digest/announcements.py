"""What "new" means: a paper announced within the last few arXiv announcement days.

arXiv announces on weekdays that are not its holidays, so a day's edition looks back a
number of *announcement days*, not calendar days: Monday's window reaches back over the
weekend to Friday (and over a holiday too). A paper is announced recently when its arXiv
date (or the day Hugging Face Daily Papers first featured it) falls in that window. The
window ends at the newest day the listings (Hugging Face's daily page, arXiv's RSS) have
shown, never later than now: on a live install that is today, for the offline demo it is the
recorded day. A search of the arXiv API is not a listing, so its years-old results never
move the window, and are never new.

Pure: dates in, dates out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from digest.sources import ARXIV_RSS, HF, PaperRecord

LISTINGS = frozenset({HF, ARXIV_RSS})  # sources that list a day's announcements
OLD_AFTER = dt.timedelta(days=60)  # an older paper's card names its year: "from 2019"


def is_announcement_day(day: dt.date, holidays: Collection[dt.date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def window_start(last_day: dt.date, days: int, holidays: Collection[dt.date]) -> dt.date:
    """The first of the ``days`` announcement days up to ``last_day`` (inclusive); papers
    dated in the weekend or holiday just before it still count, as arXiv announces them on it."""
    day, counted = last_day, 0
    while True:
        if is_announcement_day(day, holidays):
            counted += 1
            if counted == days:
                break
        day -= dt.timedelta(days=1)
    before = day - dt.timedelta(days=1)
    while not is_announcement_day(before, holidays):  # dated Saturday, announced Monday
        day, before = before, before - dt.timedelta(days=1)
    return day


def announced_on(paper: PaperRecord) -> dt.date | None:
    """The newest of the paper's own dates: its arXiv date, or its Hugging Face feature."""
    dates = [d.date() for d in (paper.published_at, paper.featured_at) if d is not None]
    return max(dates) if dates else None


def newest_listed_day(papers: Sequence[PaperRecord], now: dt.datetime) -> dt.date:
    """The newest day a listing showed among ``papers``, never after ``now``; ``now`` when no
    listing is among them."""
    listed = [
        day
        for p in papers
        if LISTINGS.intersection(p.sources) and (day := announced_on(p)) is not None
    ]
    return min(max(listed), now.date()) if listed else now.date()


def announced_recently(
    papers: Sequence[PaperRecord],
    now: dt.datetime,
    days: int,
    holidays: Collection[dt.date] = (),
) -> list[PaperRecord]:
    """The papers announced within the last ``days`` announcement days (see the module); a
    paper no source dated is judged by when it was first seen, as it was before."""
    start = window_start(newest_listed_day(papers, now), days, holidays)
    return [p for p in papers if (day := announced_on(p)) is None or day >= start]


def date_label(published: dt.datetime | None, edition: dt.date) -> str:
    """A card's date: "Jul 30"; a paper older than :data:`OLD_AFTER` says so ("from 2019",
    or "from Mar 3" within the edition's year), so a reader never takes it for news."""
    if published is None:
        return ""
    day = published.date()
    if edition - day <= OLD_AFTER:
        return f"{day:%b} {day.day}"
    if day.year != edition.year:
        return f"from {day.year}"
    return f"from {day:%b} {day.day}"
