"""Sending against a real in-process SMTP server: exactly one digest per subscriber and edition,
through 4xx, 5xx, dropped connections, stale claims and database hiccups."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import FEEDS, run_at_once
from sqlalchemy.exc import OperationalError

from digest.delivery import send_deliveries
from digest.ingestion import ingest_bytes
from digest.pipeline import run_tick
from digest.records import DeliveryRecord, SentRecord, SubscriberDefaults, SubscriberRecord
from digest.settings import Settings
from digest.storage import Storage
from digest.subscriptions import build_subscriber_input
from digest.transports import BaseTransport, OutboxTransport, PlainSmtpTransport, SmtpTransport

NOW = dt.datetime(2026, 11, 23, 8, 0)
T = TypeVar("T")
TOPICS = [
    "reinforcement learning",
    "large language model agents",
    "medical imaging",
    "diffusion models",
]


def populate(store: Storage, count: int) -> list[str]:
    ingest_bytes(
        store.papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    ingest_bytes(
        store.papers,
        (FEEDS / "arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml").read_bytes(),
        "api",
        frozenset({"new"}),
    )
    rows = [
        build_subscriber_input(f"user{i}@example.org", [TOPICS[i % 4], TOPICS[(i + 1) % 4]])
        for i in range(count)
    ]
    store.subscribers.import_rows(rows, SubscriberDefaults(send_hour=7))
    return [r.email for r in rows]


def smtp_settings(settings: Settings, sink, **extra) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "batch_size": 50,
            "offline": True,
            "retry_base_seconds": 60,
            **extra,
        }
    )


def planned(store: Storage, settings: Settings, now: dt.datetime = NOW) -> list[list[int]]:
    """One tick's batches of delivery ids, without fetching."""
    batches: list[list[int]] = []
    run_tick(store, settings, now, batches.append, fetch_every=dt.timedelta(days=999))
    return batches


def tick_and_send(store: Storage, settings: Settings, now: dt.datetime, transport=None) -> list:
    batches = planned(store, settings, now)
    with transport or SmtpTransport(settings) as sender:
        return [
            send_deliveries(
                store.deliveries, store.papers, settings, batch, sender, clock=lambda: now
            )
            for batch in batches
        ]


def test_each_due_subscriber_gets_exactly_one_digest_and_a_rerun_sends_nothing(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 200)
    config = smtp_settings(settings, smtp_sink)
    reports = tick_and_send(store, config, NOW)
    assert len(reports) == 4 and sum(r.sent for r in reports) == 200
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    first = smtp_sink.handler.received[0].message()
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "new paper" in first["Subject"]
    assert tick_and_send(store, config, NOW + dt.timedelta(minutes=5)) == []
    assert len(smtp_sink.handler.received) == 200
    assert store.deliveries.counts() == {"sent": 200}


def test_papers_already_sent_are_never_sent_again(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 3)
    config = smtp_settings(settings, smtp_sink)
    tick_and_send(store, config, NOW)
    day_one = {d.subscriber_id: {p["arxiv_id"] for p in d.picks} for d in store.deliveries.find()}
    tick_and_send(store, config, NOW + dt.timedelta(days=1))
    for delivery in store.deliveries.find(edition=(NOW + dt.timedelta(days=1)).date()):
        assert not {p["arxiv_id"] for p in delivery.picks} & day_one[delivery.subscriber_id]


def test_not_due_before_the_local_send_hour(store: Storage, settings: Settings, smtp_sink) -> None:
    populate(store, 2)
    store.subscribers.update(
        "user0@example.org", timezone="Asia/Tokyo", send_hour=20
    )  # 17:00 in Tokyo
    tick_and_send(store, smtp_settings(settings, smtp_sink), NOW)
    assert smtp_sink.handler.by_recipient() == Counter({"user1@example.org": 1})
    tick_and_send(
        store, smtp_settings(settings, smtp_sink), NOW + dt.timedelta(hours=3)
    )  # 20:00 in Tokyo
    assert smtp_sink.handler.by_recipient() == Counter(
        {"user1@example.org": 1, "user0@example.org": 1}
    )


def test_temporary_4xx_is_retried_with_backoff_until_it_recovers(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 20)
    refusals = {"left": 30}

    def busy(_: str) -> str | None:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            return "451 4.3.0 Try again later" if refusals["left"] % 2 else "421 4.7.0 Too busy"
        return None

    smtp_sink.handler.rcpt_reply = busy
    config = smtp_settings(settings, smtp_sink)
    now = NOW
    for _ in range(6):
        tick_and_send(store, config, now)
        now += dt.timedelta(hours=1)
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    assert store.deliveries.counts() == {"sent": 20}
    assert max(d.attempts for d in store.deliveries.find()) >= 2


def test_retries_stop_at_the_attempt_cap_and_retry_failed_requeues(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 1)
    smtp_sink.handler.rcpt_reply = lambda _: "451 4.3.0 Mailbox busy"
    config = smtp_settings(settings, smtp_sink, max_attempts=3)
    now = NOW
    for _ in range(5):
        tick_and_send(store, config, now)
        now += dt.timedelta(hours=1)
    (delivery,) = store.deliveries.find()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert "gave up after 3 attempts: 451" in delivery.last_error
    smtp_sink.handler.rcpt_reply = None
    assert store.deliveries.retry_failed() == 1
    tick_and_send(store, config, now)
    assert len(smtp_sink.handler.received) == 1


