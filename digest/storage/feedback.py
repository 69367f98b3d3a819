"""Reader feedback: a vote of "more like this" or "less like this" on a paper sent, what
ranking learns from each reader's newest votes, and the totals `digest feedback` shows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TypeVarTuple

from sqlalchemy import Select, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digest.models import Delivery, Paper, SentPaper, Subscriber, Vote
from digest.records import VoteRecord, Votes
from digest.storage.database import MANY_SUBSCRIBERS, Database, changed_rows, chunks
from digest.storage.rows import picks_of, planned_picks

VOTES_USED = 50  # a reader's newest votes that ranking learns from: bounded work per reader


class Feedback:
    """The readers' votes; records in and out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record_vote(self, subscriber_id: int, arxiv_id: str, value: int, now: dt.datetime) -> None:
        """Set the reader's vote on a paper (voting again replaces it). The topic the paper was
        sent for is kept beside it, for `digest feedback`."""
        if value not in (-1, 1):
            raise ValueError(f"a vote is +1 or -1, not {value!r}")
        with self._db.session() as session:
            topic = self._sent_for_topic(session, subscriber_id, arxiv_id)
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            statement = dialect.insert(Vote.__table__).values(
                subscriber_id=subscriber_id,
                arxiv_id=arxiv_id,
                value=value,
                topic=topic,
                created_at=now,
            )
            session.execute(
                statement.on_conflict_do_update(
                    index_elements=["subscriber_id", "arxiv_id"],
                    set_={"value": value, "topic": topic, "created_at": now},
                )
            )

    @staticmethod
    def _sent_for_topic(session: Session, subscriber_id: int, arxiv_id: str) -> str | None:
        delivery = session.scalar(
            select(Delivery)
            .join(SentPaper)
            .where(SentPaper.subscriber_id == subscriber_id, SentPaper.arxiv_id == arxiv_id)
        )
        if delivery is None:
            return None
        picks = picks_of(delivery, planned_picks(session, [delivery]))
        return next((p.get("topic") for p in picks if p["arxiv_id"] == arxiv_id), None)

    def remove_vote(self, subscriber_id: int, arxiv_id: str) -> bool:
        with self._db.session() as session:
            removed = session.execute(
                delete(Vote).where(Vote.subscriber_id == subscriber_id, Vote.arxiv_id == arxiv_id)
            )
            return changed_rows(removed) > 0

    def vote_of(self, subscriber_id: int, arxiv_id: str) -> int | None:
        with self._db.session() as session:
            return session.scalar(
                select(Vote.value).where(
                    Vote.subscriber_id == subscriber_id, Vote.arxiv_id == arxiv_id
                )
            )

    def votes_of(self, subscriber_id: int) -> list[VoteRecord]:
        """The reader's votes, newest first, with each paper's title."""
        with self._db.session() as session:
            rows = session.execute(
                select(Vote.arxiv_id, Vote.value, Paper.title, Vote.topic, Vote.created_at)
                .outerjoin(Paper, Paper.arxiv_id == Vote.arxiv_id)
                .where(Vote.subscriber_id == subscriber_id)
                .order_by(Vote.created_at.desc(), Vote.arxiv_id)
            )
            return [
                VoteRecord(pid, value, title or pid, topic, created)
                for pid, value, title, topic, created in rows
            ]

    def reader_votes(self, subscriber_ids: Sequence[int]) -> dict[int, Votes]:
        """For each subscriber who voted, their newest :data:`VOTES_USED` votes, oldest first.
        Many subscribers at once (the daily run): one pass over the votes; a few: theirs."""
        wanted = set(subscriber_ids)
        columns = select(Vote.subscriber_id, Vote.arxiv_id, Vote.value).order_by(
            Vote.subscriber_id, Vote.created_at, Vote.arxiv_id
        )
        said: dict[int, list[tuple[str, int]]] = {}
        with self._db.session() as session:
            if len(wanted) > MANY_SUBSCRIBERS:
                queries = [columns]
            else:
                queries = [columns.where(Vote.subscriber_id.in_(c)) for c in chunks(sorted(wanted))]
            for query in queries:
                for sid, pid, value in session.execute(query).all():
                    if sid in wanted:
                        said.setdefault(sid, []).append((pid, value))
        return {
            sid: Votes(
                tuple(pid for pid, v in votes[-VOTES_USED:] if v > 0),
                tuple(pid for pid, v in votes[-VOTES_USED:] if v < 0),
            )
            for sid, votes in said.items()
        }

    def votes_by_topic(
        self, since: dt.datetime, list_id: int | None = None
    ) -> list[tuple[str, int, int]]:
        """(topic, more like this, less like this) for the votes cast since ``since`` (on
        ``list_id``'s digests only, when given), the most voted topic first; votes on trending
        papers count under "(trending)"."""
        with self._db.session() as session:
            query = (
                select(
                    Vote.topic,
                    func.sum(case((Vote.value > 0, 1), else_=0)),
                    func.sum(case((Vote.value < 0, 1), else_=0)),
                )
                .where(Vote.created_at >= since)
                .group_by(Vote.topic)
            )
            rows = session.execute(_on_list(query, list_id)).all()
        totals = [(topic or "(trending)", int(up), int(down)) for topic, up, down in rows]
        return sorted(totals, key=lambda row: (-(row[1] + row[2]), row[0]))

    def most_liked_papers(
        self, since: dt.datetime, limit: int = 10, list_id: int | None = None
    ) -> list[tuple[str, str, int, int]]:
        """(arxiv id, title, likes, dislikes) of the papers most liked since ``since`` (on
        ``list_id``'s digests only, when given)."""
        likes = func.sum(case((Vote.value > 0, 1), else_=0))
        dislikes = func.sum(case((Vote.value < 0, 1), else_=0))
        with self._db.session() as session:
            query = (
                select(Vote.arxiv_id, Paper.title, likes, dislikes)
                .outerjoin(Paper, Paper.arxiv_id == Vote.arxiv_id)
                .where(Vote.created_at >= since)
                .group_by(Vote.arxiv_id, Paper.title)
                .having(likes > 0)
                .order_by(likes.desc(), dislikes, Vote.arxiv_id)
                .limit(limit)
            )
            rows = session.execute(_on_list(query, list_id)).all()
        return [(pid, title or pid, int(up), int(down)) for pid, title, up, down in rows]


_Columns = TypeVarTuple("_Columns")


def _on_list(query: Select[*_Columns], list_id: int | None) -> Select[*_Columns]:
    """``query`` over votes, narrowed to the votes of one list's readers when given."""
    if list_id is None:
        return query
    return query.join(Subscriber, Subscriber.id == Vote.subscriber_id).where(
        Subscriber.list_id == list_id
    )
