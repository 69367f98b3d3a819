"""Deliveries: one row per (subscriber, edition), and the exactly-once state machine that
sends each of them once.

Planning writes the rows (on PostgreSQL by COPY, :mod:`.bulk`); send tasks take them, claim
them with a token, and record each outcome under that token, so a worker that lost its
claim to another can never record over it. The install id, part of every Message-ID,
lives here too."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Sequence

from sqlalchemy import Connection, and_, bindparam, case, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import Delivery, Installation, SentPaper, Subscriber, utcnow
from digest.records import DeliveryRecord, NewDeliveries, SentRecord, SubscriberRecord
from digest.storage.bulk import copy_new_deliveries
from digest.storage.database import (
    Database,
    StorageError,
    changed_rows,
    chunks,
    insert_ignoring_duplicates,
)
from digest.storage.rows import delivery_record, planned_picks, subscriber_record
from digest.subscriptions import OPTED_OUT

log = logging.getLogger(__name__)


# The two statements every sent message runs, built once: constructing them per call cost
# about as much as executing them.
CLAIM = (
    update(Delivery.__table__)
    .where(
        Delivery.id.in_(bindparam("p_ids", expanding=True)),
        or_(
            and_(
                Delivery.status == "queued",
                or_(Delivery.next_try_at.is_(None), Delivery.next_try_at <= bindparam("p_now")),
            ),
            # a repeat of this very claim, whose first try committed but lost its answer
            and_(Delivery.status == "sending", Delivery.claim_token == bindparam("p_claim")),
        ),
    )
    .values(
        status="sending",
        claimed_at=bindparam("p_now"),
        claim_token=bindparam("p_claim"),
        attempts=case(
            (Delivery.status == "queued", Delivery.attempts + 1), else_=Delivery.attempts
        ),
    )
    .returning(Delivery.id)
)
MARK_SENT = (
    update(Delivery.__table__)
    .where(
        Delivery.id == bindparam("p_id"),
        Delivery.status == "sending",
        Delivery.claim_token == bindparam("p_claim"),
    )
    .values(
        status="sent",
        sent_at=bindparam("p_now"),
        message_id=bindparam("p_message_id"),
        last_error=None,  # done: earlier trouble is history (a possible duplicate stays in `resent`)
    )
)
RENEW = (
    update(Delivery.__table__)
    .where(Delivery.claim_token == bindparam("p_claim"), Delivery.status == "sending")
    .values(claimed_at=bindparam("p_now"))
    .returning(Delivery.id)
)
RECORD_SENT_PAPERS = {
    name: dialect.insert(SentPaper.__table__).on_conflict_do_nothing(
        index_elements=["subscriber_id", "arxiv_id"]
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


# PostgreSQL: a group's sent marks, their papers and the next group's claim as one statement,
# which commits by itself. One round trip instead of five (BEGIN, three statements, COMMIT).
# The same rules as MARK_SENT, RECORD_SENT_PAPERS and CLAIM.
RECORD_AND_CLAIM = text(
    """
