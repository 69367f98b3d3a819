"""Run receipts as plain data: what a tick or `digest run --now` did, how it ended, and what
an operator should hear about (#35).

Pure: records in, statuses and problems out. Storage keeps the receipts
(:mod:`digest.storage.runs`); the CLI, ``/metrics`` and the admin alert read them through
here, so "partial" or "a source keeps failing" means the same thing everywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

OK, PARTIAL, FAILED, RUNNING = "ok", "partial", "failed", "running"
RUN_STATUSES = (RUNNING, OK, PARTIAL, FAILED)
BEAT, COMMAND = "beat", "command"
# the send outcomes a finished batch adds to its run
OUTCOMES = ("sent", "retrying", "failed", "bounced", "skipped_paused", "skipped_already_sent")


@dataclass(frozen=True)
class SourceRun:
    """One source's fetch in a run: ``error`` is None when it worked (304 included)."""

    source: str
    url: str
    error: str | None = None
    seen: int = 0
    new: int = 0
    http_status: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RunCounts:
    """What a run planned and what became of it; the sends grow as its batches finish."""

    due: int = 0
    planned: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    bounced: int = 0
    skipped_nothing_new: int = 0
    skipped_paused: int = 0
    skipped_already_sent: int = 0
    held_sources_down: int = 0  # due, but nothing matched and every source was down


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: dt.datetime
    ended_at: dt.datetime | None
    trigger: str
    status: str
    counts: RunCounts
    sources: tuple[SourceRun, ...] = ()
    error: str | None = None

    @property
    def sources_ok(self) -> int:
        return sum(s.ok for s in self.sources)

    @property
    def sources_failed(self) -> int:
        return len(self.sources) - self.sources_ok

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None

    def as_json(self) -> dict[str, Any]:
        """Every field, for `digest runs --format json`."""
        return {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "seconds": self.seconds,
            "trigger": self.trigger,
            "status": self.status,
            "error": self.error,
            **asdict(self.counts),
            "sources": [{**asdict(s), "ok": s.ok} for s in self.sources],
        }


def all_sources_down(sources: tuple[SourceRun, ...] | list[SourceRun]) -> bool:
    """Every source fetched in the run failed: today's papers are unknown, not absent."""
    return bool(sources) and not any(s.ok for s in sources)


def run_status(
    counts: RunCounts, sources: tuple[SourceRun, ...] | list[SourceRun], error: str | None
) -> str:
    """``failed``: nothing could be sent (the tick crashed; every source was down and no
    digest went out; or every planned digest failed). ``partial``: a source or some
    deliveries failed (a retry counts until it is sent). Else ``ok``."""
    settled = counts.failed + counts.bounced
    if (
        error is not None
        or (all_sources_down(sources) and counts.planned == 0)
        or (counts.planned and not counts.sent and settled >= counts.planned)
    ):
        return FAILED
    if any(not s.ok for s in sources) or settled or counts.retrying or counts.held_sources_down:
        return PARTIAL
    return OK


@dataclass(frozen=True)
class SourceHealth:
    """A source over the kept runs: when it last worked, and how many runs in a row it has
    failed since."""

    source: str
    last_ok_at: dt.datetime | None
    failing_runs: int
    last_error: str | None = None


@dataclass(frozen=True)
class Health:
    """What `digest status --check` and the alert judge."""

    now: dt.datetime
    last_run: RunRecord | None  # the newest run that fetched or sent anything
    last_tick_at: dt.datetime | None  # the newest run of any kind
    sources: list[SourceHealth] = field(default_factory=list)
    retry_waiting: int = 0
    oldest_waiting_at: dt.datetime | None = None


@dataclass(frozen=True)
class Thresholds:
    tick_interval: dt.timedelta
    source_failing_runs: int
    retries_piling: int
    retry_age: dt.timedelta


@dataclass(frozen=True)
class Problem:
    """One thing wrong; ``key`` names it for the once-a-day alert."""

    key: str
    text: str


def problems(health: Health, limits: Thresholds) -> list[Problem]:
    """Each thing an operator must look at, one line each."""
    found: list[Problem] = []
    run = health.last_run
    if run is not None and run.status in (FAILED, PARTIAL):
        why = (
            run.error
            or "; ".join(f"{s.source}: {s.error}" for s in run.sources if not s.ok)
            or (
                f"{run.counts.failed + run.counts.bounced} failed, "
                f"{run.counts.retrying} retrying of {run.counts.planned} planned"
            )
        )
        found.append(Problem(f"run-{run.status}", f"run {run.id} {run.status}: {why}"))
    if health.last_tick_at is None or health.now - health.last_tick_at > 2 * limits.tick_interval:
        since = f"since {health.last_tick_at:%Y-%m-%d %H:%M} UTC" if health.last_tick_at else "ever"
        found.append(Problem("no-run", f"no run {since}: is celery beat running?"))
    for source in health.sources:
        if source.failing_runs >= limits.source_failing_runs:
            found.append(
                Problem(
                    f"source-{source.source}",
                    f"source {source.source} failed {source.failing_runs} runs in a row: "
                    f"{source.last_error}",
                )
            )
    old = health.oldest_waiting_at
    if health.retry_waiting >= limits.retries_piling or (
        old is not None and health.now - old > limits.retry_age
    ):
        found.append(
            Problem(
                "retries",
                f"{health.retry_waiting} deliveries wait for a retry"
                + (f", the oldest since {old:%Y-%m-%d %H:%M} UTC" if old else ""),
            )
        )
    return found
