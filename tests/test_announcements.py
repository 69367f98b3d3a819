"""What "new" means: announced within the last few arXiv announcement days, weekends and
holidays skipped; a search's years-old results are never new."""

from __future__ import annotations

import datetime as dt

from conftest import FEEDS

from digest.announcements import announced_recently, date_label, window_start
from digest.sources import parse_response

MONDAY = dt.date(2026, 7, 13)


def test_a_window_counts_announcement_days_over_weekends_and_holidays() -> None:
    assert window_start(dt.date(2026, 7, 15), 3, ()) == dt.date(2026, 7, 11)  # Sat..Wed
    # Monday's two days reach Friday, and the weekend's dates announced on Monday count
    assert window_start(MONDAY, 2, ()) == dt.date(2026, 7, 10)
    assert window_start(dt.date(2026, 7, 14), 2, ()) == MONDAY - dt.timedelta(days=2)
    holiday = {dt.date(2026, 7, 10)}
    assert window_start(MONDAY, 2, holiday) == dt.date(2026, 7, 9)


def test_a_searchs_old_results_are_never_new_beside_the_days_listing() -> None:
    day = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    search = parse_response((FEEDS / "arxiv_api_search_testing_2026-04-12.xml").read_bytes()).papers
    assert {p.published_at.year for p in search} >= {2012, 2018, 2024}
    now = dt.datetime(2026, 7, 13, 7, 30)
    new = announced_recently([*day, *search], now, 3)
    assert {p.arxiv_id for p in new} == {p.arxiv_id for p in day}, "every one featured today"
    assert announced_recently(search, now, 3) == [], "a search alone is not news either"


def test_an_old_paper_featured_today_is_new_by_its_feature() -> None:
    (old,) = [
        p
        for p in parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
        if p.published_at.date() < dt.date(2026, 7, 8)
    ][:1]
    assert old.featured_at is not None and old.featured_at.date() >= dt.date(2026, 7, 10)
    assert announced_recently([old], dt.datetime(2026, 7, 13, 8), 2) == [old]


def test_a_cards_date_and_an_old_papers_year() -> None:
    assert date_label(dt.datetime(2026, 7, 30, 17), dt.date(2026, 7, 31)) == "Jul 30"
    assert date_label(dt.datetime(2019, 3, 3), dt.date(2026, 7, 31)) == "from 2019"
    assert date_label(dt.datetime(2026, 3, 3), dt.date(2026, 7, 31)) == "from Mar 3"
    assert date_label(None, dt.date(2026, 7, 31)) == ""