def test_550_for_one_address_fails_only_that_delivery(
    store: Storage, settings: Settings, smtp_sink, caplog
) -> None:
    emails = populate(store, 10)
    smtp_sink.handler.rcpt_reply = lambda rcpt: (
        f"550 5.1.1 <{rcpt}>: No such user" if rcpt == "user3@example.org" else None
    )
    caplog.set_level("WARNING", logger="digest.delivery")
    (report,) = tick_and_send(store, smtp_settings(settings, smtp_sink), NOW)
    assert report.errors == ["user3@example.org: 550 5.1.1 <user3@example.org>: No such user"]
    delivery = store.deliveries.find(status="bounced")[0]
    assert [r.getMessage() for r in caplog.records] == [
        f"delivery {delivery.id} to subscriber {delivery.subscriber_id} bounced: "
        "550 5.1.1 <RECIPIENT>: No such user"
    ], "the log names ids, never the address (the admin's report does)"
    assert smtp_sink.handler.by_recipient() == Counter(
        {e: 1 for e in emails if e != "user3@example.org"}
    )
    bounced = store.deliveries.find(status="bounced")
    assert [d.email for d in bounced] == ["user3@example.org"]
    assert "No such user" in bounced[0].last_error
    assert store.subscribers.get("user3@example.org").status == "active"


def test_repeated_hard_bounces_mark_the_subscriber_bounced(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 2)
    smtp_sink.handler.rcpt_reply = lambda rcpt: (
        "550 5.1.1 No such user" if rcpt == "user0@example.org" else None
    )
    config = smtp_settings(settings, smtp_sink, bounce_limit=2)
    for day in range(3):
        tick_and_send(store, config, NOW + dt.timedelta(days=day))
    assert store.subscribers.get("user0@example.org").status == "bounced"
    assert len(store.deliveries.find(status="bounced")) == 2, "no third attempt at a dead mailbox"


def test_server_dropping_the_connection_mid_batch_loses_and_duplicates_nothing(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 60)
    smtp_sink.handler.drop_every = 7
    tick_and_send(store, smtp_settings(settings, smtp_sink), NOW)
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))


def test_server_down_then_back(store: Storage, settings: Settings, smtp_sink) -> None:
    emails = populate(store, 5)
    down = smtp_settings(settings, smtp_sink, smtp_port=1)  # nothing listens on port 1
    tick_and_send(store, down, NOW)
    assert store.deliveries.counts() == {"queued": 5}
    assert "cannot connect to 127.0.0.1:1" in store.deliveries.find()[0].last_error
    tick_and_send(store, smtp_settings(settings, smtp_sink), NOW + dt.timedelta(hours=1))
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))


def test_a_stale_claim_from_a_dead_worker_is_requeued_and_sent_once(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 3)
    config = smtp_settings(settings, smtp_sink)
    batches = planned(store, config)
    dead = batches[0][0]
    _, taken = store.deliveries.claim([dead], NOW)  # a worker claimed it, then died before sending
    assert taken == {dead}
    transport = SmtpTransport(config)  # the batch is redelivered to another worker
    report = send_deliveries(
        store.deliveries,
        store.papers,
        config,
        batches[0],
        transport,
        clock=lambda: NOW + dt.timedelta(seconds=30),
    )
    transport.close()
    assert (report.sent, report.skipped) == (2, 1), (
        "the dead worker's claim is not stolen before its lease ends"
    )
    tick_and_send(store, config, NOW + dt.timedelta(seconds=config.claim_lease_seconds + 60))
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    resent = [d for d in store.deliveries.find(status="sent") if d.id == dead][0]
    assert resent.resent and resent.last_error is None, (
        "a possible duplicate stays visible to admins"
    )


def test_a_subscriber_who_pauses_after_planning_gets_nothing_and_is_not_retried(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 3)
    config = smtp_settings(settings, smtp_sink)
    batches = planned(store, config)
    store.subscribers.set_status("user1@example.org", "paused")
    transport = SmtpTransport(config)
    send_deliveries(
        store.deliveries, store.papers, config, batches[0], transport, clock=lambda: NOW
    )
    transport.close()
    assert "user1@example.org" not in smtp_sink.handler.by_recipient()
    (skipped,) = store.deliveries.find(status="skipped")
    assert (
        skipped.email == "user1@example.org"
        and skipped.last_error == "not sent: the subscriber is paused"
    )
    assert store.deliveries.take_to_send(NOW + dt.timedelta(days=1), dt.timedelta(0)) == []


def test_two_workers_on_the_same_batch_send_each_digest_once(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 40)
    config = smtp_settings(settings, smtp_sink)
    batches = planned(store, config)
    ids = [i for b in batches for i in b]
    for _ in range(2):  # a redelivered batch after the first run finished
        transport = SmtpTransport(config)
        send_deliveries(store.deliveries, store.papers, config, ids, transport, clock=lambda: NOW)
        transport.close()
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))


