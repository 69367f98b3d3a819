"""Sending a batch of deliveries: claim a group -> render and send each -> record the group.

Each message is rendered while the server takes in the one before it; its answer is read
before anything is recorded. A group's first message goes to the server short of the end of
its data while the group before is recorded on a second thread, and the end follows only
once that commit is back: the wait overlaps the conversation, not the window. The database
row is the truth. A delivery is claimed with a
conditional UPDATE before it is sent and marked ``sent`` once the server's 250 is read, so a
redelivered batch (acks_late) skips what is done and two workers never send the same row.
A duplicate is possible only where the server may have accepted a message the database
does not know of: the worker dies between the server's 250 and the group's ``sent`` commit,
the database stays down past two thirds of the claim lease, or the reply to DATA never
comes (an unknown outcome). Each is resent after the lease with the same Message-ID and
flagged (docs/delivery.md, "The windows that remain").

A message's path: content (editions) -> message (emails: render, then MIME) -> send
(transports) -> record (storage).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from digest import emails
from digest.editions import digest_content
from digest.limits import RateLimiter
from digest.lists import DEFAULT_LIST, titles
from digest.messages import Message, wire_address
from digest.models import utcnow
from digest.records import DeliveryRecord, ListRecord, SentRecord, SubscriberRecord
from digest.settings import Settings
from digest.sources import PaperRecord
from digest.storage import StorageError
from digest.subscriptions import papers_of_topics
from digest.transports import Pending, PermanentError, TransientError, Transport, UnknownOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")

LONGEST_WAIT = 2.0  # seconds between tries of a record: a database back is noticed soon


class DeliveryStore(Protocol):
    """The delivery rows as a batch uses them (:class:`digest.storage.Deliveries`): load,
    claim, record each outcome under the claim, and the install id for Message-IDs."""

    def load(self, ids: Sequence[int]) -> list[tuple[DeliveryRecord, SubscriberRecord]]: ...

    def skip(self, delivery_id: int, reason: str) -> bool: ...

    def claim(self, ids: Sequence[int], now: dt.datetime) -> tuple[str, set[int]]: ...

    def renew(self, claim: str, now: dt.datetime) -> set[int]: ...

    def mark_sent(self, sent: Sequence[SentRecord]) -> set[int]: ...

    def mark_sent_and_claim(
        self, sent: Sequence[SentRecord], ids: Sequence[int], claim: str, now: dt.datetime
    ) -> tuple[set[int], set[int]]: ...

    def mark_retry(
        self,
        delivery_id: int,
        claim: str,
        error: str,
        next_try_at: dt.datetime,
        possible_duplicate: bool = False,
    ) -> bool: ...

    def mark_failed(
        self, delivery_id: int, claim: str, error: str, hard_bounce: bool, bounce_limit: int
    ) -> bool: ...

    def install_id(self) -> str: ...


class PaperLookup(Protocol):
    """The papers a batch's digests name (:class:`digest.storage.Papers`)."""

    def find(self, *, ids: Sequence[str] | None = None) -> list[PaperRecord]: ...


class ListLookup(Protocol):
    """The lists a batch's digests are sent for (:class:`digest.storage.Lists`)."""

    def by_id(self) -> dict[int, ListRecord]: ...


@dataclass
class BatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # not claimable: already sent, or in another worker's hands
    inactive: int = 0  # of the skipped: the subscriber paused or left since the plan
    lost: int = (
        0  # claimed, then taken over by another worker after this one stalled past its lease
    )
    errors: list[str] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        for name in ("sent", "retried", "failed", "bounced", "skipped", "inactive", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)

    def recorded(self, accepted: Sequence[SentRecord], recorded: set[int]) -> None:
        """A group's 'sent' records: those whose claim had passed to another worker are lost."""
        self.sent += len(recorded)
        self.lost += len(accepted) - len(recorded)

    def count(self, outcome: str, recorded: bool) -> None:
        """One delivery's outcome, or ``lost`` when its record found the claim gone."""
        name = outcome if recorded else "lost"
        setattr(self, name, getattr(self, name) + 1)


def retry_delay(settings: Settings, attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=settings.retry_base_seconds * 2 ** max(attempts - 1, 0))


def patience(settings: Settings) -> float:
    """Seconds a worker keeps trying to record what it knows: two thirds of the claim lease,
    as the claim was renewed at most a third of a lease before. Within that no tick takes
    the claim, so an outcome recorded late still lands as this worker's, not as a resend."""
    return settings.claim_lease_seconds * 2 / 3


