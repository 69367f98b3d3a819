"""Sending a batch of deliveries: claim a group -> render and send each -> record the group.

Each message is rendered while the server takes in the one before it; its answer is read
before anything is recorded. The database row is the truth. A delivery is claimed with a
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
import time
from collections.abc import Callable, Mapping, Sequence
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

    def all(self) -> list[ListRecord]: ...


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
    Each digest is from its list and carries its List-Id and title (``lists``; None: the
    default list's, as tests that have no lists send them).
    """
    report = BatchReport()
    loaded = deliveries.load(delivery_ids)
    paper_ids = {str(pick["arxiv_id"]) for delivery, _ in loaded for pick in delivery.picks}
    paper_ids |= papers_of_topics(t for _, sub in loaded for t in sub.topics)  # their titles
    known = {p.arxiv_id: p for p in papers.find(ids=sorted(paper_ids))} if paper_ids else {}
    wanted = []
    for delivery, subscriber in loaded:
        if subscriber.status == "active":
            wanted.append((delivery, subscriber))
        else:
            deliveries.skip(delivery.id, f"not sent: the subscriber is {subscriber.status}")
            report.skipped += 1
            report.inactive += 1
    by_id = {listed.id: listed for listed in lists.all()} if lists is not None else {}
    sending = _Sending(deliveries, settings, transport, limiter, known, clock, report, by_id)
    accepted: list[SentRecord] = []
    for start in range(0, len(wanted), settings.send_group):
        group = wanted[start : start + settings.send_group]
        ids, claimed_at = [d.id for d, _ in group], clock()
        if start == 0:
            claim, taken = deliveries.claim(ids, claimed_at)
        else:  # the group before's record and this claim: one commit
            claim = secrets.token_hex(8)
            recorded, taken = _record(
                "mark sent",
                deliveries.mark_sent_and_claim,
                accepted,
                ids,
                claim,
                claimed_at,
                patience=patience(settings),
            )
            report.recorded(accepted, recorded)
        report.skipped += len(group) - len(taken)
        lease = _Lease(deliveries, settings, claim, claimed_at, taken)
        accepted = sending.group([(d, sub) for d, sub in group if d.id in taken], lease)
    report.recorded(
        accepted, _record("mark sent", deliveries.mark_sent, accepted, patience=patience(settings))
    )
    return report


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
    lists: Mapping[int, ListRecord]

    def group(
        self, claimed: Sequence[tuple[DeliveryRecord, SubscriberRecord]], lease: _Lease
    ) -> list[SentRecord]:
        """Send a claimed group; the records to write for the messages the server accepted.

        Each message is built while the server takes in the one before it, whose answer is
        read (and any refusal recorded) before the next is handed over. A message whose
        claim passed to another worker (this one stalled past its lease) is not sent."""
        claim = lease.claim
        accepted: list[SentRecord | None] = []
        in_flight: _InFlight | None = None
        for delivery, subscriber in claimed:
            message, now = self.compose(delivery, subscriber)
            if in_flight is not None:
                accepted.append(self.conclude(in_flight, claim))
                in_flight = None
            if not lease.holds(delivery.id, self.clock()):
                self.report.lost += 1
                log.warning("delivery %d: claim lost to another worker; not sent", delivery.id)
                continue
            if self.limiter is not None:
                self.limiter.wait()
            recipient = wire_address(subscriber.email)
            pending = self.transport.begin(message, self.settings.sender, recipient)
            in_flight = _InFlight(delivery, subscriber, message, pending, now)
        if in_flight is not None:
            accepted.append(self.conclude(in_flight, claim))
        return [sent for sent in accepted if sent is not None]

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

    def conclude(self, in_flight: _InFlight, claim: str) -> SentRecord | None:
        """The server's answer for one message. Accepted: the record to write. Refused: the
        retry or failure is recorded here, and None."""
        deliveries, settings, report = self.deliveries, self.settings, self.report
        delivery, subscriber, message, pending, now = in_flight
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