class FlakyStore:
    """A fake of exactly :class:`digest.delivery.DeliveryStore` over the real delivery rows,
    whose 'sent' write fails twice as during a database failover."""

    def __init__(self, store: Storage) -> None:
        self._rows, self.failures = store.deliveries, 2

    def load(self, ids: Sequence[int]) -> list[tuple[DeliveryRecord, SubscriberRecord]]:
        return self._rows.load(ids)

    def skip(self, delivery_id: int, reason: str) -> bool:
        return self._rows.skip(delivery_id, reason)

    def claim(self, ids: Sequence[int], now: dt.datetime) -> tuple[str, set[int]]:
        return self._rows.claim(ids, now)

    def renew(self, claim: str, now: dt.datetime) -> set[int]:
        return self._rows.renew(claim, now)

    def _drop(self, statement: str) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError(statement, {}, Exception("server closed the connection"))

    def _sent_write(self, write: Callable[..., T], *args: object) -> T:
        """A 'sent' write that fails before it commits."""
        self._drop("UPDATE deliveries")
        return write(*args)

    def mark_sent(self, sent: Sequence[SentRecord]) -> set[int]:
        return self._sent_write(self._rows.mark_sent, sent)

    def mark_sent_and_claim(
        self, sent: Sequence[SentRecord], ids: Sequence[int], claim: str, now: dt.datetime
    ) -> tuple[set[int], set[int]]:
        return self._sent_write(self._rows.mark_sent_and_claim, sent, ids, claim, now)

    def mark_retry(
        self,
        delivery_id: int,
        claim: str,
        error: str,
        next_try_at: dt.datetime,
        possible_duplicate: bool = False,
    ) -> bool:
        return self._rows.mark_retry(delivery_id, claim, error, next_try_at, possible_duplicate)

    def mark_failed(
        self, delivery_id: int, claim: str, error: str, hard_bounce: bool, bounce_limit: int
    ) -> bool:
        return self._rows.mark_failed(delivery_id, claim, error, hard_bounce, bounce_limit)

    def install_id(self) -> str:
        return self._rows.install_id()


@pytest.mark.parametrize("group", [1, 20])
def test_database_hiccup_when_recording_a_send_is_retried_not_resent(
    store: Storage, settings: Settings, smtp_sink, monkeypatch, caplog, group: int
) -> None:
    """With groups of one the failing write also claims the next message."""
    monkeypatch.setattr("digest.delivery.time.sleep", lambda _: None)
    emails = populate(store, 3)
    config = smtp_settings(settings, smtp_sink, send_group=group)
    batches = planned(store, config)
    flaky = FlakyStore(store)
    transport = SmtpTransport(config)
    caplog.set_level("WARNING", logger="digest.delivery")
    report = send_deliveries(flaky, store.papers, config, batches[0], transport, clock=lambda: NOW)
    transport.close()
    assert report.sent == 3 and flaky.failures == 0
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["mark sent failed"] * 2
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    assert store.deliveries.counts() == {"sent": 3}


class FlakyRecords(FlakyStore):
    """The retry and the failure records each fail once before they land."""

    def __init__(self, store: Storage) -> None:
        super().__init__(store)
        self.failures = 0  # the 'sent' record is sound here
        self.failing = {"mark_retry", "mark_failed"}

    def _fails_once(self, name: str) -> None:
        if name in self.failing:
            self.failing.discard(name)
            raise OperationalError("UPDATE deliveries", {}, Exception("connection reset"))

    def mark_retry(self, *args) -> bool:  # noqa: ANN002
        self._fails_once("mark_retry")
        return super().mark_retry(*args)

    def mark_failed(self, *args) -> bool:  # noqa: ANN002
        self._fails_once("mark_failed")
        return super().mark_failed(*args)


def test_retries_and_final_failures_say_what_happened_in_the_log(
    store: Storage, settings: Settings, smtp_sink, monkeypatch, caplog
) -> None:
    import logging

    monkeypatch.setattr("digest.delivery.time.sleep", lambda _: None)
    populate(store, 1)
    smtp_sink.handler.data_reply = lambda _: "451 4.3.0 try later"
    config = smtp_settings(settings, smtp_sink, max_attempts=2)
    flaky = FlakyRecords(store)
    caplog.set_level(logging.INFO, logger="digest.delivery")
    for now in (NOW, NOW + dt.timedelta(seconds=config.retry_base_seconds)):
        batches = planned(store, config, now)
        with SmtpTransport(config) as transport:
            send_deliveries(
                flaky, store.papers, config, batches[0], transport, clock=lambda now=now: now
            )
    (delivery,) = store.deliveries.find()
    retry_at = NOW + dt.timedelta(seconds=config.retry_base_seconds)
    said = [
        r.getMessage().split(" (", 1)[0] if "retrying" in r.getMessage() else r.getMessage()
        for r in caplog.records
    ]
    assert said == [
        "mark retry failed",
        f"delivery {delivery.id}: temporary failure (451 4.3.0 try later); retry at {retry_at}",
        "mark failed failed",
        f"delivery {delivery.id} failed for good after 2 attempts: 451 4.3.0 try later",
    ]
    assert all("connection reset" in r.getMessage() for r in caplog.records[::2])
    assert delivery.status == "failed" and not flaky.failing