def _record(what: str, action: Callable[..., T], *args: object, patience: float) -> T:
    """Database writes after a send are retried, the wait doubling up to
    :data:`LONGEST_WAIT`, for ``patience`` seconds: failing them risks a duplicate (a
    database restart must not make the worker abandon answers it holds). Returns the
    write's answer (which tells whether the claim had passed to another worker)."""
    started, waited, delay = time.monotonic(), 0.0, 0.4
    while True:
        try:
            return action(*args)
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any database outage
            left = patience - max(time.monotonic() - started, waited)
            if left <= 0:
                raise
            log.warning("%s failed (%s); retrying", what, exc)
            time.sleep(min(delay, left))
            waited += min(delay, left)
            delay = min(delay * 2, LONGEST_WAIT)


def send_deliveries(
    deliveries: DeliveryStore,
    papers: PaperLookup,
    settings: Settings,
    delivery_ids: Sequence[int],
    transport: Transport,
    limiter: RateLimiter | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    lists: ListLookup | None = None,
) -> BatchReport:
    """Send every claimable delivery of a batch; one bad address, or one claim lost to
    another worker, never stops the others.

    Deliveries are claimed, and their 'sent' records written, ``DIGEST_SEND_GROUP`` at a
    time: one commit per group, which records the group before and claims this one, the
    difference between a third and most of the SMTP sink's speed on PostgreSQL. The price:
    a worker killed mid-group resends the group's accepted messages (docs/delivery.md).
    That commit runs on a second thread while the group's first message goes to the server
    short of the end of its data, which follows once the commit is back: the wait for the
    commit overlaps the SMTP conversation, and the window stays one group.
    Each digest is from its list and carries its List-Id and title (``lists``; None: the
    default list's, as tests that have no lists send them).
    """
    report = BatchReport()
    loaded = deliveries.load(delivery_ids)
    paper_ids = {str(pick["arxiv_id"]) for delivery, _ in loaded for pick in delivery.picks}
    paper_ids |= papers_of_topics(t for _, sub in loaded for t in sub.topics)  # their titles
    known = {p.arxiv_id: p for p in papers.find(ids=sorted(paper_ids))} if paper_ids else {}
    wanted, now = [], clock()
    for delivery, subscriber in loaded:
        if subscriber.status != "active":
            deliveries.skip(delivery.id, f"not sent: the subscriber is {subscriber.status}")
            report.skipped += 1
            report.inactive += 1
        elif _claimable(delivery, now):
            wanted.append((delivery, subscriber))
        else:
            report.skipped += 1
    with ThreadPoolExecutor(1, thread_name_prefix="record") as recorder:
        by_id = lists.by_id() if lists is not None else {}
        sending = _Sending(
            deliveries, settings, transport, limiter, known, clock, report, recorder, by_id
        )
        sending.batch(wanted)
    return report


def _claimable(delivery: DeliveryRecord, now: dt.datetime) -> bool:
    """Whether a claim could take the delivery as loaded (the claim itself decides). A
    redelivered batch's sent rows are left out here, so no first message of a group is
    handed over only to be abandoned with its connection."""
    return delivery.status == "queued" and (
        delivery.next_try_at is None or delivery.next_try_at <= now
    )


@dataclass
class _Lease:
    """A group's claim, renewed as the group goes so that a slow but alive relay never lets
    it lapse into a requeue. A tick takes a claim only once it is a lease old, so for a
    third of a lease after a renewal the claim is surely ours; past that, the next message
    renews first, and the renewal answers which deliveries are still ours. A fast relay
    pays about one renewal per group; a group that lost its claim stops sending."""

    deliveries: DeliveryStore
    settings: Settings
    claim: str
    renewed_at: dt.datetime
    ours: set[int]

    def holds(self, delivery_id: int, now: dt.datetime) -> bool:
        """Whether ``delivery_id`` is still this worker's to send, renewing when due."""
        if now - self.renewed_at >= dt.timedelta(seconds=self.settings.claim_lease_seconds / 3):
            self.ours = _record(
                "renew claim",
                self.deliveries.renew,
                self.claim,
                now,
                patience=patience(self.settings),
            )
            self.renewed_at = now
        return delivery_id in self.ours


class _InFlight(NamedTuple):
    """A message handed to the server, whose answer is read after the next one is built."""

    delivery: DeliveryRecord
    subscriber: SubscriberRecord
    message: Message
    pending: Pending
    built_at: dt.datetime
    claim: str


Claimed = Sequence[tuple[DeliveryRecord, SubscriberRecord]]