WITH marked AS (
    UPDATE deliveries AS d
    SET status = 'sent', sent_at = s.sent_at, message_id = s.message_id, last_error = NULL
    FROM unnest(CAST(:sent_ids AS bigint[]), CAST(:claims AS text[]),
                CAST(:sent_ats AS timestamp[]), CAST(:message_ids AS text[]))
        AS s(id, claim, sent_at, message_id)
    WHERE d.id = s.id AND d.status = 'sending' AND d.claim_token = s.claim
    RETURNING d.id
), papers AS (
    INSERT INTO sent_papers (subscriber_id, arxiv_id, delivery_id, sent_at)
    SELECT p.subscriber_id, p.arxiv_id, p.delivery_id, p.sent_at
    FROM unnest(CAST(:paper_subscribers AS bigint[]), CAST(:paper_ids AS text[]),
                CAST(:paper_deliveries AS bigint[]), CAST(:paper_sent_ats AS timestamp[]))
        AS p(subscriber_id, arxiv_id, delivery_id, sent_at)
    JOIN marked ON marked.id = p.delivery_id
    ON CONFLICT (subscriber_id, arxiv_id) DO NOTHING
), claimed AS (
    UPDATE deliveries
    SET status = 'sending', claimed_at = :now, claim_token = :claim,
        attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END
    WHERE id = ANY(CAST(:next_ids AS bigint[])) AND (
        (status = 'queued' AND (next_try_at IS NULL OR next_try_at <= :now))
        OR (status = 'sending' AND claim_token = :claim))
    RETURNING id
)
SELECT true, id FROM marked UNION ALL SELECT false, id FROM claimed
"""
)


# PostgreSQL, a group of one message (``DIGEST_SEND_GROUP=1``): the same as RECORD_AND_CLAIM
# with one value per parameter, run on the driver's connection (psycopg's placeholders).
# PostgreSQL plans the arrays' statement anew on every run (its cached generic plan was
# twice as dear), and SQLAlchemy's execution path costs the worker as much again as psycopg's:
# with a commit per message, those two were half of what the record cost (docs/performance.md).
RECORD_ONE_AND_CLAIM = """
WITH marked AS (
    UPDATE deliveries
    SET status = 'sent', sent_at = %(sent_at)s, message_id = %(message_id)s, last_error = NULL
    WHERE id = %(sent_id)s AND status = 'sending' AND claim_token = %(sent_claim)s
    RETURNING id, subscriber_id
), papers AS (
    INSERT INTO sent_papers (subscriber_id, arxiv_id, delivery_id, sent_at)
    SELECT marked.subscriber_id, p.arxiv_id, marked.id, %(sent_at)s
    FROM marked, unnest(CAST(%(paper_ids)s AS text[])) AS p(arxiv_id)
    ON CONFLICT (subscriber_id, arxiv_id) DO NOTHING
), claimed AS (
    UPDATE deliveries
    SET status = 'sending', claimed_at = %(now)s, claim_token = %(claim)s,
        attempts = attempts + CASE WHEN status = 'queued' THEN 1 ELSE 0 END
    WHERE id = %(next_id)s AND (
        (status = 'queued' AND (next_try_at IS NULL OR next_try_at <= %(now)s))
        OR (status = 'sending' AND claim_token = %(claim)s))
    RETURNING id
)
SELECT true, id FROM marked UNION ALL SELECT false, id FROM claimed
"""


class Deliveries:
    """The delivery rows and their state machine; records in and out::

    queued --claim--> sending --250--> sent
      ^                  |--4xx / connection--> queued (attempts+1, not before next_try_at)
      |                  |--5xx recipient-----> bounced (hard bounce counted) | failed
      +---- stale claim (worker died) is requeued after the lease, noted in last_error
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._install_id: str | None = None

    def install_id(self) -> str:
        """This database's install id, read once per process. Migration 0010 makes it when
        the database is created, so processes starting at once all sign alike; a database
        from before then may hold several, and the oldest (the one its Message-IDs used)
        serves everyone."""
        if self._install_id is None:
            with self._db.session() as session:
                self._install_id = session.scalar(
                    select(Installation.id)
                    .order_by(Installation.created_at, Installation.id)
                    .limit(1)
                )
            if self._install_id is None:
                raise StorageError("no install id: run `digest db upgrade`")
        return self._install_id

    def create(
        self, rows: NewDeliveries, handed_out_at: dt.datetime | None = None
    ) -> tuple[int, list[int]]:
        """One row per (subscriber, edition); rows that already exist are left alone.

        Returns how many rows were new, and the ids of the new queued ones. With
        ``handed_out_at`` those are written as already handed to a send task (the caller
        enqueues them at once), which spares rewriting every new row a moment later.
        ``rows`` may be made as they are read (see :class:`digest.pipeline.PlannedDeliveries`),
        and is read a second time when some of them already exist."""
        now = utcnow()
        if self._db.engine.dialect.name == "postgresql":
            with self._db.session() as session:
                created = copy_new_deliveries(session, rows, now, handed_out_at)
            return len(created), sorted(i for i, status in created if status == "queued")
        values = [
            {
                "subscriber_id": r.subscriber_id,
                "edition": r.edition,
                "picks": r.picks,
                "quiet_topics": list(r.quiet_topics),
                "status": r.status,
                "enqueued_at": handed_out_at if r.status == "queued" else None,
            }
            for r in rows
        ]
        with self._db.session() as session:
            keys = ["subscriber_id", "edition"]
            created = insert_ignoring_duplicates(session, Delivery, values, keys, ("id", "status"))
        return len(created), sorted(i for i, status in created if status == "queued")

    def take_to_send(
        self, now: dt.datetime, enqueue_lease: dt.timedelta, edition: dt.date | None = None
    ) -> list[int]:
        """Queued deliveries that are due and not already in a send task's hands; marks them
        handed out, in one statement. A task lost with its queue (Redis restart) is handed out
        again after the lease. Ids come back in order, so batches follow the plan."""
        conditions = [
            Delivery.status == "queued",
            or_(Delivery.next_try_at.is_(None), Delivery.next_try_at <= now),
            or_(Delivery.enqueued_at.is_(None), Delivery.enqueued_at <= now - enqueue_lease),
        ]
        if edition is not None:
            conditions.append(Delivery.edition == edition)
        with self._db.engine.begin() as conn:
            handed_out = update(Delivery.__table__).where(*conditions).values(enqueued_at=now)
            return sorted(conn.execute(handed_out.returning(Delivery.id)).scalars())

    def claim(self, ids: Sequence[int], now: dt.datetime) -> tuple[str, set[int]]:
        """Atomically take the queued, due deliveries among ``ids``, in one statement.

        Returns the claim's token and the ids taken; the others are done or in another
        worker's hands. Every later write of this attempt must show the token, so a worker
        that stalled past its lease and lost a delivery to another cannot record over it.
        """
        claim = secrets.token_hex(8)
        with self._db.engine.begin() as conn:
            return claim, self._take(conn, ids, claim, now)

    def mark_sent_and_claim(
        self, sent: Sequence[SentRecord], ids: Sequence[int], claim: str, now: dt.datetime
    ) -> tuple[set[int], set[int]]:
        """:meth:`mark_sent` for one group and :meth:`claim` (under the caller's token
        ``claim``) for the next, in one transaction: with groups of one message, one commit
        per message instead of two. Returns (ids recorded as sent, ids taken). Safe to
        repeat: a try whose commit succeeded but whose answer was lost is found again."""
        if self._db.engine.dialect.name == "postgresql":
            return self._record_and_claim_at_once(sent, ids, claim, now)
        with self._db.engine.begin() as conn:
            return self._record_sent(conn, sent), self._take(conn, ids, claim, now)

    def _record_and_claim_at_once(
        self, sent: Sequence[SentRecord], ids: Sequence[int], claim: str, now: dt.datetime
    ) -> tuple[set[int], set[int]]:
        """:meth:`mark_sent_and_claim` on PostgreSQL: one statement on its own (autocommit:
        the statement is its transaction), on the records engine (no ping for a connection
        used a moment ago; the caller retries any failure). :data:`RECORD_ONE_AND_CLAIM` for
        a message and the next, else :data:`RECORD_AND_CLAIM`. A mark that found its row not
        in this claim's hands is looked into as :meth:`mark_sent` does."""
        with self._db.records.connect() as conn:
            if len(sent) <= 1 and len(ids) <= 1:
                rows = _record_one_and_claim(conn, sent, ids, claim, now)
            else:
                values = _record_and_claim_values(sent, ids, claim, now)
                rows = [(bool(r[0]), int(r[1])) for r in conn.execute(RECORD_AND_CLAIM, values)]
            marked = {delivery for was_sent, delivery in rows if was_sent}
            ours = marked | {
                s.delivery_id
                for s in sent
                if s.delivery_id not in marked
                and not self._claim_lost(conn, s.delivery_id, s.claim, "sent")
            }
            return ours, {delivery for was_sent, delivery in rows if not was_sent}

    @staticmethod
    def _take(conn: Connection, ids: Sequence[int], claim: str, now: dt.datetime) -> set[int]:
        if not ids:
            return set()
        taken = conn.execute(CLAIM, {"p_ids": list(ids), "p_now": now, "p_claim": claim})
        return {row[0] for row in taken}

    def renew(self, claim: str, now: dt.datetime) -> set[int]:
        """Extend ``claim``'s lease from ``now``; the ids it still holds. Renewing proves
        ownership: a delivery requeued after its lease (its claim gone) is not among them."""
        with self._db.engine.begin() as conn:
            return set(conn.execute(RENEW, {"p_claim": claim, "p_now": now}).scalars())

    @staticmethod
    def _claim_lost(conn: Connection, delivery_id: int, claim: str, then: str) -> bool:
        """After a write of ``claim`` changed nothing: True if the delivery is already where
        that write would have put it under the same claim (an earlier try committed, and
        only its answer was lost); else the claim passed to another worker, and is logged."""
        row = conn.execute(
            select(Delivery.status, Delivery.claim_token).where(Delivery.id == delivery_id)
        ).first()
        if row is not None and tuple(row) == (then, claim):
            return False
        log.warning(
            "delivery %d: this worker's claim was lost (now %s); another worker has it",
            delivery_id,
            row[0] if row else "deleted",
        )
        return True

    def load(self, ids: Sequence[int]) -> list[tuple[DeliveryRecord, SubscriberRecord]]:
        with self._db.session() as session:
            found = []
            for chunk in chunks(list(ids)):
                deliveries = session.scalars(
                    select(Delivery).where(Delivery.id.in_(chunk)).order_by(Delivery.id)
                ).all()
                planned = planned_picks(session, deliveries)
                for delivery in deliveries:
                    sub = subscriber_record(delivery.subscriber)
                    found.append((delivery_record(delivery, sub.email, planned), sub))
            return found

    def mark_sent(self, sent: Sequence[SentRecord]) -> set[int]:
        """Record, in one transaction, the server's acceptance of each message, and the papers
        each person has now been sent. Returns the ids recorded as this worker's: a delivery
        whose claim passed to another worker is left alone (and logged); one that an earlier
        try of this very write already committed counts as recorded."""
        if not sent:
            return set()
        with self._db.engine.begin() as conn:
            return self._record_sent(conn, sent)

    def _record_sent(self, conn: Connection, sent: Sequence[SentRecord]) -> set[int]:
        if not sent:
            return set()
        updated = conn.execute(
            MARK_SENT,
            [
                {
                    "p_id": s.delivery_id,
                    "p_claim": s.claim,
                    "p_now": s.sent_at,
                    "p_message_id": s.message_id,
                }
                for s in sent
            ],
        ).rowcount
        ours = {s.delivery_id for s in sent}
        if updated != len(sent):
            ours = {
                s.delivery_id
                for s in sent
                if not self._claim_lost(conn, s.delivery_id, s.claim, "sent")
            }
        papers = [
            {
                "subscriber_id": s.subscriber_id,
                "arxiv_id": pid,
                "delivery_id": s.delivery_id,
                "sent_at": s.sent_at,
            }
            for s in sent
            if s.delivery_id in ours
            for pid in dict.fromkeys(s.paper_ids)
        ]
        if papers:
            conn.execute(RECORD_SENT_PAPERS[conn.dialect.name], papers)
        return ours

    def skip(self, delivery_id: int, reason: str) -> bool:
        """A queued digest that must not go out (the subscriber paused or left since it was
        planned): closed as 'skipped' so no later tick hands it out again."""
        with self._db.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status == "queued")
                .values(status="skipped", last_error=reason)
            )
            return changed_rows(result) == 1

    def mark_retry(
        self,
        delivery_id: int,
        claim: str,
        error: str,
        next_try_at: dt.datetime,
        possible_duplicate: bool = False,
    ) -> bool:
        """Back to the queue, not before ``next_try_at``; False if the claim was lost. A
        ``possible_duplicate`` (the server may have kept it) is flagged ``resent`` for good."""
        flag = {"resent": True} if possible_duplicate else {}
        with self._db.engine.begin() as conn:
            requeued = conn.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.status == "sending",
                    Delivery.claim_token == claim,
                )
                .values(
                    status="queued",
                    last_error=error[:2000],
                    next_try_at=next_try_at,
                    enqueued_at=None,
                    **flag,
                )
            ).rowcount
            return bool(requeued) or not self._claim_lost(conn, delivery_id, claim, "queued")

    def mark_failed(
        self, delivery_id: int, claim: str, error: str, hard_bounce: bool, bounce_limit: int
    ) -> bool:
        """A final failure. A hard bounce counts against the address; enough of them and the
        subscriber is marked bounced, so we stop mailing a dead mailbox. False if the claim
        was lost."""
        final = "bounced" if hard_bounce else "failed"
        with self._db.session() as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is None or (delivery.status, delivery.claim_token) != ("sending", claim):
                return not self._claim_lost(session.connection(), delivery_id, claim, final)
            delivery.status = final
            delivery.last_error = error[:2000]
            if hard_bounce:
                sub = delivery.subscriber
                sub.hard_bounces += 1
                if sub.hard_bounces >= bounce_limit and sub.status == "active":
                    bounce_address(session, sub.email)
            return True

    def requeue_stale_claims(self, now: dt.datetime, lease: dt.timedelta) -> int:
        """'sending' rows whose worker died. The message may or may not have been accepted
        just before the crash: we resend (no digest is lost) and say so in last_error."""
        with self._db.session() as session:
            result = session.execute(
                update(Delivery)
                .where(Delivery.status == "sending", Delivery.claimed_at <= now - lease)
                .values(
                    status="queued",
                    enqueued_at=None,
                    next_try_at=None,
                    claim_token=None,
                    resent=True,
                    last_error="worker lost while sending; resent (a duplicate is possible)",
                )
            )
            return changed_rows(result)

    def find(
        self,
        edition: dt.date | None = None,
        status: str | None = None,
        limit: int | None = None,
        list_id: int | None = None,
    ) -> list[DeliveryRecord]:
        """Deliveries, newest edition first; ``list_id``: that list's only."""
        with self._db.session() as session:
            query = (
                select(Delivery, Subscriber.email, Subscriber.list_id)
                .join(Subscriber)
                .order_by(Delivery.edition.desc(), Delivery.id)
            )
            if edition is not None:
                query = query.where(Delivery.edition == edition)
            if status is not None:
                query = query.where(Delivery.status == status)
            if list_id is not None:
                query = query.where(Subscriber.list_id == list_id)
            if limit is not None:
                query = query.limit(limit)
            rows = session.execute(query).all()
            planned = planned_picks(session, (d for d, _, _ in rows))
            return [delivery_record(d, email, planned, lid) for d, email, lid in rows]

    def counts(
        self, edition: dt.date | None = None, status: str | None = None, list_id: int | None = None
    ) -> dict[str, int]:
        """Deliveries by status; ``list_id``: that list's only."""
        by_list = self.counts_by_list(edition, status)
        totals: dict[str, int] = {}
        for found, counts in by_list.items():
            if list_id is None or found == list_id:
                for name, count in counts.items():
                    totals[name] = totals.get(name, 0) + count
        return totals

    def counts_by_list(
        self,
        edition: dt.date | None = None,
        status: str | None = None,
        created: tuple[dt.datetime, dt.datetime] | None = None,
    ) -> dict[int, dict[str, int]]:
        """{list id: {status: deliveries}}; ``created``: only those planned in that span (a
        run's: `digest runs show`)."""
        with self._db.session() as session:
            query = (
                select(Subscriber.list_id, Delivery.status, func.count())
                .join(Subscriber)
                .group_by(Subscriber.list_id, Delivery.status)
            )
            if edition is not None:
                query = query.where(Delivery.edition == edition)
            if status is not None:
                query = query.where(Delivery.status == status)
            if created is not None:
                query = query.where(Delivery.created_at.between(*created))
            found: dict[int, dict[str, int]] = {}
            for list_id, name, count in session.execute(query).all():
                found.setdefault(list_id, {})[name] = count
            return found

    def next_retry_at(self) -> dt.datetime | None:
        """When the earliest delivery waiting for a retry is due."""
        with self._db.session() as session:
            return session.scalar(
                select(func.min(Delivery.next_try_at)).where(Delivery.status == "queued")
            )

    def retry_failed(self, edition: dt.date | None = None) -> int:
        """Put failed (not bounced) deliveries back in the queue with fresh attempts."""
        with self._db.session() as session:
            query = update(Delivery).where(Delivery.status == "failed")
            if edition is not None:
                query = query.where(Delivery.edition == edition)
            return changed_rows(
                session.execute(
                    query.values(status="queued", attempts=0, next_try_at=None, enqueued_at=None)
                )
            )


