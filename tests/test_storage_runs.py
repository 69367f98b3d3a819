"""Run receipts on SQLite and PostgreSQL: recorded, counted as batches finish, judged, pruned."""

from __future__ import annotations

import datetime as dt
import threading

from conftest import DEFAULTS, sub

from digest.records import NewDelivery
from digest.runs import BEAT, COMMAND, RunCounts, SourceRun
from digest.storage import Storage

T0 = dt.datetime(2026, 12, 1, 7)
DOWN = SourceRun("hf", "http://127.0.0.1:9/api", "connection refused", seconds=0.01)
UP = SourceRun("arxiv-rss", "http://x/rss", None, seen=40, new=12, http_status=200, seconds=0.4)


def test_a_run_is_recorded_and_its_late_sends_settle_its_status(store: Storage) -> None:
    run = store.runs.start(BEAT, T0)
    assert store.runs.get(run).status == "running"
    store.runs.add_outcomes(run, {"sent": 1})  # a fast worker, before the tick's end
    counts = RunCounts(due=4, planned=3, skipped_nothing_new=1)
    assert store.runs.finish(run, T0 + dt.timedelta(seconds=2), counts, [UP]) == "ok"
    record = store.runs.get(run)
    assert (record.counts.planned, record.counts.sent, record.counts.due) == (3, 1, 4)
    assert record.sources == (UP,) and record.seconds == 2.0
    assert store.runs.add_outcomes(run, {"retrying": 1}) == "partial"
    assert store.runs.add_outcomes(run, {"sent": 1, "bounced": 1}) == "partial"
    assert store.runs.get(run).counts.sent == 2
    assert store.runs.add_outcomes(run + 99, {"sent": 1}) is None, "a pruned run: nothing"


def test_concurrent_batches_add_up(store: Storage) -> None:
    run = store.runs.start(BEAT, T0)
    store.runs.finish(run, T0, RunCounts(planned=40), [])

    def batch() -> None:
        for _ in range(5):
            store.runs.add_outcomes(run, {"sent": 1})

    workers = [threading.Thread(target=batch) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert store.runs.get(run).counts.sent == 20


def test_every_source_down_and_nothing_sent_is_a_failed_run(store: Storage) -> None:
    run = store.runs.start(COMMAND, T0)
    held = RunCounts(due=2, held_sources_down=2)
    assert store.runs.finish(run, T0, held, [DOWN]) == "failed"
    crashed = store.runs.start(BEAT, T0)
    assert store.runs.finish(crashed, T0, RunCounts(), [], "OperationalError: gone") == "failed"


def test_health_streaks_retries_and_the_newest_working_run(store: Storage) -> None:
    for n in range(4):
        run = store.runs.start(BEAT, T0 + dt.timedelta(hours=n))
        store.runs.finish(run, T0, RunCounts(), [UP, DOWN])
    idle = store.runs.start(BEAT, T0 + dt.timedelta(hours=5))
    store.runs.finish(idle, T0 + dt.timedelta(hours=5), RunCounts(), [])
    ada = store.subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)
    _, (delivery,) = store.deliveries.create([NewDelivery(ada.id, T0.date(), [{"arxiv_id": "p"}])])
    claim, _ = store.deliveries.claim([delivery], T0)
    store.deliveries.mark_retry(delivery, claim, "451 later", T0 + dt.timedelta(minutes=5))

    health = store.runs.health(T0 + dt.timedelta(hours=6))
    assert health.last_run.id == idle - 1, "an idle tick says nothing about health"
    assert health.last_tick_at == T0 + dt.timedelta(hours=5)
    by_name = {s.source: s for s in health.sources}
    assert by_name["hf"].failing_runs == 4 and by_name["hf"].last_ok_at is None
    assert by_name["hf"].last_error == "connection refused"
    assert by_name["arxiv-rss"].failing_runs == 0
    assert by_name["arxiv-rss"].last_ok_at == T0 + dt.timedelta(hours=3)
    assert (health.retry_waiting, health.oldest_waiting_at) == (1, T0 + dt.timedelta(minutes=5))
    assert store.runs.waiting_deliveries() == {"queued": 0, "retrying": 1, "sending": 0}
    assert store.runs.subscriber_counts() == {"active": 1}


def test_old_runs_and_alerts_are_pruned_and_an_alert_is_claimed_once_a_day(
    store: Storage,
) -> None:
    old, new = (store.runs.start(BEAT, T0 + dt.timedelta(days=d)) for d in (0, 91))
    store.runs.finish(old, T0, RunCounts(planned=1), [DOWN])
    store.runs.add_outcomes(old, {"sent": 1})
    assert store.runs.outcome_totals()["sent"] == 1
    day = T0.date()
    assert store.runs.claim_alert("source-hf", day) is True
    assert store.runs.claim_alert("source-hf", day) is False
    assert store.runs.claim_alert("source-hf", day + dt.timedelta(days=1)) is True
    store.runs.forget_alert("source-hf", day + dt.timedelta(days=1))
    assert store.runs.claim_alert("source-hf", day + dt.timedelta(days=1)) is True
    assert store.runs.prune(T0 + dt.timedelta(days=1)) == 1
    assert [r.id for r in store.runs.newest()] == [new]
    assert store.runs.sources() == [], "its sources went with it"
    assert store.runs.claim_alert("source-hf", day) is True, "old alerts forgotten too"


def test_a_day_is_troubled_when_its_run_failed_or_held_digests_back(store: Storage) -> None:
    days = [T0.date() + dt.timedelta(days=d) for d in range(3)]
    quiet = store.runs.start(BEAT, T0)
    store.runs.finish(quiet, T0, RunCounts(due=1, skipped_nothing_new=1), [UP])
    down = store.runs.start(BEAT, T0 + dt.timedelta(days=1))
    store.runs.finish(down, T0, RunCounts(due=1, held_sources_down=1), [DOWN])
    assert store.runs.day_summaries(days) == {days[0]: False, days[1]: True, days[2]: False}