@dataclass
class _Sending:
    """What every message of a batch is built and sent with."""

    deliveries: DeliveryStore
    settings: Settings
    transport: Transport
    limiter: RateLimiter | None
    papers: Mapping[str, PaperRecord]
    clock: Callable[[], dt.datetime]
    report: BatchReport
    recorder: Executor  # one thread: each group's record and the next group's claim
    lists: Mapping[int, ListRecord]

    def batch(self, wanted: Claimed) -> None:
        """Send the batch group by group; each group's accepted messages are recorded as
        the next group opens (:meth:`open_group`), the last group's at the end.

        Each message is built while the server takes in the one before it, whose answer is
        read (and any refusal recorded) before the next is handed over. A message whose
        claim passed to another worker (this one stalled past its lease) is not sent."""
        accepted: list[SentRecord] = []  # the server said 250; not recorded yet
        in_flight: _InFlight | None = None
        size = self.settings.send_group
        for start in range(0, len(wanted), size):
            group = wanted[start : start + size]
            if start == 0:
                claimed_at = self.clock()
                claim, taken = self.deliveries.claim([d.id for d, _ in group], claimed_at)
                self.report.skipped += len(group) - len(taken)
                lease = _Lease(self.deliveries, self.settings, claim, claimed_at, taken)
                rest = group
            else:
                accepted += self.answered(in_flight)
                lease, in_flight = self.open_group(group, accepted)
                accepted, rest = [], group[1:]
            for delivery, subscriber in [(d, sub) for d, sub in rest if d.id in lease.ours]:
                message, now = self.compose(delivery, subscriber)
                accepted += self.answered(in_flight)
                in_flight = None
                if not lease.holds(delivery.id, self.clock()):
                    self.report.lost += 1
                    log.warning("delivery %d: claim lost to another worker; not sent", delivery.id)
                    continue
                in_flight = self.hand_over(delivery, subscriber, message, now, lease.claim)
        accepted += self.answered(in_flight)
        self.report.recorded(
            accepted,
            _record(
                "mark sent", self.deliveries.mark_sent, accepted, patience=self.record_patience
            ),
        )

    def open_group(
        self, group: Claimed, accepted: Sequence[SentRecord]
    ) -> tuple[_Lease, _InFlight | None]:
        """Record the group before (``accepted``) and claim ``group`` in one commit, on the
        recorder thread, while the group's first message is built and goes to the server
        short of the end of its data. The end follows once that commit is back, and only if
        the claim took the message; else it is abandoned. So the server can accept nothing
        of this group while a message of the group before is unrecorded: the window stays
        one group, and the commit's wait overlaps building the message and most of its
        conversation."""
        (delivery, subscriber), ids = group[0], [d.id for d, _ in group]
        claim, claimed_at = secrets.token_hex(8), self.clock()
        started = threading.Event()
        record = self.recorder.submit(
            self.record_and_claim, started, accepted, ids, claim, claimed_at
        )
        started.wait()  # else the recorder may wait for the GIL until building the message ends
        message, now = self.compose(delivery, subscriber)
        held = self.hand_over(delivery, subscriber, message, now, claim, hold=True)
        recorded, taken = record.result()
        self.report.recorded(accepted, recorded)
        self.report.skipped += len(group) - len(taken)
        lease = _Lease(self.deliveries, self.settings, claim, claimed_at, taken)
        if delivery.id not in taken:
            held.pending.abandon()
            return lease, None
        held.pending.release()
        return lease, held

    @property
    def record_patience(self) -> float:
        return patience(self.settings)

    def record_and_claim(
        self,
        started: threading.Event,
        accepted: Sequence[SentRecord],
        ids: Sequence[int],
        claim: str,
        now: dt.datetime,
    ) -> tuple[set[int], set[int]]:
        """On the recorder thread: :meth:`DeliveryStore.mark_sent_and_claim`, with the
        worker's patience. ``started`` is set first: a thread that has only just become
        runnable waits for the GIL behind a busy one for up to ``sys.getswitchinterval()``
        (5 ms), longer than the commit itself, so the sender waits for this one to run."""
        started.set()
        return _record(
            "mark sent",
            self.deliveries.mark_sent_and_claim,
            accepted,
            ids,
            claim,
            now,
            patience=self.record_patience,
        )

    def hand_over(
        self,
        delivery: DeliveryRecord,
        subscriber: SubscriberRecord,
        message: Message,
        now: dt.datetime,
        claim: str,
        hold: bool = False,
    ) -> _InFlight:
        """One message to the server, paced by the shared rate limit; its answer comes later."""
        if self.limiter is not None:
            self.limiter.wait()
        recipient = wire_address(subscriber.email)
        pending = self.transport.begin(message, self.settings.sender, recipient, hold=hold)
        return _InFlight(delivery, subscriber, message, pending, now, claim)

    def compose(
        self, delivery: DeliveryRecord, subscriber: SubscriberRecord
    ) -> tuple[Message, dt.datetime]:
        now = self.clock()
        listed = self.lists.get(subscriber.list_id, DEFAULT_LIST)
        content = digest_content(
            subscriber,
            delivery.picks,
            self.papers,
            delivery.edition,
            self.settings.tokens,
            self.settings.base_url,
            delivery.quiet_topics,
            titles(listed, self.settings.sender),
        )
        message = emails.digest(
            content, self.settings, delivery.id, now, self.deliveries.install_id(), listed=listed
        )
        return message, now

    def answered(self, in_flight: _InFlight | None) -> list[SentRecord]:
        """The record to write for a message in flight, once its answer is read: none when
        nothing was in flight, or when the server refused it (that outcome is recorded
        here)."""
        if in_flight is None:
            return []
        sent = self.conclude(in_flight)
        return [] if sent is None else [sent]

    def conclude(self, in_flight: _InFlight) -> SentRecord | None:
        """The server's answer for one message. Accepted: the record to write. Refused: the
        retry or failure is recorded here, and None."""
        deliveries, settings, report = self.deliveries, self.settings, self.report
        delivery, subscriber, message, pending, now, claim = in_flight
        try:
            pending.result()
        except UnknownOutcome as exc:
            _handle_unknown(deliveries, settings, delivery, claim, str(exc), now, report)
            return None
        except TransientError as exc:
            _handle_transient(deliveries, settings, delivery, claim, str(exc), now, report)
            return None
        except PermanentError as exc:
            bounce = (delivery.id, claim, str(exc), True, settings.bounce_limit)
            _record_outcome(
                report, settings, "bounced", "mark bounced", deliveries.mark_failed, *bounce
            )
            report.errors.append(f"{subscriber.email}: {exc}")
            reply = without_address(str(exc), subscriber.email)
            log.warning(
                "delivery %d to subscriber %d bounced: %s", delivery.id, subscriber.id, reply
            )
            return None
        paper_ids = tuple(str(p["arxiv_id"]) for p in delivery.picks)
        message_id = message["Message-ID"]
        assert message_id is not None  # build_message always writes one
        return SentRecord(delivery.id, subscriber.id, claim, message_id, self.clock(), paper_ids)


