"""Lists: the digests an install runs, each with its subscriptions.

The first list (the one an upgrade made from the settings, or the first a fresh install
has) is the default: commands and pages that name no list mean it, and it cannot be
removed, so every address typed without a list still has a home."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import DigestList, Subscriber
from digest.records import ListRecord
from digest.storage.database import Database, StorageError, changed_rows
from digest.storage.topics import drop_unused_topics

LIST_FIELDS = (
    "title",
    "description",
    "sources",
    "cadence",
    "sender",
    "suggested_topics",
    "max_papers",
    "public",
)


def list_record(row: DigestList) -> ListRecord:
    return ListRecord(
        id=row.id,
        slug=row.slug,
        title=row.title,
        description=row.description,
        sources=tuple(row.sources),
        cadence=row.cadence,
        sender=row.sender,
        suggested_topics=tuple(row.suggested_topics),
        max_papers=row.max_papers,
        public=row.public,
        created_at=row.created_at,
    )


def default_list_id(session: Session) -> int:
    """The default list's id: the oldest list's."""
    found: int | None = session.scalar(select(func.min(DigestList.id)))
    if found is None:
        raise StorageError("this install has no list: run `digest db upgrade`")
    return found


def list_id_of(session: Session, list_id: int | None) -> int:
    """``list_id``, or the default list's when None."""
    return default_list_id(session) if list_id is None else list_id


class Lists:
    """The lists, one short transaction per call; records in and out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> list[ListRecord]:
        """Every list, the default first."""
        with self._db.session() as session:
            return [list_record(r) for r in session.scalars(select(DigestList).order_by("id"))]

    def by_id(self) -> dict[int, ListRecord]:
        """Every list by its id: how planning and sending find a subscription's list."""
        return {listed.id: listed for listed in self.all()}

    def public(self) -> list[ListRecord]:
        """The lists with a sign-up page, the default first."""
        return [listed for listed in self.all() if listed.public]

    def default(self) -> ListRecord:
        with self._db.session() as session:
            row = session.get(DigestList, default_list_id(session))
            assert row is not None
            return list_record(row)

    def get(self, slug: str) -> ListRecord | None:
        with self._db.session() as session:
            row = session.scalar(select(DigestList).where(DigestList.slug == slug))
            return list_record(row) if row else None

    def get_by_id(self, list_id: int) -> ListRecord | None:
        with self._db.session() as session:
            row = session.get(DigestList, list_id)
            return list_record(row) if row else None

    def require(self, slug: str | None) -> ListRecord:
        """The list named ``slug`` (None: the default), or a StorageError naming it."""
        if slug is None:
            return self.default()
        found = self.get(slug)
        if found is None:
            known = ", ".join(listed.slug for listed in self.all())
            raise StorageError(f"no list named {slug!r} (the lists: {known}; see `digest lists`)")
        return found

    def add(self, slug: str, title: str, **fields: Any) -> ListRecord:
        """A new list; ``fields`` are :data:`LIST_FIELDS`."""
        try:
            with self._db.session() as session:
                row = DigestList(slug=slug, title=title, **_checked(fields))
                session.add(row)
                session.flush()
                return list_record(row)
        except IntegrityError:
            raise StorageError(f"a list named {slug!r} already exists") from None

    def update(self, slug: str, new_slug: str | None = None, **fields: Any) -> ListRecord:
        """Change a list's ``fields`` (:data:`LIST_FIELDS`), or its slug."""
        try:
            with self._db.session() as session:
                row = self._get(session, slug)
                for name, value in _checked(fields).items():
                    setattr(row, name, value)
                if new_slug is not None:
                    row.slug = new_slug
                session.flush()
                return list_record(row)
        except IntegrityError:
            raise StorageError(f"a list named {new_slug!r} already exists") from None

    def remove(self, slug: str) -> int:
        """Delete a list and its subscriptions (their deliveries, votes and topics cascade).
        Returns how many subscriptions went. The default list stays."""
        with self._db.session() as session:
            row = self._get(session, slug)
            if row.id == default_list_id(session):
                raise StorageError(
                    f"{slug!r} is the default list (readers added without --list join it); "
                    "it cannot be removed, but `digest lists set` can change it"
                )
            gone = changed_rows(
                session.execute(Subscriber.__table__.delete().where(Subscriber.list_id == row.id))
            )
            session.delete(row)
            session.flush()
            drop_unused_topics(session)
            return gone

    def readers(self) -> dict[int, dict[str, int]]:
        """{list id: {status: subscriptions}}, for `digest lists`."""
        with self._db.session() as session:
            rows = session.execute(
                select(Subscriber.list_id, Subscriber.status, func.count()).group_by(
                    Subscriber.list_id, Subscriber.status
                )
            )
            counts: dict[int, dict[str, int]] = {}
            for list_id, status, count in rows:
                counts.setdefault(list_id, {})[status] = count
            return counts

    @staticmethod
    def _get(session: Session, slug: str) -> DigestList:
        row = session.scalar(select(DigestList).where(DigestList.slug == slug))
        if row is None:
            raise StorageError(f"no list named {slug!r} (see `digest lists`)")
        return row


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(LIST_FIELDS)
    if unknown:
        raise TypeError(f"not a list's field: {', '.join(sorted(unknown))}")
    return {
        name: list(value) if name in ("sources", "suggested_topics") else value
        for name, value in fields.items()
    }
