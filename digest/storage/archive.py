"""The archive: the digests each subscriber was sent, as sent, and which papers they have
already had (so a paper is never sent to someone twice)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select

from digest.models import Delivery, SentPaper, Subscriber
from digest.records import DeliveryRecord
from digest.storage.database import MANY_SUBSCRIBERS, Database, chunks
from digest.storage.rows import delivery_record, planned_picks

ARCHIVE_EDITIONS = 60  # past digests listed on the preferences page and in the feed


class Archive:
    """What was sent to whom; records out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def sent_digests(
        self, subscriber_id: int, limit: int = ARCHIVE_EDITIONS
    ) -> list[DeliveryRecord]:
        """The digests sent to a subscriber, newest first."""
        with self._db.session() as session:
            rows = session.execute(
                select(Delivery, Subscriber.email)
                .join(Subscriber)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.status == "sent")
                .order_by(Delivery.edition.desc())
                .limit(limit)
            ).all()
            planned = planned_picks(session, (d for d, _ in rows))
            return [delivery_record(d, email, planned) for d, email in rows]

    def sent_digest(self, subscriber_id: int, edition: dt.date) -> DeliveryRecord | None:
        """The digest of ``edition`` as sent to the subscriber; None if none was sent."""
        with self._db.session() as session:
            row = session.execute(
                select(Delivery, Subscriber.email)
                .join(Subscriber)
                .where(
                    Delivery.subscriber_id == subscriber_id,
                    Delivery.edition == edition,
                    Delivery.status == "sent",
                )
            ).first()
            return delivery_record(*row, planned_picks(session, [row[0]])) if row else None

    def sent_paper_ids(
        self, subscriber_ids: Sequence[int], among: Sequence[str]
    ) -> dict[int, set[str]]:
        """For each subscriber, which of the papers ``among`` (today's candidates) they have
        already been sent. Only candidates matter, and a subscriber's whole history grows by
        a digest a day, so it is never read. Many subscribers at once (the daily run): one
        pass over the candidates' rows; a few (a preview): their own rows."""
        sent: dict[int, set[str]] = {sid: set() for sid in subscriber_ids}
        if not among or not subscriber_ids:
            return sent
        columns = select(SentPaper.subscriber_id, SentPaper.arxiv_id)
        with self._db.engine.connect() as session:
            if len(sent) > MANY_SUBSCRIBERS:
                for arxiv_ids in chunks(sorted(set(among))):
                    for sid, arxiv_id in session.execute(
                        columns.where(SentPaper.arxiv_id.in_(arxiv_ids))
                    ).all():
                        if sid in sent:
                            sent[sid].add(arxiv_id)
                return sent
            for chunk in chunks(list(sent)):
                rows = session.execute(
                    columns.where(SentPaper.subscriber_id.in_(chunk), SentPaper.arxiv_id.in_(among))
                )
                for sid, arxiv_id in rows:
                    sent[sid].add(arxiv_id)
        return sent