@pytest.mark.parametrize("failures", [5, 99])
def test_a_sent_record_is_tried_for_two_thirds_of_the_lease_before_the_batch_gives_up(
    store: Storage, settings: Settings, smtp_sink, monkeypatch, failures: int
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("digest.delivery.time.sleep", slept.append)
    populate(store, 2)
    config = smtp_settings(settings, smtp_sink, claim_lease_seconds=12)  # 8 s of patience
    batches = planned(store, config)
    flaky = FlakyStore(store)
    flaky.failures = failures
    with SmtpTransport(config) as transport:
        if failures == 5:
            assert (
                send_deliveries(
                    flaky, store.papers, config, batches[0], transport, clock=lambda: NOW
                ).sent
                == 2
            )
            assert slept == [0.4, 0.8, 1.6, 2.0, 2.0], "the wait doubles, up to 2 s"
        else:
            with pytest.raises(OperationalError):  # the batch is redelivered; the lease resends
                send_deliveries(
                    flaky, store.papers, config, batches[0], transport, clock=lambda: NOW
                )
            assert slept[:5] == [0.4, 0.8, 1.6, 2.0, 2.0] and sum(slept) == pytest.approx(8), (
                "never past the lease's two thirds"
            )


def test_a_record_that_finds_its_claim_gone_counts_as_lost() -> None:
    from digest.delivery import BatchReport

    report = BatchReport()
    report.count("bounced", True)
    report.count("retried", False)
    report.count("failed", False)
    assert (report.bounced, report.retried, report.failed, report.lost) == (1, 0, 0, 2)


def test_a_bounce_record_that_fails_once_says_so_and_lands(
    store: Storage, settings: Settings, smtp_sink, monkeypatch, caplog
) -> None:
    monkeypatch.setattr("digest.delivery.time.sleep", lambda _: None)
    populate(store, 1)
    smtp_sink.handler.rcpt_reply = lambda _: "550 5.1.1 No such user"
    config = smtp_settings(settings, smtp_sink)
    batches = planned(store, config)
    caplog.set_level("WARNING", logger="digest.delivery")
    with SmtpTransport(config) as transport:
        report = send_deliveries(FlakyRecords(store), store.papers, config, batches[0], transport)
    assert report.bounced == 1 and store.deliveries.counts() == {"bounced": 1}
    assert caplog.records[0].getMessage().startswith("mark bounced failed (")


def test_the_batch_counts_what_it_skipped_and_paces_every_message(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 6)
    config = smtp_settings(settings, smtp_sink, send_group=3)
    batches = planned(store, config)
    for email in emails[:2]:
        store.subscribers.set_status(email, "paused")
    store.deliveries.claim(batches[0][2:3], NOW)  # in another worker's hands

    class CountingLimiter:
        waits = 0

        def wait(self) -> None:
            self.waits += 1

    limiter = CountingLimiter()
    with SmtpTransport(config) as transport:
        report = send_deliveries(
            store.deliveries, store.papers, config, batches[0], transport, limiter, lambda: NOW
        )
    assert (report.sent, report.skipped) == (3, 3)
    assert limiter.waits == 3, "one permit per message sent"
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails[3:], 1))


def test_outbox_transport_writes_one_eml_per_digest(store: Storage, settings: Settings) -> None:
    populate(store, 4)
    tick_and_send(
        store,
        settings.model_copy(update={"offline": True}),
        NOW,
        transport=OutboxTransport(settings.outbox_dir),
    )
    files = sorted(settings.outbox_dir.rglob("*.eml"))
    assert len(files) == 4 and files[0].parent.name == "20261123"


class LostAfterCommit(FlakyStore):
    """The 'sent' write commits, then the connection drops before the worker hears of it."""

    def _sent_write(self, write: Callable[..., T], *args: object) -> T:
        recorded = write(*args)
        self._drop("COMMIT")
        return recorded


class TakenMeanwhile(FlakyStore):
    """Another worker claims ``taken`` just before the record that would claim it for this
    one, which comes back after ``slow`` seconds."""

    def __init__(self, store: Storage, taken: int, slow: float) -> None:
        super().__init__(store)
        self.failures, self.taken, self.slow = 0, taken, slow

    def _sent_write(self, write: Callable[..., T], *args: object) -> T:
        if args[1:2] == ([self.taken],):  # mark_sent_and_claim(sent, ids, claim, now)
            self._rows.claim([self.taken], NOW)
            time.sleep(self.slow)
        return write(*args)


@pytest.mark.parametrize("slow", [0, 0.2], ids=["back at once", "back later"])
def test_a_message_another_worker_claimed_meanwhile_is_never_accepted_here(
    store: Storage, settings: Settings, smtp_sink, slow: float
) -> None:
    """With groups of one, message N+1's claim rides in message N's record, while message
    N+1 waits short of its end of data; a claim that did not take it abandons it, however
    soon the record comes back. The server never accepts it from this worker, and the
    others go out once."""
    emails = populate(store, 3)
    config = smtp_settings(settings, smtp_sink, send_group=1)
    (batch,) = planned(store, config)
    rows = TakenMeanwhile(store, batch[1], slow)
    held: list[str] = []
    with SmtpTransport(config) as transport:
        begin = transport.begin

        def noting(message, sender: str, recipient: str, hold: bool = False):  # noqa: ANN001, ANN202
            held.extend([recipient] if hold else [])
            return begin(message, sender, recipient, hold=hold)

        transport.begin = noting  # type: ignore[method-assign]
        report = send_deliveries(rows, store.papers, config, batch, transport, clock=lambda: NOW)
    assert emails[1] in held
    assert (report.sent, report.skipped) == (2, 1)
    assert smtp_sink.handler.by_recipient() == Counter({emails[0]: 1, emails[2]: 1})
    assert [d.status for d in store.deliveries.find()] == ["sent", "sending", "sent"]


@pytest.mark.parametrize("group", [1, 20])
def test_a_hiccup_after_the_sent_commit_is_not_an_error(
    store: Storage, settings: Settings, smtp_sink, monkeypatch, group: int
) -> None:
    """With groups of one the lost answer is also the next message's claim: the retry finds
    that claim its own, so the message goes now, once, on its first attempt."""
    monkeypatch.setattr("digest.delivery.time.sleep", lambda _: None)
    emails = populate(store, 3)
    config = smtp_settings(settings, smtp_sink, send_group=group)
    batches = planned(store, config)
    with SmtpTransport(config) as transport:
        report = send_deliveries(
            LostAfterCommit(store), store.papers, config, batches[0], transport, clock=lambda: NOW
        )
    assert report.sent == 3, "the retry finds its own write and the batch goes on"
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    assert [(d.status, d.attempts) for d in store.deliveries.find()] == [("sent", 1)] * 3
    assert store.deliveries.counts() == {"sent": 3}


