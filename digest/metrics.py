"""`/metrics`: the service's health in the Prometheus text format, read from the database
at scrape time, so it is right whichever process (a worker, `run --now`) did the work.

A custom :class:`prometheus_client.registry.Collector` over :class:`digest.storage.Runs`:
each scrape runs a handful of aggregate queries on indexes (the newest working run, each
source's streak, the unfinished deliveries, the kept runs' sums), never a pass over the
deliveries' history (bench/bench_metrics.py). Off with DIGEST_METRICS=false; with
DIGEST_METRICS_TOKEN set, a scrape must send ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from digest.models import utcnow
from digest.runs import RUN_STATUSES, RunRecord
from digest.storage import Runs

metrics = Blueprint("metrics", __name__)


def _seconds(when: dt.datetime | None) -> float:
    """A naive-UTC time as Unix seconds (0: never)."""
    return when.replace(tzinfo=dt.UTC).timestamp() if when else 0.0


class RunsCollector(Collector):
    """Every metric, from the database, at each scrape."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        health = self.runs.health(utcnow())
        yield from self._last_run(health.last_run)
        last_ok = GaugeMetricFamily(
            "digest_source_last_success_timestamp_seconds",
            "When each source last fetched without error (0: never, within the kept runs).",
            labels=["source"],
        )
        failing = GaugeMetricFamily(
            "digest_source_consecutive_failures",
            "Runs in a row in which each source failed.",
            labels=["source"],
        )
        for source in health.sources:
            last_ok.add_metric([source.source], _seconds(source.last_ok_at))
            failing.add_metric([source.source], source.failing_runs)
        yield last_ok
        yield failing
        waiting = GaugeMetricFamily(
            "digest_deliveries_waiting",
            "Deliveries not finished yet: queued, waiting for a retry, being sent.",
            labels=["state"],
        )
        for state, n in self.runs.waiting_deliveries().items():
            waiting.add_metric([state], n)
        yield waiting
        ended = CounterMetricFamily(
            "digest_deliveries",
            "Deliveries by how their send ended, summed over the kept runs.",
            labels=["outcome"],
        )
        for outcome, n in self.runs.outcome_totals().items():
            ended.add_metric([outcome], n)
        yield ended
        subscribers = GaugeMetricFamily(
            "digest_subscribers", "Subscribers by status.", labels=["status"]
        )
        for status, n in sorted(self.runs.subscriber_counts().items()):
            subscribers.add_metric([status], n)
        yield subscribers

    @staticmethod
    def _last_run(run: RunRecord | None) -> Iterator[Metric]:
        started = GaugeMetricFamily(
            "digest_last_run_timestamp_seconds",
            "When the newest run that fetched or planned anything started.",
        )
        started.add_metric([], _seconds(run.started_at if run else None))
        yield started
        status = GaugeMetricFamily(
            "digest_last_run_status", "1 for the newest working run's status.", labels=["status"]
        )
        for name in RUN_STATUSES:
            status.add_metric([name], float(run is not None and run.status == name))
        yield status
        duration = GaugeMetricFamily(
            "digest_last_run_duration_seconds", "How long the newest working run's tick took."
        )
        duration.add_metric([], (run.seconds or 0.0) if run else 0.0)
        yield duration
        sends = GaugeMetricFamily(
            "digest_last_run_deliveries",
            "The newest working run's deliveries: planned, and what became of them so far.",
            labels=["outcome"],
        )
        if run is not None:
            for outcome in ("planned", "sent", "retrying", "failed", "bounced"):
                sends.add_metric([outcome], getattr(run.counts, outcome))
        yield sends


def registry_for(runs: Runs) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsCollector(runs))
    return registry


@metrics.get("/metrics")
def scrape() -> Response:
    ctx = current_app.extensions["digest"]
    token = ctx.settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response("unauthorized\n", 401, {"WWW-Authenticate": "Bearer"})
    registry = current_app.extensions.setdefault("digest_metrics", registry_for(ctx.store.runs))
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})
