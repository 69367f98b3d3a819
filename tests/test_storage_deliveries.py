"""Deliveries on SQLite and PostgreSQL: planning (COPY and INSERT), the claim state
machine and its leases, listing and counts, the install id."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import DEFAULTS, run_at_once, sub
from sqlalchemy import func, select, text

from digest.models import Installation, Subscriber
from digest.records import NewDelivery, SentRecord
from digest.storage import Deliveries, Storage

AWKWARD_TEXT = 'Tab\there, new\nline, back\\slash \\N, "quotes", ünïcödé ∑ and an emoji 🦜'


def test_planned_deliveries_keep_their_picks_exactly_and_skip_rows_that_exist(
    store: Storage,
) -> None:
    """The daily run writes a million rows in one go (PostgreSQL: COPY, whose text format
    gives tabs, newlines and backslashes a meaning of their own); a second plan of the same
    edition, as from a second beat started by mistake, adds only the rows that are new."""
    created = store.subscribers.import_rows(
        [sub(f"r{n}@example.org", "graph neural networks") for n in range(3)], DEFAULTS
    )
    ids = [store.subscribers.get(f"r{n}@example.org").id for n in range(3)]
    assert created.created == 3
    edition = dt.date(2026, 7, 13)
    shared = {"arxiv_id": "2607.00001", "topic": AWKWARD_TEXT, "reason": AWKWARD_TEXT}
    also = {"arxiv_id": "2607.00002", "topic": "t", "reason": "r", "also": [AWKWARD_TEXT, "b"]}
    trending = {"arxiv_id": "2607.00003", "topic": None, "reason": None}
    first = [
        NewDelivery(ids[0], edition, [shared, also, trending], quiet_topics=(AWKWARD_TEXT,)),
        NewDelivery(ids[1], edition, [], status="skipped"),
    ]
    made, queued = store.deliveries.create(first, handed_out_at=dt.datetime(2026, 7, 13, 7))
    assert made == 2 and len(queued) == 1

    again = [
        NewDelivery(ids[1], edition, [shared]),
        NewDelivery(ids[2], edition, [shared, trending]),
    ]
    made, queued_again = store.deliveries.create(again)
    assert made == 1, "the existing row is left alone, the new one is written"
    assert len(queued_again) == 1 and queued_again != queued

    rows = {d.subscriber_id: d for d in store.deliveries.find(edition=edition)}
    assert rows[ids[0]].picks == [shared, also, trending]
    assert rows[ids[0]].quiet_topics == (AWKWARD_TEXT,)
    assert rows[ids[0]].id == queued[0] and rows[ids[0]].status == "queued"
    assert (rows[ids[1]].status, rows[ids[1]].picks) == ("skipped", []), "not overwritten"
    assert rows[ids[2]].id == queued_again[0] and rows[ids[2]].picks == [shared, trending]
    assert store.deliveries.take_to_send(
        dt.datetime(2026, 7, 13, 7, 1), dt.timedelta(minutes=30)
    ) == [rows[ids[2]].id], "only the row planned without a send task is handed out"
    if store.db.engine.dialect.name == "postgresql":  # the daily run's path: picks by number
        with store.db.engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM planned_picks")).scalar()
            numbers = conn.execute(text("SELECT picks FROM deliveries ORDER BY id")).scalars()
            assert stored == 5 and list(numbers)[0] == [0, 1, 2], "each distinct pick once"
            written = conn.execute(text("SELECT pick::text FROM planned_picks WHERE number = 1"))
            compact = json.dumps(also, separators=(",", ":"))
            assert written.scalar() == compact, "JSON without spaces: a million rows a day"


T0 = dt.datetime(2026, 7, 13, 7, 0)
LEASE = dt.timedelta(minutes=10)


def queued_deliveries(store: Storage, count: int) -> list[int]:
    """``count`` readers, each with a queued delivery of T0's edition."""
    store.subscribers.import_rows([sub(f"q{n}@example.org", "rl") for n in range(count)], DEFAULTS)
    ids = [store.subscribers.get(f"q{n}@example.org").id for n in range(count)]
    return store.deliveries.create([NewDelivery(i, T0.date(), []) for i in ids])[1]


