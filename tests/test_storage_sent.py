"""Recording a send: the 'sent' mark and the papers it sent commit together, or not at all.

A sent digest whose papers were not recorded would send them again the next day; papers
recorded for a digest still marked 'sending' would hold them back from its resend.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import FEEDS
from sqlalchemy import event
from sqlalchemy.engine import Engine

from digest.records import NewDelivery, SentRecord, SubscriberDefaults
from digest.sources import parse_response
from digest.storage import Storage
from digest.subscriptions import build_subscriber_input

NOW = dt.datetime(2026, 11, 23, 7, 0)


class WorkerDied(Exception):
    """The process stops here, as a kill or a lost connection would stop it."""


@contextmanager
def dying_on(engine: Engine, table: str) -> Iterator[None]:
    """The first statement that inserts into ``table`` never reaches the database."""

    def die(conn, cursor, statement: str, *args: object) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith(f"INSERT INTO {table.upper()}"):
            raise WorkerDied(statement)

    event.listen(engine, "before_cursor_execute", die)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", die)


def test_a_crash_while_recording_the_papers_leaves_the_whole_send_unrecorded(
    store: Storage,
) -> None:
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers[:2]
    ids = tuple(p.arxiv_id for p in papers)
    store.papers.upsert(papers)
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    picks = [{"arxiv_id": pid, "topic": "rl", "reason": "r"} for pid in ids]
    _, (delivery,) = store.deliveries.create([NewDelivery(sub.id, NOW.date(), picks)])
    claim, _ = store.deliveries.claim([delivery], NOW)
    sent = SentRecord(delivery, sub.id, claim, "<1@test>", NOW, ids)

    with dying_on(store.db.engine, "sent_papers"), pytest.raises(WorkerDied):
        store.deliveries.mark_sent([sent])
    assert [d.status for d in store.deliveries.find()] == ["sending"], (
        "not 'sent' without its papers: they would go out again tomorrow"
    )
    assert store.archive.sent_paper_ids([sub.id], ids) == {sub.id: set()}

    assert store.deliveries.mark_sent([sent]) == {delivery}, "the record's retry lands whole"
    assert [d.status for d in store.deliveries.find()] == ["sent"]
    assert store.archive.sent_paper_ids([sub.id], ids) == {sub.id: set(ids)}
