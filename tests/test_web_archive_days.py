"""The archive lists the reader's recent days, and a day without a digest says why (#35):
a quiet day and a day the service failed read differently, from the runs recorded that day."""

from __future__ import annotations

import datetime as dt

import fakeredis
from conftest import record_sent_digest

from digest.records import SubscriberDefaults
from digest.runs import BEAT, RunCounts, SourceRun
from digest.settings import Settings
from digest.storage import Storage
from digest.subscriptions import build_subscriber_input
from digest.tokens import Tokens
from digest.web import create_app

SECRET = "archive-test-secret"
DOWN = SourceRun("hf", "http://127.0.0.1:9/api", "connection refused", seconds=0.01)
UP = SourceRun("arxiv-rss", "http://x/rss", None, seen=40, new=0, http_status=200, seconds=0.4)


def record_run(store: Storage, day: dt.date, counts: RunCounts, source: SourceRun) -> None:
    """A tick on ``day`` as the pipeline records it: started, then finished with its counts."""
    started = dt.datetime.combine(day, dt.time(7))
    run = store.runs.start(BEAT, started)
    store.runs.finish(run, started + dt.timedelta(seconds=3), counts, [source])


def archive_lines(store: Storage, settings: Settings, paused: bool = False) -> list[str]:
    """The archive page of a digest sent three days ago, after a quiet day and a failed day:
    the text of its list of recent days, newest first (today first)."""
    today = dt.datetime.now(dt.UTC).date()
    sent, quiet, failed = (today - dt.timedelta(days=n) for n in (3, 2, 1))
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    record_sent_digest(store, sub.id, sent, [{"arxiv_id": "2611.00001", "topic": "rl"}])
    record_run(store, quiet, RunCounts(due=1, skipped_nothing_new=1), UP)
    record_run(store, failed, RunCounts(due=1, held_sources_down=1), DOWN)
    if paused:
        store.subscribers.set_status(sub.email, "paused")
    config = settings.model_copy(update={"secret_key": SECRET})
    client = create_app(config, store, fakeredis.FakeRedis()).test_client()
    token = Tokens(SECRET).make("digest", sub.id, sub.email, bound=sent.isoformat())
    page = client.get(f"/digest/{token}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    days = html[html.index('<ul class="recent-days">') :]
    return [" ".join(li.split()) for li in days.split("<li>")[1:5]]


def test_a_quiet_day_and_a_failed_day_read_differently(store: Storage, settings: Settings) -> None:
    today, failed, quiet, sent = archive_lines(store, settings)
    assert "No digest yet today" in today
    assert "No digest: we had a problem and are on it" in failed
    assert "Nothing new on your topics that day" in quiet
    assert "problem" not in quiet
    assert "/digest/" in sent and "1 paper" in sent


def test_days_after_a_pause_say_the_reader_paused(store: Storage, settings: Settings) -> None:
    today, failed, quiet, sent = archive_lines(store, settings, paused=True)
    assert "Paused: no digest" in today
    assert "problem" in failed and "Paused" not in failed + quiet, "paused today, not then"
