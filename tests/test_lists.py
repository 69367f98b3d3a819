"""The pure rules of lists (#34): cadences, sources, what to fetch, and what a digest says
about its list."""

from __future__ import annotations

import datetime as dt

import pytest

from digest.lists import (
    cadence_words,
    candidate_window,
    due_edition,
    fetch_plan,
    first_edition_time,
    from_sources,
    list_id,
    slot_start,
    titles,
    validate_cadence,
    validate_sender,
    validate_source,
    zone,
)
from digest.records import ListRecord
from digest.sources import PaperRecord
from digest.subscriptions import InvalidInput

MONDAY = dt.date(2026, 12, 7)


def at(day: int, hour: int) -> dt.datetime:
    """Monday 7 December 2026 plus ``day`` days, at ``hour``."""
    return dt.datetime.combine(MONDAY + dt.timedelta(days=day), dt.time(hour))


@pytest.mark.parametrize(
    ("raw", "cadence"),
    [("daily", "daily"), (" Weekdays ", "weekdays"), ("weekly:mon", "weekly:mon"),
     ("WEEKLY: Friday", "weekly:fri")],
)  # fmt: skip
def test_cadences_are_normalised(raw: str, cadence: str) -> None:
    assert validate_cadence(raw) == cadence


@pytest.mark.parametrize("raw", ["monthly", "weekly", "weekly:someday", "weekly:monkey", ""])
def test_a_bad_cadence_says_what_is_allowed(raw: str) -> None:
    with pytest.raises(InvalidInput, match="daily, weekdays or weekly:DAY"):
        validate_cadence(raw)


def test_sources_and_senders_are_checked() -> None:
    assert validate_source("HF") == "hf"
    assert validate_source("arxiv:cs.LG") == "arxiv:cs.LG"
    assert validate_source("arxiv-query:all:glacier") == "arxiv-query:all:glacier"
    for bad in ("rss", "arxiv:", "arxiv:not a category", "arxiv-query:", "arxiv-query:a\nb"):
        with pytest.raises(InvalidInput, match="is not a source"):
            validate_source(bad)
    assert validate_sender("ML <ml@example.org>") == "ML <ml@example.org>"
    with pytest.raises(InvalidInput, match="no valid address"):
        validate_sender("ML Weekly")


def test_daily_sends_every_day_once_its_hour_has_come() -> None:
    assert due_edition("daily", at(5, 6), 7) is None
    assert due_edition("daily", at(5, 7), 7) == at(5, 0).date()
    assert due_edition("daily", at(5, 6), 7, ignore_hour=True) == at(5, 0).date()


def test_weekdays_sends_nothing_on_saturday_or_sunday() -> None:
    assert [due_edition("weekdays", at(d, 9), 7) for d in range(7)] == [
        *(at(d, 0).date() for d in range(5)),
        None,
        None,
    ]


def test_weekly_owes_its_day_and_a_missed_day_until_the_next_comes_round() -> None:
    friday = at(4, 0).date()
    assert due_edition("weekly:fri", at(3, 9), 7) == at(-3, 0).date()  # last Friday's, if unsent
    assert due_edition("weekly:fri", at(4, 6), 7) is None  # its day, before its hour
    assert due_edition("weekly:fri", at(4, 7), 7) == friday
    assert due_edition("weekly:fri", at(6, 23), 7) == friday  # workers down all Friday: late
    assert due_edition("weekly:fri", at(10, 9), 7) == friday  # the next Thursday, still owed
    assert due_edition("weekly:fri", at(11, 6), 7) is None  # its next day, before its hour


def test_an_editions_hour_is_found_in_the_readers_zone() -> None:
    assert slot_start(MONDAY, 7, zone("Europe/Paris")) == dt.datetime(2026, 12, 7, 6)
    assert zone("Not/AZone") is dt.UTC


def test_a_weekly_cadence_picks_from_the_week() -> None:
    assert [candidate_window(c) for c in ("daily", "weekdays", "weekly:mon")] == [
        "day",
        "day",
        "week",
    ]