class StallingTransport(BaseTransport):
    """Worker A's SMTP connection, which hangs past the claim lease on one message: meanwhile
    a tick requeues that delivery and worker B sends it."""

    def __init__(self, inner, stall_on: str, meanwhile) -> None:
        self.inner, self.stall_on, self.meanwhile = inner, stall_on, meanwhile

    def send(self, message, sender: str, recipient: str) -> None:
        if recipient == self.stall_on:
            self.meanwhile()
        self.inner.send(message, sender, recipient)

    def close(self) -> None:
        self.inner.close()


def test_a_worker_that_stalls_past_its_lease_loses_its_claim_not_its_batch(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 5)
    config = smtp_settings(settings, smtp_sink, send_group=1)  # claims and records per message
    batches = planned(store, config)
    later = NOW + dt.timedelta(seconds=config.claim_lease_seconds + 60)

    def tick_and_worker_b() -> None:
        requeued = []
        run_tick(store, config, later, requeued.append, fetch_every=dt.timedelta(days=999))
        assert requeued == [[batches[0][1]]], "the stalled delivery is requeued after the lease"
        with SmtpTransport(config) as transport:
            assert (
                send_deliveries(
                    store.deliveries,
                    store.papers,
                    config,
                    requeued[0],
                    transport,
                    clock=lambda: later,
                ).sent
                == 1
            )

    stalling = StallingTransport(SmtpTransport(config), emails[1], tick_and_worker_b)
    with stalling:
        report = send_deliveries(
            store.deliveries, store.papers, config, batches[0], stalling, clock=lambda: NOW
        )
    assert report.sent == 4 and report.lost == 1, "worker A's rest of the batch went on"
    assert smtp_sink.handler.by_recipient() == Counter({**dict.fromkeys(emails, 1), emails[1]: 2})
    assert store.deliveries.counts() == {"sent": 5}
    resent = next(d for d in store.deliveries.find() if d.email == emails[1])
    assert resent.resent, "the possible duplicate stays visible to admins"


def test_concurrent_claims_take_each_delivery_once(store: Storage, settings: Settings) -> None:
    populate(store, 40)
    ids = [i for batch in planned(store, settings) for i in batch]
    claimed, errors = run_at_once(
        lambda _: [i for i in ids if store.deliveries.claim([i], NOW)[1]], 4
    )
    assert errors == [] and sorted(i for mine in claimed for i in mine) == sorted(ids)


def test_two_beat_processes_by_mistake_send_each_digest_once(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 30)
    config = smtp_settings(settings, smtp_sink)

    def beat(_: int) -> int:
        batches = planned(store, config)
        with SmtpTransport(config) as transport:
            return sum(
                send_deliveries(
                    store.deliveries, store.papers, config, batch, transport, clock=lambda: NOW
                ).sent
                for batch in batches
            )

    sent, errors = run_at_once(beat)
    assert errors == [] and sum(sent) == 30
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))


class WorkerKilled(BaseException):
    """The process dies here: no handler of ours runs."""


class DyingTransport(BaseTransport):
    def __init__(self, inner, accepted_before_death: int) -> None:
        self.inner, self.left = inner, accepted_before_death

    def send(self, message, sender: str, recipient: str) -> None:
        if self.left == 0:
            raise WorkerKilled
        self.inner.send(message, sender, recipient)
        self.left -= 1

    def close(self) -> None:
        self.inner.close()


