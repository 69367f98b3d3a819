"""Papers: the merged facts of every paper seen, their text vectors, and the feeds' HTTP
validators (what was fetched when, for conditional GETs).

Storing a paper merges what each source says (:func:`digest.sources.merge_paper`), so
fetching twice, or from two sources, changes nothing the second time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from digest.models import HttpCache, Paper, TextVector, utcnow
from digest.records import ChangeReport
from digest.sources import MERGED_FIELDS, PaperRecord, merge_paper
from digest.storage.database import Database, changed_rows, chunks, insert_ignoring_duplicates
from digest.storage.rows import paper_record

EPOCH = dt.datetime(1970, 1, 1)  # first seen "long ago": a paper looked up, not announced


class Papers:
    """The papers, their vectors and the sources' validators; records in and out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upsert(self, records: Sequence[PaperRecord], as_news: bool = True) -> ChangeReport:
        """Insert new papers and merge new facts into known ones; re-running changes nothing.
        ``as_news`` off (a paper looked up by id): a new paper counts as first seen when it was
        published, so an old one never becomes a candidate of today's digests."""
        merged: dict[str, dict[str, object]] = {}
        with self._db.session() as session:
            existing = self._papers_by_id(session, list(dict.fromkeys(r.arxiv_id for r in records)))
            for record in records:
                base = merged.get(record.arxiv_id) or existing.get(record.arxiv_id)
                merged[record.arxiv_id] = merge_paper(base, record)
            now = utcnow()
            new_rows = [
                {
                    "arxiv_id": pid,
                    **values,
                    "first_seen_at": now if as_news else values.get("published_at") or EPOCH,
                }
                for pid, values in merged.items()
                if pid not in existing
            ]
            # Another run may store the same new papers at this moment (a cron `run --now`
            # beside the beat tick): the database's own upsert lets both finish, and papers
            # the other run stored first count as already given.
            created = len(insert_ignoring_duplicates(session, Paper, new_rows, ["arxiv_id"]))
            report = ChangeReport(created=created, unchanged=len(new_rows) - created)
            for pid, values in merged.items():
                if pid not in existing:
                    continue
                if values == existing[pid]:
                    report.unchanged += 1
                    continue
                session.execute(update(Paper).where(Paper.arxiv_id == pid).values(**values))
                report.updated += 1
        return report

    @staticmethod
    def _papers_by_id(session: Session, ids: Sequence[str]) -> dict[str, dict[str, object]]:
        found: dict[str, dict[str, object]] = {}
        columns = [getattr(Paper, name) for name in MERGED_FIELDS]
        for chunk in chunks(list(ids)):
            for row in session.execute(
                select(Paper.arxiv_id, *columns).where(Paper.arxiv_id.in_(chunk))
            ):
                found[row[0]] = dict(zip(MERGED_FIELDS, row[1:], strict=True))
        return found

    def find(
        self,
        since: dt.datetime | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[PaperRecord]:
        """Stored papers, newest first seen first; ``since`` filters on first_seen_at, ``ids``
        keeps those papers (looked up :data:`CHUNK` at a time, in no particular order)."""
        query = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.arxiv_id)
        if since is not None:
            query = query.where(Paper.first_seen_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self._db.session() as session:
            if ids is None:
                return [paper_record(paper) for paper in session.scalars(query)]
            return [
                paper_record(paper)
                for chunk in chunks(sorted(set(ids)))
                for paper in session.scalars(query.where(Paper.arxiv_id.in_(chunk)))
            ]

    def count(self) -> int:
        with self._db.session() as session:
            return session.scalar(select(func.count()).select_from(Paper)) or 0

    # -- sentence embeddings, computed once per text ---------------------------------------

    def load_vectors(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self._db.session() as session:
            for chunk in chunks(list(dict.fromkeys(keys))):
                rows = session.execute(
                    select(TextVector.key, TextVector.vector).where(TextVector.key.in_(chunk))
                )
                found.update((key, bytes(vector)) for key, vector in rows)
        return found

    def save_vectors(self, vectors: dict[str, bytes]) -> None:
        """Keeps the first vector stored for a key: two workers computing one text agree anyway."""
        with self._db.session() as session:
            insert_ignoring_duplicates(
                session,
                TextVector,
                [{"key": key, "vector": vector} for key, vector in vectors.items()],
                ["key"],
            )

    def prune_vectors(self, older_than: dt.datetime) -> int:
        """Drops old vectors (papers long gone); a topic still in use is simply embedded again."""
        with self._db.session() as session:
            return changed_rows(
                session.execute(delete(TextVector).where(TextVector.created_at < older_than))
            )

    # -- conditional GET validators -------------------------------------------------------

    def http_validators(self, url: str) -> tuple[str | None, str | None]:
        with self._db.session() as session:
            row = session.get(HttpCache, url)
            return (row.etag, row.last_modified) if row else (None, None)

    def last_fetched_at(self) -> dt.datetime | None:
        with self._db.session() as session:
            return session.scalar(select(func.max(HttpCache.fetched_at)))

    def last_stored_at(self) -> dt.datetime | None:
        """When a fetch of any kind (live, a file, the bundled sample) last stored a new
        paper; a looked-up paper counts from its publication, so it seldom moves this."""
        with self._db.session() as session:
            return session.scalar(select(func.max(Paper.first_seen_at)))

    def save_http_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        with self._db.session() as session:
            row = session.get(HttpCache, url) or HttpCache(url=url)
            row.etag, row.last_modified, row.fetched_at = etag, last_modified, utcnow()
            session.add(row)
