"""Runs: a receipt for every tick and `digest run --now`, the send outcomes added to it as
its batches finish, the health read from them, and the admin alerts already mailed.

Reads are aggregates over indexes (``/metrics`` runs them on every scrape): the newest
runs by id, a source's runs by (source, run_id), the waiting retries by (status,
next_try_at)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from digest.models import AlertSent, Delivery, Run, RunSource, Subscriber, utcnow
from digest.runs import (
    OUTCOMES,
    RUNNING,
    Health,
    RunCounts,
    RunRecord,
    SourceHealth,
    SourceRun,
    run_status,
)
from digest.storage.database import Database, changed_rows, insert_ignoring_duplicates

COUNT_FIELDS = tuple(RunCounts.__dataclass_fields__)


class Runs:
    """The run receipts; records in and out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def start(self, trigger: str, now: dt.datetime) -> int:
        with self._db.session() as session:
            run = Run(
                started_at=now,
                trigger=trigger,
                status=RUNNING,
                worked=False,
                **dict.fromkeys(COUNT_FIELDS, 0),
            )
            session.add(run)
            session.flush()
            return run.id

    def finish(
        self,
        run_id: int,
        now: dt.datetime,
        counts: RunCounts,
        sources: Sequence[SourceRun],
        error: str | None = None,
    ) -> str:
        """Record what the tick did; returns the run's status (sends may still change it).
        Counts are added, not set: a fast worker may have added its batch's outcomes first."""
        with self._db.session() as session:
            session.add_all(
                RunSource(
                    run_id=run_id,
                    source=s.source,
                    url=s.url,
                    ok=s.ok,
                    error=s.error,
                    seen=s.seen,
                    new=s.new,
                    http_status=s.http_status,
                    seconds=s.seconds,
                )
                for s in sources
            )
            worked = bool(sources) or counts.planned > 0 or error is not None
            session.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(ended_at=now, error=error, worked=worked, **_added(asdict(counts)))
            )
            return self._settle(session, run_id)

    def add_outcomes(self, run_id: int, outcomes: Mapping[str, int]) -> str | None:
        """Add a finished batch's outcomes to its run, as increments (batches of one run
        finish in parallel on several workers); returns the run's new status, None if the
        run was pruned meanwhile."""
        unknown = set(outcomes) - set(OUTCOMES)
        if unknown:
            raise ValueError(f"not send outcomes: {sorted(unknown)}")
        with self._db.session() as session:
            changed = changed_rows(
                session.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(_added(outcomes) or {"id": Run.id})  # nothing to add: still find it
                )
            )
            return self._settle(session, run_id) if changed else None

    def _settle(self, session: Session, run_id: int) -> str:
        """The run's status from its counts, inside the transaction that changed them (the
        row is locked by that UPDATE, so concurrent batches each see the others' counts)."""
        record = self._records(session, [run_id])[0]
        if record.ended_at is None:
            return record.status
        status = run_status(record.counts, record.sources, record.error)
        session.execute(update(Run).where(Run.id == run_id).values(status=status))
        return status

    def get(self, run_id: int) -> RunRecord | None:
        with self._db.session() as session:
            found = self._records(session, [run_id])
            return found[0] if found else None

    def newest(self, limit: int = 20, worked: bool = False) -> list[RunRecord]:
        """The newest runs first; ``worked``: only those that fetched or planned anything."""
        with self._db.session() as session:
            query = select(Run.id).order_by(Run.id.desc()).limit(limit)
            if worked:
                query = query.where(Run.worked.is_(True))
            return self._records(session, list(session.scalars(query)))

    @staticmethod
    def _records(session: Session, ids: list[int]) -> list[RunRecord]:
        if not ids:
            return []
        sources: dict[int, list[SourceRun]] = {}
        for row in session.scalars(
            select(RunSource).where(RunSource.run_id.in_(ids)).order_by(RunSource.source)
        ):
            sources.setdefault(row.run_id, []).append(
                SourceRun(
                    row.source, row.url, row.error, row.seen, row.new, row.http_status, row.seconds
                )
            )
        runs = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)))}
        return [
            RunRecord(
                r.id,
                r.started_at,
                r.ended_at,
                r.trigger,
                r.status,
                RunCounts(**{name: getattr(r, name) for name in COUNT_FIELDS}),
                tuple(sources.get(r.id, ())),
                r.error,
            )
            for r in (runs[i] for i in ids if i in runs)
        ]

    def health(self, now: dt.datetime) -> Health:
        """The last working run, the last tick, each source's streak, the waiting retries."""
        with self._db.session() as session:
            last_tick = session.scalar(select(func.max(Run.started_at)))
            waiting = (Delivery.status == "queued", Delivery.next_try_at.is_not(None))
            retry_waiting, oldest = session.execute(
                select(func.count(), func.min(Delivery.next_try_at)).where(*waiting)
            ).one()
        last = self.newest(1, worked=True)
        return Health(
            now,
            last[0] if last else None,
            last_tick,
            self.sources(),
            retry_waiting,
            oldest,
        )

    def sources(self) -> list[SourceHealth]:
        """Per source: its last success and the failed runs since (index (source, run_id))."""
        with self._db.session() as session:
            names = list(session.scalars(select(RunSource.source).distinct()))
            found = []
            for name in sorted(names):
                ours = RunSource.source == name
                last_ok = session.scalar(
                    select(func.max(RunSource.run_id)).where(ours, RunSource.ok.is_(True))
                )
                since = (ours, RunSource.run_id > last_ok) if last_ok else (ours,)
                failing = session.scalar(select(func.count()).where(*since))
                last_error = session.scalar(
                    select(RunSource.error).where(ours).order_by(RunSource.run_id.desc()).limit(1)
                )
                ok_at = (
                    session.scalar(select(Run.started_at).where(Run.id == last_ok))
                    if last_ok
                    else None
                )
                found.append(SourceHealth(name, ok_at, failing or 0, last_error))
            return found

    def subscriber_counts(self) -> dict[str, int]:
        with self._db.session() as session:
            rows = session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            )
            return dict(rows.all())

    def waiting_deliveries(self) -> dict[str, int]:
        """Deliveries not finished yet, by state: what the queue holds now (index (status,
        next_try_at): only the unfinished rows are read, never the sent history)."""
        with self._db.session() as session:
            rows = session.execute(
                select(Delivery.status, Delivery.next_try_at.is_not(None), func.count())
                .where(Delivery.status.in_(("queued", "sending")))
                .group_by(Delivery.status, Delivery.next_try_at.is_not(None))
            ).all()
        found = {"queued": 0, "retrying": 0, "sending": 0}
        for status, retry, n in rows:
            found["retrying" if status == "queued" and retry else status] += n
        return found

    def outcome_totals(self) -> dict[str, int]:
        """Every kept run's send outcomes summed: deliveries by how they ended."""
        with self._db.session() as session:
            sums = session.execute(
                select(*(func.coalesce(func.sum(getattr(Run, k)), 0) for k in OUTCOMES))
            ).one()
        return dict(zip(OUTCOMES, (int(n) for n in sums), strict=True))

    def prune(self, before: dt.datetime) -> int:
        """Forget runs (and alerts) older than ``before``: DIGEST_RUN_HISTORY_DAYS."""
        with self._db.session() as session:
            old = select(Run.id).where(Run.started_at < before).scalar_subquery()
            session.execute(delete(RunSource).where(RunSource.run_id.in_(old)))
            session.execute(delete(AlertSent).where(AlertSent.day < before.date()))
            return changed_rows(session.execute(delete(Run).where(Run.started_at < before)))

    def claim_alert(self, problem: str, day: dt.date) -> bool:
        """True the first time ``problem`` is claimed on ``day``: that caller mails it."""
        with self._db.session() as session:
            row = {"problem": problem, "day": day, "sent_at": utcnow()}
            return bool(insert_ignoring_duplicates(session, AlertSent, [row], ["problem", "day"]))

    def forget_alert(self, problem: str, day: dt.date) -> None:
        """The mail could not be sent: let the next tick try again."""
        with self._db.session() as session:
            session.execute(
                delete(AlertSent).where(AlertSent.problem == problem, AlertSent.day == day)
            )

    def day_summaries(self, days: Sequence[dt.date]) -> dict[dt.date, bool]:
        """For each day, whether a working run that day had every source down or failed:
        the archive then says "we had a problem", not "nothing new"."""
        if not days:
            return {}
        with self._db.session() as session:
            start = dt.datetime.combine(min(days), dt.time())
            end = dt.datetime.combine(max(days), dt.time()) + dt.timedelta(days=1)
            ids = list(
                session.scalars(
                    select(Run.id).where(
                        Run.worked.is_(True), Run.started_at >= start, Run.started_at < end
                    )
                )
            )
            records = self._records(session, ids)
        troubled: dict[dt.date, bool] = dict.fromkeys(days, False)
        for record in records:
            day = record.started_at.date()
            if day in troubled and (record.status == "failed" or record.counts.held_sources_down):
                troubled[day] = True
        return troubled


def _added(counts: Mapping[str, int]) -> dict[str, Any]:
    """SET count = count + n for each nonzero count: increments commute across workers."""
    return {name: getattr(Run, name) + n for name, n in counts.items() if n}
