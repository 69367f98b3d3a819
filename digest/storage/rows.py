"""ORM rows to the plain records of :mod:`digest.records`, shared by the concepts whose
queries return them (a delivery's record is read by deliveries, the archive and feedback)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from digest.models import Delivery, Paper, PlannedPick, Subscriber, SubscriberTopic, Topic
from digest.records import DeliveryRecord, SubscriberRecord
from digest.sources import MERGED_FIELDS, PaperRecord
from digest.storage.database import chunks


def subscriber_record(sub: Subscriber) -> SubscriberRecord:
    return SubscriberRecord(
        id=sub.id,
        email=sub.email,
        status=sub.status,
        topics=tuple(sub.topics),
        timezone=sub.timezone,
        send_hour=sub.send_hour,
        max_papers=sub.max_papers,
        created_at=sub.created_at,
        confirmed_at=sub.confirmed_at,
        show_trending=sub.show_trending,
        list_id=sub.list_id,
        cadence=sub.cadence,
    )


RECORD_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.status,
    Subscriber.timezone,
    Subscriber.send_hour,
    Subscriber.max_papers,
    Subscriber.created_at,
    Subscriber.confirmed_at,
    Subscriber.show_trending,
    Subscriber.list_id,
    Subscriber.cadence,
)


def subscriber_records(session: Session, condition: ColumnElement[bool]) -> list[SubscriberRecord]:
    """The subscribers matching ``condition`` as records, in two plain queries (their rows,
    then all their topics): the daily run reads a million of them, and building ORM
    objects with their topic links cost most of a planning tick."""
    topics: dict[int, list[str]] = {}
    conn = session.connection()
    topic_rows = conn.execute(
        select(SubscriberTopic.subscriber_id, Topic.name)
        .join(Topic)
        .join(Subscriber)
        .where(condition)
        .order_by(SubscriberTopic.position)
    )
    for subscriber_id, name in topic_rows.all():
        topics.setdefault(subscriber_id, []).append(name)
    rows = conn.execute(select(*RECORD_COLUMNS).where(condition).order_by(Subscriber.id))
    return [
        SubscriberRecord(
            sid,
            email,
            status,
            tuple(topics.get(sid, ())),
            tz,
            hour,
            size,
            created,
            confirmed,
            trend,
            list_id,
            cadence,
        )
        for sid, email, status, tz, hour, size, created, confirmed, trend, list_id, cadence in (
            rows.all()
        )
    ]


def paper_record(paper: Paper) -> PaperRecord:
    return PaperRecord(
        arxiv_id=paper.arxiv_id,
        first_seen_at=paper.first_seen_at,
        **{name: getattr(paper, name) for name in MERGED_FIELDS},
    )


Planned = dict[tuple[int, int], dict[str, Any]]  # (plan, number) -> the pick


def planned_picks(session: Session, deliveries: Iterable[Delivery]) -> Planned:
    """The PlannedPick rows that ``deliveries`` name by number, in one query per plan."""
    wanted: dict[int, set[int]] = {}
    for delivery in deliveries:
        if delivery.plan is not None:
            wanted.setdefault(delivery.plan, set()).update(delivery.picks)
    found: Planned = {}
    for plan, numbers in wanted.items():
        for chunk in chunks(sorted(numbers)):
            rows = session.execute(
                select(PlannedPick.number, PlannedPick.pick).where(
                    PlannedPick.plan == plan, PlannedPick.number.in_(chunk)
                )
            )
            found.update(((plan, number), pick) for number, pick in rows)
    return found


def picks_of(delivery: Delivery, planned: Planned) -> list[dict[str, Any]]:
    if delivery.plan is None:
        return list(delivery.picks)
    return [planned[(delivery.plan, number)] for number in delivery.picks]


def delivery_record(
    delivery: Delivery, email: str, planned: Planned, list_id: int = 0
) -> DeliveryRecord:
    return DeliveryRecord(
        id=delivery.id,
        subscriber_id=delivery.subscriber_id,
        email=email,
        edition=delivery.edition,
        status=delivery.status,
        picks=picks_of(delivery, planned),
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        message_id=delivery.message_id,
        sent_at=delivery.sent_at,
        next_try_at=delivery.next_try_at,
        resent=delivery.resent,
        quiet_topics=tuple(delivery.quiet_topics or ()),
        list_id=list_id,
    )
