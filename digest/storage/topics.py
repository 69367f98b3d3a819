"""Topics: the names subscribers follow, shared between them, and their ranking by followers.

A topic row lives while someone follows it. The session-level helpers here are what the
subscriber writes (:mod:`.subscribers`) call inside their own transactions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from digest.models import Subscriber, SubscriberTopic, Topic
from digest.storage.database import Database, StorageError, chunks, insert_ignoring_duplicates


def _topic_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Ids for the given topic names, creating the missing ones in bulk."""
    wanted = sorted(set(names))
    ids: dict[str, int] = {}
    for chunk in chunks(wanted):
        ids.update(session.execute(select(Topic.name, Topic.id).where(Topic.name.in_(chunk))).all())
    missing = [name for name in wanted if name not in ids]
    # another sign-up or import may create the same new topic at this moment
    ids.update(
        insert_ignoring_duplicates(
            session, Topic, [{"name": n} for n in missing], ["name"], ("name", "id")
        )
    )
    for chunk in chunks([name for name in missing if name not in ids]):
        ids.update(session.execute(select(Topic.name, Topic.id).where(Topic.name.in_(chunk))).all())
    return ids


def set_topics(session: Session, subscriber_ids_topics: dict[int, Sequence[str]]) -> None:
    """Give each subscriber named exactly these topics, in this order; topics no one follows
    any more are dropped."""
    ids = _topic_ids(session, (t for ts in subscriber_ids_topics.values() for t in ts))
    for chunk in chunks(list(subscriber_ids_topics)):
        session.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id.in_(chunk)))
    links = [
        {"subscriber_id": sid, "topic_id": ids[name], "position": pos}
        for sid, names in subscriber_ids_topics.items()
        for pos, name in enumerate(names)
    ]
    for batch in chunks(links):
        session.execute(insert(SubscriberTopic), list(batch))
    drop_unused_topics(session)


def drop_unused_topics(session: Session) -> None:
    used = select(SubscriberTopic.topic_id).distinct()
    session.execute(delete(Topic).where(Topic.id.not_in(used)))


class Topics:
    """The topics as a whole: how many follow each, and renaming one for everyone."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def counts(self, list_id: int | None = None) -> list[tuple[str, int]]:
        """Topics with how many active subscribers follow them, most followed first; with
        ``list_id``, the readers of that list only (what its sign-up page suggests)."""
        with self._db.session() as session:
            count = func.count()
            query = (
                select(Topic.name, count)
                .join(SubscriberTopic)
                .join(Subscriber)
                .where(Subscriber.status == "active")
                .group_by(Topic.name)
                .order_by(count.desc(), Topic.name)
            )
            if list_id is not None:
                query = query.where(Subscriber.list_id == list_id)
            return [(name, n) for name, n in session.execute(query)]

    def rename(self, old: str, new: str) -> int:
        """Rename ``old`` to ``new`` for everyone; merges when ``new`` already exists.

        Returns the number of subscribers affected.
        """
        with self._db.session() as session:
            old_topic = session.scalar(select(Topic).where(Topic.name == old))
            if old_topic is None:
                raise StorageError(f"no subscriber follows the topic {old!r}")
            new_topic = session.scalar(select(Topic).where(Topic.name == new))
            if new_topic is None:
                old_topic.name = new
                return session.execute(
                    select(func.count()).where(SubscriberTopic.topic_id == old_topic.id)
                ).scalar_one()
            holders = set(
                session.scalars(
                    select(SubscriberTopic.subscriber_id).where(
                        SubscriberTopic.topic_id == new_topic.id
                    )
                )
            )
            links = session.scalars(
                select(SubscriberTopic).where(SubscriberTopic.topic_id == old_topic.id)
            ).all()
            for link in links:
                if link.subscriber_id in holders:
                    session.delete(link)
                else:
                    link.topic_id = new_topic.id
            session.flush()
            session.delete(old_topic)
            return len(links)