def test_a_worker_killed_mid_group_resends_at_most_that_group_and_says_which(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    emails = populate(store, 12)
    config = smtp_settings(settings, smtp_sink, send_group=5)
    batches = planned(store, config)
    with pytest.raises(WorkerKilled), DyingTransport(SmtpTransport(config), 8) as dying:
        send_deliveries(
            store.deliveries, store.papers, config, batches[0], dying, clock=lambda: NOW
        )
    # groups of 5: the first was recorded, 3 of the second were accepted but not recorded;
    # past both leases a tick hands out the claimed group and the batch's unclaimed rest
    leases = max(config.claim_lease_seconds, config.enqueue_lease_seconds)
    tick_and_send(store, config, NOW + dt.timedelta(seconds=leases + 60))
    counts = smtp_sink.handler.by_recipient()
    assert set(counts) == set(emails), "no digest lost"
    duplicated = {email for email, n in counts.items() if n > 1}
    assert len(duplicated) == 3 and all(counts[e] == 2 for e in duplicated)
    flagged = {d.email for d in store.deliveries.find() if d.resent}
    assert duplicated <= flagged and len(flagged) <= config.send_group, (
        "`digest deliveries` shows every delivery that may have gone out twice, no more than a group"
    )


def test_a_later_success_clears_the_last_error(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 1)
    config = smtp_settings(settings, smtp_sink, retry_base_seconds=1)
    smtp_sink.handler.rcpt_reply = lambda _: "451 4.3.0 try later"
    tick_and_send(store, config, NOW)
    assert store.deliveries.find()[0].last_error
    smtp_sink.handler.rcpt_reply = None
    tick_and_send(store, config, NOW + dt.timedelta(seconds=10))
    (delivery,) = store.deliveries.find()
    assert (delivery.status, delivery.last_error, delivery.resent) == ("sent", None, False)


def test_delivery_totals_follow_the_status_filter(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 3)
    smtp_sink.handler.rcpt_reply = lambda rcpt: (
        "550 5.1.1 no" if rcpt == "user0@example.org" else None
    )
    tick_and_send(store, smtp_settings(settings, smtp_sink), NOW)
    assert store.deliveries.counts(status="bounced") == {"bounced": 1}
    assert store.deliveries.counts() == {"bounced": 1, "sent": 2}


def test_message_ids_differ_between_installs_and_stay_within_one(
    settings: Settings, smtp_sink, tmp_path
) -> None:
    """Two installs with the default key, or a database recreated the same day, must not
    reuse each other's Message-IDs; a resend within one install keeps its own."""
    ids = []
    for n in (1, 2):
        store = Storage.from_url(f"sqlite:///{tmp_path / f'install{n}.db'}")
        store.db.upgrade()
        populate(store, 1)
        tick_and_send(store, smtp_settings(settings, smtp_sink), NOW)
        (delivery,) = store.deliveries.find()
        ids.append(delivery.message_id)
        assert store.deliveries.install_id() == store.deliveries.install_id(), (
            "kept in the database"
        )
    assert ids[0] != ids[1]
    assert [m.message()["Message-ID"] for m in smtp_sink.handler.received] == ids


def test_retry_delays_double_with_each_attempt(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    populate(store, 1)
    smtp_sink.handler.rcpt_reply = lambda _: "451 4.3.0 try later"
    config = smtp_settings(settings, smtp_sink, retry_base_seconds=60, max_attempts=10)
    now, delays = NOW, []
    for _ in range(4):
        tick_and_send(store, config, now)
        (delivery,) = store.deliveries.find()
        delays.append((delivery.next_try_at - now).total_seconds())
        now = delivery.next_try_at
    assert delays == [60, 120, 240, 480]


@pytest.mark.parametrize(
    ("reply", "status"),
    [("451 4.3.0 try later", "queued"), ("554 5.7.1 rejected as spam", "bounced")],
)
def test_a_refusal_at_data_is_temporary_or_final_by_its_code(
    store: Storage, settings: Settings, smtp_sink, reply: str, status: str
) -> None:
    populate(store, 1)
    smtp_sink.handler.data_reply = lambda _: reply
    tick_and_send(store, smtp_settings(settings, smtp_sink), NOW)
    (delivery,) = store.deliveries.find()
    assert delivery.status == status and reply.split()[0] in delivery.last_error


def test_refusals_at_data_mid_batch_land_on_their_own_deliveries(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    """The final answer of a message is read after the next one is built: each answer must
    still be recorded against the delivery it answers."""
    emails = populate(store, 7)
    refusals = {emails[2]: "554 5.7.1 rejected as spam", emails[5]: "451 4.3.0 try later"}
    smtp_sink.handler.data_reply = refusals.get
    (report,) = tick_and_send(store, smtp_settings(settings, smtp_sink, send_group=3), NOW)
    assert (report.sent, report.bounced, report.retried) == (5, 1, 1)
    status = {d.email: d.status for d in store.deliveries.find()}
    assert status == {
        **dict.fromkeys(emails, "sent"),
        emails[2]: "bounced",
        emails[5]: "queued",
    }
    assert smtp_sink.handler.by_recipient() == Counter({e: 1 for e in emails if e not in refusals})


def test_a_refused_sender_is_our_problem_not_the_subscribers_bounce(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    from digest.models import Subscriber

    populate(store, 1)
    smtp_sink.handler.mail_reply = lambda _: "550 5.7.1 sender not allowed"
    tick_and_send(store, smtp_settings(settings, smtp_sink, bounce_limit=1), NOW)
    (delivery,) = store.deliveries.find()
    assert delivery.status == "queued" and "sender refused" in delivery.last_error
    with store.db.session() as session:
        subscriber = session.query(Subscriber).one()
        assert (subscriber.status, subscriber.hard_bounces) == ("active", 0)


def test_a_digest_resent_after_midnight_keeps_its_message_id(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    """The Message-ID is the edition's, not the sending day's: a digest accepted just before
    midnight by a worker that then died is resent after midnight with the same Message-ID,
    so the duplicate can be recognised downstream."""
    emails = populate(store, 2)
    config = smtp_settings(settings, smtp_sink, semantic=False)
    late = dt.datetime(2026, 11, 23, 23, 58)
    (batch,) = planned(store, config, late)
    with pytest.raises(WorkerKilled), DyingTransport(SmtpTransport(config), 1) as dying:
        send_deliveries(store.deliveries, store.papers, config, batch, dying, clock=lambda: late)
    after_midnight = dt.datetime(2026, 11, 24, 0, 30)
    leases = max(config.claim_lease_seconds, config.enqueue_lease_seconds)
    assert after_midnight - late > dt.timedelta(seconds=leases), "the resend is past the leases"
    tick_and_send(store, config, after_midnight)
    ids = {email: [] for email in emails}
    for received in smtp_sink.handler.received:
        ids[received.recipient].append(received.message()["Message-ID"])
    (resent,) = [email for email in emails if len(ids[email]) == 2]
    assert ids[resent][0] == ids[resent][1] and ids[resent][0].startswith("<digest.20261123.")
    assert store.deliveries.counts() == {"sent": 2}


def test_a_reader_east_of_utc_gets_the_message_id_of_their_own_day(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    """08:00 in Tokyo is 23:00 the day before in UTC: the digest is the Tokyo day's edition,
    and its Message-ID names that day, whatever the server's date."""
    populate(store, 1)
    store.subscribers.update("user0@example.org", timezone="Asia/Tokyo", send_hour=8)
    tick_and_send(
        store, smtp_settings(settings, smtp_sink, semantic=False), dt.datetime(2026, 11, 22, 23, 0)
    )
    (delivery,) = store.deliveries.find()
    assert delivery.edition == dt.date(2026, 11, 23)
    (received,) = smtp_sink.handler.received
    assert received.message()["Message-ID"] == delivery.message_id
    assert delivery.message_id.startswith(f"<digest.20261123.{delivery.id}.")


SLOW_ANSWER = 1.0  # seconds the relay takes to answer the end of a message's data


@pytest.mark.parametrize("transport", [SmtpTransport, PlainSmtpTransport])
def test_an_answer_to_data_slower_than_the_command_timeout_is_waited_for(
    store: Storage, settings: Settings, smtp_sink, transport
) -> None:
    """RFC 5321 4.5.3.2.6: the reply to the end of the data may take minutes; a relay that
    takes longer than the command timeout is slow, not gone, and gets each message once."""
    emails = populate(store, 2)
    smtp_sink.handler.late_answer = SLOW_ANSWER
    config = smtp_settings(settings, smtp_sink, smtp_timeout=SLOW_ANSWER / 2)
    tick_and_send(store, config, NOW, transport(config))
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    assert store.deliveries.counts() == {"sent": 2}


@pytest.mark.parametrize("transport", [SmtpTransport, PlainSmtpTransport])
def test_no_answer_to_data_in_time_is_an_unknown_outcome_retried_after_the_lease(
    store: Storage, settings: Settings, smtp_sink, transport
) -> None:
    """The message was handed over and the answer never came in time (here the relay kept
    it): recorded and flagged as a possible duplicate, never resent on the spot; after the
    lease it goes again with the same Message-ID."""
    emails = populate(store, 2)
    smtp_sink.handler.late_answer = SLOW_ANSWER
    config = smtp_settings(settings, smtp_sink, smtp_data_timeout=SLOW_ANSWER / 4)
    tick_and_send(store, config, NOW, transport(config))
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    waiting = store.deliveries.find()
    assert store.deliveries.counts() == {"queued": 2}
    lease = dt.timedelta(seconds=config.claim_lease_seconds)
    for delivery in waiting:
        assert delivery.resent and "unknown outcome" in delivery.last_error
        assert delivery.next_try_at >= NOW + lease, "not before the lease"
    smtp_sink.handler.late_answer = 0
    tick_and_send(store, config, NOW + lease / 2, transport(config))
    assert len(smtp_sink.handler.received) == 2, "nothing resent within the lease"
    tick_and_send(store, config, NOW + lease, transport(config))
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 2))
    ids = Counter(str(r.message()["Message-ID"]) for r in smtp_sink.handler.received)
    assert sorted(ids.values()) == [2, 2], "a resend carries the first send's Message-ID"
    assert store.deliveries.counts() == {"sent": 2}
    assert all(d.resent for d in store.deliveries.find()), "still shown as possible duplicates"


def test_a_slow_relay_never_lets_the_claim_lapse_mid_group(
    store: Storage, settings: Settings, smtp_sink
) -> None:
    """A group takes longer than the lease at 0.6 s a message (8 x 0.6 s against 3 s).
    Meanwhile ticks requeue stale claims and an idle worker sends whatever they hand out, on
    the real clock. The slow worker renews its claim as it goes: nothing is requeued, each
    reader gets one digest. The lease is seconds, not one, so a loaded CI machine's slow
    SQLite write cannot pass it between two renewals."""
    import threading

    from digest.models import utcnow

    emails = populate(store, 8)
    smtp_sink.handler.late_answer = 0.6
    config = smtp_settings(settings, smtp_sink, claim_lease_seconds=3, send_group=8)
    (batch,) = planned(store, config)
    done, idle_sent, requeued = threading.Event(), [], []

    def ticks_and_an_idle_worker() -> None:
        lease = dt.timedelta(seconds=config.claim_lease_seconds)
        with SmtpTransport(config) as transport:
            while not done.wait(0.1):
                requeued.append(store.deliveries.requeue_stale_claims(utcnow(), lease))
                ids = store.deliveries.take_to_send(utcnow(), lease)
                if ids:
                    report = send_deliveries(store.deliveries, store.papers, config, ids, transport)
                    idle_sent.append(report.sent)

    other = threading.Thread(target=ticks_and_an_idle_worker)
    other.start()
    try:
        with SmtpTransport(config) as transport:
            report = send_deliveries(store.deliveries, store.papers, config, batch, transport)
    finally:
        done.set()
        other.join(30)
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    assert (report.sent, report.lost, sum(requeued), idle_sent) == (8, 0, 0, [])
    assert store.deliveries.counts() == {"sent": 8}


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl on a free port), so it can be
    stopped and started without touching the shared server."""

    def __init__(self, bindir: Path, folder: Path, port: int) -> None:
        self.bindir, self.folder, self.port = bindir, folder, port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_postgres, str(self.bindir / tool), *args], check=True, capture_output=True
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run(
            "pg_ctl", "-D", str(self.folder / "data"), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    import glob
    import shutil
    import socket
    import tempfile

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.skip(reason="no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))  # outside root's 0700 tmp_path
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = PrivatePostgres(Path(found[-1]).parent, folder, port)
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("group", [1, 5])
def test_a_database_restart_mid_send_keeps_what_was_accepted_and_resends_nothing(
    private_postgres: PrivatePostgres, settings: Settings, smtp_sink, group: int
) -> None:
    """PostgreSQL goes down for 8 s while a group is on the wire: the worker keeps the
    relay's answers and records them when the database is back, within the lease; nothing
    is requeued as a dead worker's and every reader gets exactly one digest. Groups of one
    record with a statement of their own, on psycopg's connection under SQLAlchemy's pool."""
    import threading

    store = Storage.from_url(private_postgres.url)
    store.db.upgrade()
    emails = populate(store, 10)
    smtp_sink.handler.late_answer = 0.2
    config = smtp_settings(settings, smtp_sink, send_group=group, claim_lease_seconds=30)
    (batch,) = planned(store, config)

    def outage() -> None:
        while smtp_sink.handler.accepted == 0:
            time.sleep(0.01)
        private_postgres.stop()
        time.sleep(8)
        private_postgres.start()

    restart = threading.Thread(target=outage)
    restart.start()
    try:
        with SmtpTransport(config) as transport:
            report = send_deliveries(store.deliveries, store.papers, config, batch, transport)
    finally:
        restart.join(60)
    assert smtp_sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    assert (report.sent, report.lost) == (10, 0)
    lease = dt.timedelta(seconds=config.claim_lease_seconds)
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + lease
    assert store.deliveries.requeue_stale_claims(later, lease) == 0
    assert store.deliveries.counts() == {"sent": 10}
    store.dispose()


# A sending worker in a process of its own, killed by the test at a chosen point of the
# one-message window: the record of message STOP-1 and the claim of message STOP (the
# STOP-th record) stall, before or after their commit, while message STOP waits on the
# wire short of the end of its data. Messages count from 0, as the test's emails do. It
# says "stalled", and "held N" when message N is held.
SENDER_KILLED_MID_WINDOW = """
import datetime as dt, json, sys, time
from digest.delivery import send_deliveries
from digest.settings import load_settings
from digest.storage import Storage
from digest.transports import SmtpTransport

url, ids, stop, when, now = sys.argv[1:6]
store, settings, clock = Storage.from_url(url), load_settings(), dt.datetime.fromisoformat(now)
record, records, begun = store.deliveries.mark_sent_and_claim, [], []

def stalling(*args):
    records.append(args)
    if len(records) == int(stop) and when == "before commit":
        print("stalled", flush=True)
        time.sleep(120)
    answer = record(*args)
    if len(records) == int(stop):
        print("stalled", flush=True)
        time.sleep(120)
    return answer

store.deliveries.mark_sent_and_claim = stalling
with SmtpTransport(settings) as transport:
    begin = transport.begin
    def saying(message, sender, recipient, hold=False):
        pending = begin(message, sender, recipient, hold=hold)
        begun.append(recipient)
        if hold:
            print(f"held {len(begun) - 1}", flush=True)
        return pending
    transport.begin = saying
    send_deliveries(store.deliveries, store.papers, settings, json.loads(ids), transport,
                    clock=lambda: clock)
"""


@pytest.mark.postgres
@pytest.mark.parametrize(("when", "resent"), [("before commit", 1), ("after commit", 0)])
def test_a_sender_killed_inside_the_one_message_window_resends_at_most_one(
    pg_url: str, settings: Settings, smtp_sink, tmp_path: Path, when: str, resent: int
) -> None:
    """DIGEST_SEND_GROUP=1 against real PostgreSQL and a real SMTP server: the sender is
    SIGKILLed while message STOP waits short of the end of its data and the commit that
    records message STOP-1 (and claims STOP) has not returned. The server never had STOP;
    STOP-1 is resent after the lease only if that commit had not happened, once, with the
    same Message-ID, flagged. Nothing is lost."""
    import json
    import signal
    import sys

    stop = 3
    store = Storage.from_url(pg_url)
    store.db.upgrade()
    emails = populate(store, 6)
    config = smtp_settings(settings, smtp_sink, send_group=1)
    (batch,) = planned(store, config)
    env = {
        **os.environ,
        "DIGEST_DATA_DIR": str(config.data_dir),
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp_sink.port),
        "DIGEST_SEND_GROUP": "1",
        "DIGEST_OFFLINE": "true",
    }
    args = [pg_url, json.dumps(batch), str(stop), when, NOW.isoformat()]
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER_KILLED_MID_WINDOW, *args],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    try:
        assert sender.stdout is not None
        while not {"stalled", f"held {stop}"} <= set(said):
            line = sender.stdout.readline()
            assert line, f"the sender ended before the window: {said}"
            said.append(line.strip())
        sender.send_signal(signal.SIGKILL)
        sender.wait(30)
    finally:
        sender.kill()
    time.sleep(0.3)  # what the server had when the connection dropped, it has handled
    assert [m.recipient for m in smtp_sink.handler.received] == emails[:stop], (
        "the held message never reached the point of acceptance"
    )
    leases = max(config.claim_lease_seconds, config.enqueue_lease_seconds)
    tick_and_send(store, config, NOW + dt.timedelta(seconds=leases + 60))
    counts = smtp_sink.handler.by_recipient()
    assert set(counts) == set(emails) and sum(counts.values()) == len(emails) + resent
    duplicated = {email for email, n in counts.items() if n > 1}
    assert duplicated == ({emails[stop - 1]} if resent else set())
    for email in duplicated:
        copies = {
            str(m.message()["Message-ID"])
            for m in smtp_sink.handler.received
            if m.recipient == email
        }
        assert len(copies) == 1, "the resend carries the first send's Message-ID"
    flagged = {d.email for d in store.deliveries.find() if d.resent}
    assert duplicated <= flagged <= {emails[stop - 1], emails[stop]}, (
        "flagged: the message in doubt, and the claimed one that was held"
    )
    assert store.deliveries.counts() == {"sent": len(emails)}
    store.dispose()
