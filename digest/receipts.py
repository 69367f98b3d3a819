"""What a tick and a send batch leave on their run's receipt: the shells' reports turned
into the plain run records of :mod:`digest.runs`, for :class:`digest.storage.Runs`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from digest.delivery import BatchReport
from digest.ingestion import SAMPLE_LABEL, SourceReport
from digest.runs import SourceRun

ONE_LINE = 300  # characters of an error kept on a receipt


class RunOutcomes(Protocol):
    """Where a finished batch adds its outcomes (:class:`digest.storage.Runs`)."""

    def add_outcomes(self, run_id: int, outcomes: dict[str, int]) -> str | None: ...


def one_line(error: BaseException | str) -> str:
    """An error as one short line: receipts, `digest runs` and alerts show it whole."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:ONE_LINE]


def source_runs(reports: Sequence[SourceReport]) -> list[SourceRun]:
    """The live sources a tick fetched (the bundled sample is no source to watch)."""
    return [
        SourceRun(
            r.source,
            r.url,
            one_line(r.error) if r.error else None,
            r.fetched,
            r.new,
            r.http_status,
            round(r.seconds, 3),
        )
        for r in reports
        if not r.source.startswith(SAMPLE_LABEL)
    ]


def record_batch(runs: RunOutcomes, run_id: int | None, report: BatchReport) -> None:
    """Add a finished batch's outcomes to the run that handed it out."""
    if run_id is None:  # a batch enqueued before runs were recorded
        return
    runs.add_outcomes(
        run_id,
        {
            "sent": report.sent,
            "retrying": report.retried,
            "failed": report.failed,
            "bounced": report.bounced,
            "skipped_paused": report.inactive,
            "skipped_already_sent": report.skipped - report.inactive,
        },
    )
