"""`digest feedback` end to end on SQLite, through click's runner."""

from __future__ import annotations

import datetime as dt

from conftest import record_sent_digest

from digest.models import utcnow
from digest.settings import Settings
from digest.sources import PaperRecord
from digest.storage import Storage


def test_feedback_counts_votes_by_the_topic_each_paper_was_sent_for(
    run, settings: Settings
) -> None:
    assert "no votes in the last 7 days" in run("feedback").output
    run("subscribers", "add", "ada@example.org", "-t", "rl", "-t", "agents")
    run("subscribers", "add", "bob@example.org", "-t", "rl")
    store = Storage.open(settings.resolved_database_url)
    store.papers.upsert(
        [
            PaperRecord("2611.00001", "Policy gradients"),
            PaperRecord("2611.00002", "Tool agents"),
            PaperRecord("2611.00003", "Trending thing"),
        ]
    )
    today = utcnow().date()
    ada, bob = (store.subscribers.get(e) for e in ("ada@example.org", "bob@example.org"))
    picks = [
        {"arxiv_id": "2611.00001", "topic": "rl", "reason": "r"},
        {"arxiv_id": "2611.00002", "topic": "agents", "reason": "r"},
        {"arxiv_id": "2611.00003", "topic": None, "reason": None},
    ]
    record_sent_digest(store, ada.id, today, picks)
    record_sent_digest(store, bob.id, today, picks[:1])
    now = utcnow()
    store.feedback.record_vote(ada.id, "2611.00001", 1, now)
    store.feedback.record_vote(bob.id, "2611.00001", 1, now)
    store.feedback.record_vote(ada.id, "2611.00002", -1, now)
    store.feedback.record_vote(ada.id, "2611.00003", 1, now)
    store.feedback.record_vote(
        ada.id, "2611.00099", -1, now - dt.timedelta(days=30)
    )  # too old to count
    out = run("feedback").output
    lines = [line.split() for line in out.splitlines()]
    assert (
        ["rl", "2", "0"] in lines
        and ["agents", "0", "1"] in lines
        and ["(trending)", "1", "0"] in lines
    )
    assert out.index("2611.00001") < out.index("2611.00003"), "the most liked paper first"
    assert "2611.00002" not in out.split("Most liked papers:")[1], (
        "a paper nobody liked is not listed"
    )
    assert "2611.00099" not in out