def _record_outcome(
    report: BatchReport,
    settings: Settings,
    outcome: str,
    what: str,
    action: Callable[..., bool],
    *args: object,
) -> None:
    """A refused delivery's outcome, recorded under its claim with the worker's patience and
    counted (as ``lost`` when the claim had passed to another worker)."""
    report.count(outcome, _record(what, action, *args, patience=patience(settings)))


def without_address(reply: str, email: str) -> str:
    """A server's reply for the log: servers often quote the recipient ("550 <ada@...>: no
    such user"), and logs are kept and shipped where addresses must not go; the delivery
    and subscriber ids say whom it concerns."""
    return reply.replace(email, "RECIPIENT")


def _handle_transient(
    deliveries: DeliveryStore,
    settings: Settings,
    delivery: DeliveryRecord,
    claim: str,
    error: str,
    now: dt.datetime,
    report: BatchReport,
) -> None:
    attempts = delivery.attempts + 1
    shown = without_address(error, delivery.email)
    if attempts >= settings.max_attempts:
        final = f"gave up after {attempts} attempts: {error}"
        failed = (delivery.id, claim, final, False, settings.bounce_limit)
        _record_outcome(report, settings, "failed", "mark failed", deliveries.mark_failed, *failed)
        log.error("delivery %d failed for good after %d attempts: %s", delivery.id, attempts, shown)
    else:
        next_try = now + retry_delay(settings, attempts)
        retry = (delivery.id, claim, error, next_try)
        _record_outcome(report, settings, "retried", "mark retry", deliveries.mark_retry, *retry)
        log.info("delivery %d: temporary failure (%s); retry at %s", delivery.id, shown, next_try)
    report.errors.append(error)


def _handle_unknown(
    deliveries: DeliveryStore,
    settings: Settings,
    delivery: DeliveryRecord,
    claim: str,
    error: str,
    now: dt.datetime,
    report: BatchReport,
) -> None:
    """The server may have kept the message: resending at once would make a duplicate
    whenever it did. Flagged, and retried (with the same Message-ID) no sooner than a lost
    worker's claim would be, which gives a slow server its time."""
    lease = dt.timedelta(seconds=settings.claim_lease_seconds)
    next_try = now + max(lease, retry_delay(settings, delivery.attempts + 1))
    note = f"{error}; retried at {next_try} (a duplicate is possible)"
    retry = (delivery.id, claim, note, next_try, True)
    _record_outcome(
        report, settings, "retried", "mark unknown outcome", deliveries.mark_retry, *retry
    )
    report.errors.append(note)
    log.warning("delivery %d: %s", delivery.id, note)