def _record_and_claim_values(
    sent: Sequence[SentRecord], ids: Sequence[int], claim: str, now: dt.datetime
) -> dict[str, object]:
    """:data:`RECORD_AND_CLAIM`'s parameters: a column of values each."""
    papers = [(s, pid) for s in sent for pid in dict.fromkeys(s.paper_ids)]
    return {
        "sent_ids": [s.delivery_id for s in sent],
        "claims": [s.claim for s in sent],
        "sent_ats": [s.sent_at for s in sent],
        "message_ids": [s.message_id for s in sent],
        "paper_subscribers": [s.subscriber_id for s, _ in papers],
        "paper_ids": [pid for _, pid in papers],
        "paper_deliveries": [s.delivery_id for s, _ in papers],
        "paper_sent_ats": [s.sent_at for s, _ in papers],
        "next_ids": list(ids),
        "now": now,
        "claim": claim,
    }


def _record_one_and_claim(
    conn: Connection,
    sent: Sequence[SentRecord],
    ids: Sequence[int],
    claim: str,
    now: dt.datetime,
) -> list[tuple[bool, int]]:
    """:data:`RECORD_ONE_AND_CLAIM` (at most one of each) on the driver's connection. A
    failure invalidates the pooled connection, as SQLAlchemy does after a lost connection on
    its own statements, so that the caller's next try (after a database restart, say) gets a
    new one."""
    one = sent[0] if sent else None
    values = {
        "sent_id": one.delivery_id if one else None,
        "sent_claim": one.claim if one else None,
        "sent_at": one.sent_at if one else None,
        "message_id": one.message_id if one else None,
        "paper_ids": list(dict.fromkeys(one.paper_ids)) if one else [],
        "next_id": ids[0] if ids else None,
        "now": now,
        "claim": claim,
    }
    driver = conn.connection.driver_connection
    assert driver is not None  # a connection checked out of the pool is open
    try:
        rows: list[tuple[bool, int]] = driver.execute(RECORD_ONE_AND_CLAIM, values).fetchall()
    except Exception:
        conn.invalidate()
        raise
    return rows


def bounce_address(session: Session, email: str) -> None:
    """A mailbox that refuses our mail for good: every list's subscription of it is marked
    bounced (one list's unsubscribe stays that list's; a dead mailbox is dead for all)."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.email == email, Subscriber.status.notin_(OPTED_OUT))
        .values(status="bounced", unsubscribed_at=utcnow())
    )