def record_outcome(store: Storage, outcome: str, delivery: int, claim: str, error: str) -> bool:
    """A worker's record of a try that did not end in "sent": a retry, a failure or a bounce
    (with a bounce limit of one)."""
    if outcome == "retry":
        return store.deliveries.mark_retry(delivery, claim, error, T0 + LEASE)
    return store.deliveries.mark_failed(delivery, claim, error, outcome == "bounced", 1)


def test_only_claims_older_than_the_lease_are_requeued_and_start_afresh(store: Storage) -> None:
    old, fresh = queued_deliveries(store, 2)
    dead_claim, _ = store.deliveries.claim([old], T0)
    store.deliveries.claim([fresh], T0 + LEASE)
    assert store.deliveries.requeue_stale_claims(T0 + LEASE, LEASE) == 1
    by_id = {d.id: d for d in store.deliveries.find()}
    assert (by_id[old].status, by_id[fresh].status) == ("queued", "sending")
    assert by_id[old].resent
    assert by_id[old].last_error == "worker lost while sending; resent (a duplicate is possible)"
    assert not store.deliveries.mark_retry(old, dead_claim, "451", T0), (
        "the stalled worker is told it lost"
    )
    assert store.deliveries.take_to_send(T0 + LEASE, LEASE) == [old], "due again at once"
    assert store.deliveries.claim([old], T0 + LEASE)[1] == {old}, "the dead claim is gone"


def test_handing_out_follows_the_edition_and_the_enqueue_lease(store: Storage) -> None:
    today = queued_deliveries(store, 2)
    assert store.deliveries.take_to_send(T0, LEASE, edition=T0.date() - dt.timedelta(days=1)) == []
    assert store.deliveries.take_to_send(T0, LEASE, edition=T0.date()) == today
    assert store.deliveries.take_to_send(T0 + LEASE - dt.timedelta(seconds=1), LEASE) == []
    assert store.deliveries.take_to_send(T0 + LEASE, LEASE) == today, "lost with its queue"


def test_skipping_closes_only_a_queued_delivery(store: Storage) -> None:
    queued, claimed = queued_deliveries(store, 2)
    store.deliveries.claim([claimed], T0)
    assert store.deliveries.skip(queued, "paused") is True
    assert store.deliveries.skip(claimed, "paused") is False
    status = {d.id: d.status for d in store.deliveries.find()}
    assert status == {queued: "skipped", claimed: "sending"}


@pytest.mark.parametrize("outcome", ["retry", "failed", "bounced"])
def test_a_record_applies_under_its_own_claim_only_and_a_repeated_one_is_recognised(
    store: Storage, outcome: str
) -> None:
    (delivery,) = queued_deliveries(store, 1)
    claim, _ = store.deliveries.claim([delivery], T0)
    long_error = "451 " + "x" * 3000

    def record(token: str) -> bool:
        return record_outcome(store, outcome, delivery, token, long_error)

    assert record("another-workers-claim") is False
    assert store.deliveries.find()[0].status == "sending", "someone else's record changes nothing"
    assert record(claim) is True
    assert record(claim) is True, "a retried write that had committed counts as done"
    (row,) = store.deliveries.find()
    assert row.status == {"retry": "queued", "failed": "failed", "bounced": "bounced"}[outcome]
    assert row.last_error == long_error[:2000]
    with store.db.session() as session:
        reader = session.query(Subscriber).one()
        bounced = outcome == "bounced"
        assert (reader.status, reader.unsubscribed_at is not None) == (
            ("bounced", True) if bounced else ("active", False)
        ), "a mailbox past the bounce limit is no longer mailed, and says since when"