def paper(arxiv_id: str, sources: list[str], categories: list[str]) -> PaperRecord:
    return PaperRecord(arxiv_id, "t", sources=sources, categories=categories)


def test_a_list_draws_on_its_sources_only() -> None:
    papers = [
        paper("1", ["hf"], []),
        paper("2", ["arxiv-rss"], ["cs.RO"]),
        paper("3", ["arxiv-rss"], ["cs.CV"]),
        paper("4", ["arxiv-api", "arxiv-query:all:glacier"], ["physics.ao-ph"]),
        paper("5", [], []),  # no source recorded: everyone's
    ]

    def ids(sources: list[str]) -> list[str]:
        return [p.arxiv_id for p in from_sources(papers, sources)]

    assert ids([]) == ["1", "2", "3", "4", "5"]
    assert ids(["arxiv:cs.RO"]) == ["2", "5"]
    assert ids(["hf", "arxiv-query:all:glacier"]) == ["1", "4", "5"]


def test_fetching_covers_every_lists_categories_and_queries() -> None:
    lists = [
        ListRecord(1, "daily", "D"),
        ListRecord(2, "bots", "B", sources=("arxiv:cs.RO", "arxiv:cs.LG", "hf")),
        ListRecord(3, "ice", "I", sources=("arxiv-query:all:glacier",)),
    ]
    assert fetch_plan(lists, ["cs.LG", "cs.AI"]) == (
        ["cs.LG", "cs.AI", "cs.RO"],
        ["arxiv-query:all:glacier"],
    )


def test_a_digest_names_its_list_where_the_sender_does_not() -> None:
    default = ListRecord(1, "daily", "Paper Digest")
    weekly = ListRecord(2, "ml-weekly", "ML Weekly")
    own = ListRecord(3, "bots", "Robots", sender="Robots <r@example.org>")
    sender = "Paper Digest <digest@example.org>"
    assert titles(default, sender) == ("Paper Digest", "")
    assert titles(weekly, sender) == ("ML Weekly", "ML Weekly")
    assert titles(own, sender) == ("Robots", "")
    assert list_id(default, "example.org") == "Paper Digest <daily.digest.example.org>"
    assert list_id(weekly, "example.org") == "ML Weekly <ml-weekly.digest.example.org>"


@pytest.mark.parametrize(
    ("cadence", "words"),
    [("daily", "Daily"), ("weekdays", "Every weekday"), ("weekly:mon", "Weekly, on Mondays"),
     ("weekly:sun", "Weekly, on Sundays")],
)  # fmt: skip
def test_a_cadence_in_words(cadence: str, words: str) -> None:
    assert cadence_words(cadence) == words


@pytest.mark.parametrize(
    ("now", "cadence", "said"),
    [
        (at(0, 5), "weekly:mon", "today, Monday 7 December, at 07:00 UTC, then every Monday"),
        (at(0, 9), "weekly:mon", "within minutes (today's edition), then from Monday 14 December, "
         "every Monday at 07:00 UTC"),
        (at(1, 5), "weekly:mon", "on Monday 14 December, at 07:00 UTC, then every Monday"),
        (at(4, 9), "weekdays", "within minutes (today's edition), then from Monday 14 December, "
         "every weekday at 07:00 UTC"),
        (at(5, 5), "weekdays", "on Monday 14 December, at 07:00 UTC, then every weekday"),
        (at(5, 5), "daily", "today, Saturday 12 December, at 07:00 UTC"),
    ],
)  # fmt: skip
def test_the_first_edition_is_the_next_one_the_cadence_sends(
    now: dt.datetime, cadence: str, said: str
) -> None:
    """As the planner sends it (:func:`due_edition`): today's once its hour has come,
    else the next day the cadence sends; a weekly edition before today is not a new
    reader's."""
    assert first_edition_time(now, "UTC", 7, cadence) == said
