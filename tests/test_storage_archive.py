"""The archive on SQLite and PostgreSQL: sent digests, and which papers a reader already had."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import DEFAULTS, record_sent_digest, sub

from digest.records import NewDelivery, SubscriberDefaults, Votes
from digest.storage import Storage, archive, feedback
from digest.subscriptions import build_subscriber_input


@pytest.mark.parametrize("many", [False, True], ids=["few readers", "the daily run"])
def test_what_was_sent_and_votes_are_read_the_same_for_few_readers_or_many(
    store: Storage, monkeypatch: pytest.MonkeyPatch, many: bool
) -> None:
    """Two ways to read, one answer: IN lists of a few readers' ids (a preview), or one pass
    over the rows (a million readers); what was sent only among today's candidates."""
    if many:
        for module in (archive, feedback):
            monkeypatch.setattr(module, "MANY_SUBSCRIBERS", 1)
    ada, bob, cy = (
        store.subscribers.add(
            build_subscriber_input(f"{n}@example.org", ["rl"]), SubscriberDefaults()
        )
        for n in ("ada", "bob", "cy")
    )
    today = dt.date(2026, 11, 30)
    record_sent_digest(store, ada.id, today, [{"arxiv_id": p, "topic": "rl"} for p in ("p1", "p2")])
    record_sent_digest(store, bob.id, today, [{"arxiv_id": p, "topic": "rl"} for p in ("p2", "p3")])
    record_sent_digest(store, cy.id, today, [{"arxiv_id": "p2", "topic": "rl"}])
    sent = store.archive.sent_paper_ids([ada.id, bob.id], among=["p2", "p3", "p9"])
    assert sent == {ada.id: {"p2"}, bob.id: {"p2", "p3"}}
    assert store.archive.sent_paper_ids([ada.id], among=[]) == {ada.id: set()}

    now = dt.datetime(2026, 11, 30, 8)
    store.feedback.record_vote(ada.id, "p1", 1, now)
    store.feedback.record_vote(ada.id, "p2", -1, now + dt.timedelta(seconds=1))
    store.feedback.record_vote(cy.id, "p2", 1, now)
    assert store.feedback.reader_votes([ada.id, bob.id]) == {ada.id: Votes(("p1",), ("p2",))}


def test_the_archive_holds_only_the_readers_own_sent_digests_newest_first(store: Storage) -> None:
    ada, bob = (
        store.subscribers.add(sub(f"{name}@example.org", "rl"), DEFAULTS) for name in ("ada", "bob")
    )
    days = [dt.date(2026, 7, day) for day in (11, 12, 13)]
    for day in days:
        record_sent_digest(store, ada.id, day, [{"arxiv_id": f"ada-{day.day}", "topic": "rl"}])
    record_sent_digest(store, bob.id, days[0], [{"arxiv_id": "bob-11", "topic": "rl"}])
    planned = days[-1] + dt.timedelta(days=1)
    store.deliveries.create([NewDelivery(ada.id, planned, [{"arxiv_id": "ada-14"}])])

    def shown(digests: list) -> list[tuple]:
        return [(d.edition, d.email, [p["arxiv_id"] for p in d.picks]) for d in digests]

    assert shown(store.archive.sent_digests(ada.id, limit=2)) == [
        (days[2], "ada@example.org", ["ada-13"]),
        (days[1], "ada@example.org", ["ada-12"]),
    ], "sent only, newest first, as many as asked"
    assert len(store.archive.sent_digests(ada.id)) == 3
    sent_at = [d.sent_at for d in store.archive.sent_digests(ada.id)]
    assert sent_at == [dt.datetime.combine(day, dt.time(7)) for day in reversed(days)], "dated"
    assert shown([store.archive.sent_digest(bob.id, days[0])]) == [
        (days[0], "bob@example.org", ["bob-11"])
    ]
    assert store.archive.sent_digest(bob.id, days[1]) is None, (
        "another reader's edition is not bob's"
    )
    assert store.archive.sent_digest(ada.id, planned) is None, (
        "planned, not sent: not in the archive"
    )