@pytest.mark.parametrize("outcome", ["retry", "failed"])
def test_a_late_record_never_reopens_a_sent_digest_and_the_log_says_where_it_went(
    store: Storage, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim token stays on a sent row: only its status tells a late retry record from
    the one it was meant for. Reopening a sent digest would send it twice."""
    sent, removed = queued_deliveries(store, 2)
    claim, _ = store.deliveries.claim([sent, removed], T0)
    reader = store.subscribers.get("q0@example.org").id
    assert store.deliveries.mark_sent(
        [SentRecord(sent, reader, claim, "<m@example.org>", T0, ())]
    ) == {sent}
    store.subscribers.remove("q1@example.org")

    with caplog.at_level("WARNING", logger="digest.storage.deliveries"):
        assert record_outcome(store, outcome, sent, claim, "451 later") is False
        assert record_outcome(store, outcome, removed, claim, "451 later") is False
    assert [(d.id, d.status) for d in store.deliveries.find()] == [(sent, "sent")]
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"delivery {sent}: this worker's claim was lost (now sent); another worker has it",
        f"delivery {removed}: this worker's claim was lost (now deleted); another worker has it",
    ]


@pytest.mark.parametrize("others", [0, 1], ids=["one message", "a group"])
def test_a_record_and_the_next_claim_land_in_one_go_and_a_repeat_finds_both(
    store: Storage, others: int
) -> None:
    """With groups of one, message N's 'sent' and message N+1's claim share a commit. A
    repeat of that write (its first answer lost after the commit) must find both done as
    its own: the next message neither left to a lease nor counted as a second attempt.
    On PostgreSQL a message and the next take a statement of their own (one value per
    parameter), a group the arrays' one: both keep these rules."""
    sent, following, elsewhere = queued_deliveries(store, 3)
    claim, _ = store.deliveries.claim([sent], T0)
    store.deliveries.claim([elsewhere], T0)  # another worker's
    reader = store.subscribers.get("q0@example.org").id
    papers = ("2607.00001", "2607.00002", "2607.00001")  # a paper picked for two topics
    record = [SentRecord(sent, reader, claim, "<m@example.org>", T0, papers)]
    both = (record, [following, elsewhere][: 1 + others], "next-claim", T0)
    assert store.deliveries.mark_sent_and_claim(*both) == ({sent}, {following})
    assert store.deliveries.mark_sent_and_claim(*both) == ({sent}, {following}), "a repeat"
    rows = {d.id: (d.status, d.attempts) for d in store.deliveries.find()}
    assert rows == {sent: ("sent", 1), following: ("sending", 1), elsewhere: ("sending", 1)}
    assert store.deliveries.renew("next-claim", T0 + LEASE) == {following}, "under that claim"
    with store.db.engine.connect() as conn:
        papers = conn.execute(text("SELECT subscriber_id, arxiv_id FROM sent_papers")).all()
    assert sorted(tuple(p) for p in papers) == [(reader, "2607.00001"), (reader, "2607.00002")]
    assert store.deliveries.mark_sent_and_claim([], [], "unused", T0) == (set(), set())
    assert store.deliveries.mark_sent_and_claim([], [sent], "late", T0) == (set(), set())
    stolen = [SentRecord(elsewhere, reader, "not-its-claim", "<n@example.org>", T0, ())]
    assert store.deliveries.mark_sent_and_claim(stolen, [], "x", T0) == (set(), set())


def fail_twice(store: Storage, delivery: int) -> None:
    """A delivery handed out, tried, retried and given up on: failed, with two attempts, a
    retry time and a hand-out time that a requeue must all forget."""
    store.deliveries.take_to_send(T0, LEASE)
    claim, _ = store.deliveries.claim([delivery], T0)
    store.deliveries.mark_retry(delivery, claim, "451 busy", T0 + LEASE)
    store.deliveries.take_to_send(T0 + LEASE, LEASE)
    claim, _ = store.deliveries.claim([delivery], T0 + LEASE)
    store.deliveries.mark_failed(delivery, claim, "gave up after 2 attempts: 451 busy", False, 5)


def test_retry_failed_requeues_the_editions_failures_afresh_and_nothing_else(
    store: Storage,
) -> None:
    failed, bounced, untouched = queued_deliveries(store, 3)
    reader = store.subscribers.get("q0@example.org").id
    tomorrow = T0.date() + dt.timedelta(days=1)
    _, (other_day,) = store.deliveries.create([NewDelivery(reader, tomorrow, [])])
    fail_twice(store, failed)
    fail_twice(store, other_day)
    claim, _ = store.deliveries.claim([bounced], T0 + LEASE)
    store.deliveries.mark_failed(bounced, claim, "550 no such user", True, 5)

    assert store.deliveries.retry_failed(T0.date()) == 1
    rows = {d.id: d for d in store.deliveries.find()}
    assert (rows[failed].status, rows[failed].attempts, rows[failed].next_try_at) == (
        "queued",
        0,
        None,
    ), "a fresh start: every attempt again, and due now"
    assert rows[other_day].status == "failed", "another edition's failure waits for its own"
    assert rows[bounced].status == "bounced", "a dead mailbox is not tried again"
    assert store.deliveries.take_to_send(T0 + LEASE, LEASE) == [failed], (
        "handed out at once, not after the enqueue lease of its last try"
    )
    assert rows[untouched].status == "queued"


def test_deliveries_are_listed_newest_edition_first_and_counted_by_edition(store: Storage) -> None:
    first, second = queued_deliveries(store, 2)
    tomorrow = T0.date() + dt.timedelta(days=1)
    reader = store.subscribers.get("q0@example.org").id
    _, (later,) = store.deliveries.create([NewDelivery(reader, tomorrow, [])])
    listed = store.deliveries.find()
    assert [(d.id, d.edition) for d in listed] == [
        (later, tomorrow),
        (first, T0.date()),
        (second, T0.date()),
    ]
    assert store.deliveries.find(limit=2) == listed[:2]
    assert store.deliveries.counts(edition=T0.date()) == {"queued": 2}
    assert store.deliveries.counts(edition=tomorrow) == {"queued": 1}


class MiscountedRows:
    """Planned rows whose length disagrees with what they yield, as a stream made while it is
    read could after a bug: PostgreSQL draws ids for ``len`` rows before reading them."""

    def __init__(self, rows: list[NewDelivery]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows) - 1

    def __iter__(self):  # noqa: ANN204
        return iter(self.rows)


def test_a_plan_that_miscounts_its_rows_is_written_whole_or_refused_never_cut(
    store: Storage,
) -> None:
    readers = [store.subscribers.add(sub(f"m{n}@example.org", "rl"), DEFAULTS).id for n in range(3)]
    rows = MiscountedRows([NewDelivery(r, T0.date(), [{"arxiv_id": "p1"}]) for r in readers])
    try:
        store.deliveries.create(rows)
    except ValueError:
        pass
    assert store.deliveries.counts() in ({}, {"queued": 3}), "no digest silently left out"


def test_an_install_keeps_one_id_however_many_processes_ask(store: Storage) -> None:
    """Every worker process asks once at start: the table must not grow by one row each."""
    first = store.deliveries.install_id()
    others = {Deliveries(store.db).install_id() for _ in range(3)}  # three more processes
    with store.db.session() as session:
        rows = session.scalar(select(func.count()).select_from(Installation))
    assert (others, rows) == ({first}, 1)


def test_processes_starting_at_once_on_a_new_database_sign_with_one_install_id(
    store: Storage,
) -> None:
    """Ten worker processes' first sends on a fresh database, at the same instant: one id
    for all of them, so a resend after a crash carries the Message-ID the first send had."""
    ids, errors = run_at_once(lambda _: Deliveries(store.db).install_id(), 10)
    with store.db.session() as session:
        rows = session.scalar(select(func.count()).select_from(Installation))
    assert errors == [] and (len(set(ids)), rows) == (1, 1)


def test_a_database_from_before_the_one_row_fix_keeps_its_oldest_install_id(store: Storage) -> None:
    """Earlier versions added a row per process; the oldest is the id its Message-IDs used."""
    with store.db.session() as session:
        session.add(Installation(id="f" * 32, created_at=dt.datetime(2026, 7, 1)))
        session.add(Installation(id="1" * 32, created_at=dt.datetime(2026, 7, 2)))
        session.flush()
        session.add(Installation(id="0" * 32, created_at=dt.datetime(2026, 7, 2)))
    assert store.deliveries.install_id() == "f" * 32
    with store.db.session() as session:
        session.delete(session.get(Installation, "f" * 32))
    assert Deliveries(store.db).install_id() == "0" * 32, "a tie on time: by id"
