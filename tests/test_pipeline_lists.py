"""Planning by list and cadence (#34), on SQLite and PostgreSQL with a fixed clock: a weekly
edition is the best of the whole week, sent once on its day (late, once, if the workers were
down), a list draws on its own sources, and a weekdays list sends nothing on Saturday."""

from __future__ import annotations

import datetime as dt

from conftest import DEFAULTS, sub

from digest import pipeline
from digest.settings import Settings
from digest.sources import PaperRecord
from digest.storage import Storage

FRIDAY = dt.datetime(2026, 12, 11, 9, 0)  # past the readers' 07:00
WEEK = [FRIDAY.date() - dt.timedelta(days=n) for n in range(4, -1, -1)]  # Monday .. Friday


def _papers(store: Storage) -> None:
    """A glacier paper announced each weekday of the week, one the Tuesday before, and a
    computer vision paper on Friday; each first seen the day it was announced."""
    days = [(f"2612.0000{n}", day, "physics.ao-ph") for n, day in enumerate(WEEK, 1)]
    days += [("2612.00009", WEEK[0] - dt.timedelta(days=6), "physics.ao-ph")]
    days += [("2612.00010", WEEK[-1], "cs.CV")]
    store.papers.upsert(
        [
            PaperRecord(
                arxiv_id,
                f"Glacier melt measured {arxiv_id}",
                "Glacier retreat and ice sheet melt, measured by satellite.",
                categories=[category],
                sources=["arxiv-rss"],
                published_at=dt.datetime.combine(day, dt.time(1)),
            )
            for arxiv_id, day, category in days
        ],
        as_news=False,  # first seen when announced
    )


def _plan(store: Storage, settings: Settings, now: dt.datetime) -> dict[str, list[str]]:
    """Plan what is due at ``now``; {email: the arXiv ids of their picks}."""
    due = store.subscribers.due(now)
    _, _, queued = pipeline.plan_deliveries(store, settings, due, now)
    return {
        subscriber.email: sorted(str(p["arxiv_id"]) for p in delivery.picks if p.get("topic"))
        for delivery, subscriber in store.deliveries.load(queued)
    }


def test_a_weekly_edition_covers_the_whole_weeks_papers_once(
    store: Storage, settings: Settings
) -> None:
    settings = settings.model_copy(update={"semantic": False})
    _papers(store)
    weekly = store.lists.add(
        "ice", "Ice Weekly", cadence="weekly:fri", sources=["arxiv:physics.ao-ph"]
    )
    for email, list_id in [("daily@example.org", None), ("weekly@example.org", weekly.id)]:
        store.subscribers.add(sub(email, "glacier melt", max_papers=20), DEFAULTS, list_id=list_id)

    planned = _plan(store, settings, FRIDAY)

    assert planned["weekly@example.org"] == [f"2612.0000{n}" for n in range(1, 6)]
    # the default list: the last two days' papers, from every source it fetches
    assert planned["daily@example.org"] == ["2612.00004", "2612.00005", "2612.00010"]
    assert _plan(store, settings, FRIDAY + dt.timedelta(hours=3)) == {}  # never twice


def test_a_weekly_edition_missed_on_its_day_goes_out_late_once(
    store: Storage, settings: Settings
) -> None:
    settings = settings.model_copy(update={"semantic": False})
    _papers(store)
    weekly = store.lists.add("ice", "Ice Weekly", cadence="weekly:fri")
    store.subscribers.add(sub("weekly@example.org", "glacier melt"), DEFAULTS, list_id=weekly.id)
    subscribed_on(store, FRIDAY - dt.timedelta(days=3))  # a Tuesday

    thursday, saturday = FRIDAY - dt.timedelta(days=1), FRIDAY + dt.timedelta(days=1)
    assert store.subscribers.due(thursday) == [], "last Friday came before they subscribed"
    assert [day for _, day in store.subscribers.due(saturday)] == [FRIDAY.date()]
    assert list(_plan(store, settings, saturday)) == ["weekly@example.org"]
    assert store.subscribers.due(saturday + dt.timedelta(days=1)) == []


def test_a_readers_own_cadence_and_a_weekdays_list(store: Storage, settings: Settings) -> None:
    weekdays = store.lists.add("work", "Workdays", cadence="weekdays")
    store.subscribers.add(sub("ada@example.org", "glacier"), DEFAULTS, list_id=weekdays.id)
    store.subscribers.add(sub("bo@example.org", "glacier"), DEFAULTS, cadence="weekly:sat")
    saturday = FRIDAY + dt.timedelta(days=1)
    assert [s.email for s, _ in store.subscribers.due(FRIDAY)] == ["ada@example.org"]
    assert [s.email for s, _ in store.subscribers.due(saturday)] == ["bo@example.org"]


def subscribed_on(store: Storage, when: dt.datetime) -> None:
    """Every subscription dated ``when``, as if made then."""
    from sqlalchemy import update

    from digest.models import Subscriber

    with store.db.session() as session:
        session.execute(update(Subscriber).values(created_at=when))
