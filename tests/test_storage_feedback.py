"""Reader feedback on SQLite and PostgreSQL: votes, what ranking reads of them, the totals."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import DEFAULTS, record_sent_digest, sub

from digest.records import SubscriberDefaults, VoteRecord
from digest.sources import PaperRecord
from digest.storage import Storage, feedback
from digest.subscriptions import build_subscriber_input


def test_ranking_reads_each_readers_newest_votes_and_a_new_vote_replaces_the_old(
    store: Storage,
) -> None:
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    start = dt.datetime(2026, 11, 1)
    for n in range(feedback.VOTES_USED + 2):
        store.feedback.record_vote(
            sub.id, f"p{n:03}", 1 if n % 2 else -1, start + dt.timedelta(minutes=n)
        )
    store.feedback.record_vote(
        sub.id, "p003", -1, start + dt.timedelta(days=1)
    )  # changed its mind, last
    votes = store.feedback.reader_votes([sub.id, 999])[sub.id]
    assert len(votes.liked) + len(votes.disliked) == feedback.VOTES_USED
    assert "p000" not in votes.disliked and "p001" not in votes.liked, "the oldest are dropped"
    assert votes.disliked[-1] == "p003" and "p003" not in votes.liked
    with pytest.raises(ValueError, match=r"a vote is \+1 or -1, not 2"):
        store.feedback.record_vote(sub.id, "p000", 2, start)
    other = store.subscribers.add(
        build_subscriber_input("cy@example.org", ["rl"]), SubscriberDefaults()
    )
    store.feedback.record_vote(other.id, "p003", 1, start)
    assert store.feedback.remove_vote(sub.id, "p003") and not store.feedback.remove_vote(
        sub.id, "p003"
    )
    assert store.feedback.vote_of(other.id, "p003") == 1, "another reader's vote on the paper stays"
    assert store.feedback.vote_of(sub.id, "p004") == -1, "the reader's other votes stay"


def test_feedback_counts_each_vote_under_the_topic_its_reader_got_the_paper_for(
    store: Storage,
) -> None:
    """`digest feedback`'s two tables. The same paper went to two readers for different
    topics, and one reader got two digests, so a vote must find its own reader's digest
    holding that paper; topics tie on votes, and one has many votes but a poor balance."""
    ada, bob, cy, dan = (
        store.subscribers.add(sub(f"{name}@example.org", "rl"), DEFAULTS)
        for name in ("ada", "bob", "cy", "dan")
    )
    titled = ("p1", "p2", "p4", "p5", "p6", "p7", "p8", "p9")  # p3 is not in the papers table
    store.papers.upsert([PaperRecord(pid, f"Title {pid}") for pid in titled])

    def pick(pid: str, topic: str | None) -> dict:
        return {"arxiv_id": pid, "topic": topic, "reason": "r"}

    day = dt.date(2026, 11, 23)
    record_sent_digest(
        store, ada.id, day, [pick("p1", "rl"), pick("p2", "agents"), pick("p3", None)]
    )
    record_sent_digest(store, bob.id, day, [pick(p, "policy learning") for p in ("p1", "p7", "p8")])
    record_sent_digest(
        store, ada.id, day + dt.timedelta(days=1), [pick("p4", "rl"), pick("p9", "agents")]
    )
    since = dt.datetime(2026, 11, 24, 12, 0)
    votes = [  # (reader, paper, value, minutes after `since`)
        (ada, "p1", 1, 0),  # exactly at `since`: counted
        (ada, "p4", -1, 1),
        (ada, "p9", 1, 2),
        (ada, "p2", 1, 2),  # the same minute as p9
        (ada, "p3", 1, 3),
        (bob, "p1", -1, 4),
        (bob, "p7", -1, 4),
        (bob, "p8", -1, 4),
        (cy, "p5", 1, 5),  # never sent to cy: "(trending)"
        (dan, "p5", 1, 5),
        (cy, "p6", -1, 5),
        (dan, "p2", -1, -1),  # before `since`: not counted
    ]
    for reader, pid, value, minutes in votes:
        store.feedback.record_vote(reader.id, pid, value, since + dt.timedelta(minutes=minutes))

    assert store.feedback.votes_by_topic(since) == [
        ("(trending)", 3, 1),
        ("policy learning", 0, 3),  # more votes first, however they went
        ("agents", 2, 0),  # a tie on votes: by name
        ("rl", 1, 1),
    ]
    assert store.feedback.most_liked_papers(since) == [
        ("p5", "Title p5", 2, 0),
        ("p2", "Title p2", 1, 0),  # dan's older dislike does not count
        ("p3", "p3", 1, 0),  # no title known: its id
        ("p9", "Title p9", 1, 0),
        ("p1", "Title p1", 1, 1),  # as many likes, more dislikes: after
    ]
    assert (store.feedback.vote_of(ada.id, "p1"), store.feedback.vote_of(bob.id, "p1")) == (1, -1)
    assert (
        store.feedback.vote_of(ada.id, "p4") == -1 and store.feedback.vote_of(cy.id, "p1") is None
    )
    at = since + dt.timedelta(minutes=2)
    assert store.feedback.votes_of(ada.id)[:3] == [
        VoteRecord("p3", 1, "p3", None, since + dt.timedelta(minutes=3)),
        VoteRecord("p2", 1, "Title p2", "agents", at),  # newest first, then by id
        VoteRecord("p9", 1, "Title p9", "agents", at),
    ]
    assert [v.topic for v in store.feedback.votes_of(ada.id)[3:]] == ["rl", "rl"]
    for n in range(10, 16):
        store.feedback.record_vote(cy.id, f"p{n}", 1, since)
    assert len(store.feedback.most_liked_papers(since)) == 10, "ten by default"
