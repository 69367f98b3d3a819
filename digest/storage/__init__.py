"""The only package that talks to the database, a module per concept.

Each concept is a small class over one :class:`Database`: :class:`Subscribers`,
:class:`Lists`, :class:`Topics`, :class:`Papers`, :class:`Deliveries`, :class:`Feedback`, :class:`Archive`, :class:`Runs`.
Callers get plain records (dataclasses) back, never live ORM objects, so the CLI, the web
app and the Celery tasks cannot trip over detached sessions or lazy loads; every public
method is one short transaction. Code that needs one concept takes that concept (or a
``Protocol`` of the few methods it calls, declared beside it); the shells hold a
:class:`Storage`, which only builds them all over one database.
"""

from __future__ import annotations

from dataclasses import dataclass

from digest.storage.archive import Archive
from digest.storage.database import Database, StorageError, make_engine
from digest.storage.deliveries import Deliveries
from digest.storage.feedback import Feedback
from digest.storage.lists import Lists
from digest.storage.papers import Papers
from digest.storage.runs import Runs
from digest.storage.subscribers import Subscribers
from digest.storage.topics import Topics

__all__ = [
    "Archive",
    "Database",
    "Deliveries",
    "Feedback",
    "Lists",
    "Papers",
    "Runs",
    "Storage",
    "StorageError",
    "Subscribers",
    "Topics",
    "make_engine",
]


@dataclass(frozen=True)
class Storage:
    """Every concept over one database, for the shells (CLI, web app, workers, doctor)."""

    db: Database
    lists: Lists
    subscribers: Subscribers
    topics: Topics
    papers: Papers
    deliveries: Deliveries
    feedback: Feedback
    archive: Archive
    runs: Runs

    @classmethod
    def over(cls, db: Database) -> Storage:
        return cls(
            db,
            Lists(db),
            Subscribers(db),
            Topics(db),
            Papers(db),
            Deliveries(db),
            Feedback(db),
            Archive(db),
            Runs(db),
        )

    @classmethod
    def from_url(
        cls, url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
    ) -> Storage:
        return cls.over(Database.from_url(url, connect_timeout, statement_timeout))

    @classmethod
    def open(
        cls, url: str, connect_timeout: float = 5.0, statement_timeout: float | None = None
    ) -> Storage:
        """Storage ready for work (see :meth:`Database.open`)."""
        return cls.over(Database.open(url, connect_timeout, statement_timeout))

    def dispose(self) -> None:
        self.db.dispose()
