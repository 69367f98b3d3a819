"""A `/metrics` scrape at a million deliveries (#35: under 50 ms), beside two baselines
measured in the same run on the same database:
  * a plain ``SELECT 1`` round trip (what any query costs here), and
  * the same scrape on the empty database (the scrape's fixed cost: Flask, the collector).

The scrape goes through the Flask test client, as Prometheus's GET would, minus the socket.

Run: .venv/bin/python -m bench.bench_metrics [--deliveries 1000000] [--scrapes 31]
Takes its database from DIGEST_DATABASE_URL (PostgreSQL, and it must hold no deliveries:
the bench fills it), or creates its own on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import fakeredis
from sqlalchemy import func, select, text

from digest.models import Delivery
from digest.records import SubscriberDefaults
from digest.runs import BEAT, RunCounts, SourceRun
from digest.settings import load_settings
from digest.storage import Storage
from digest.storage.database import scratch_database
from digest.subscriptions import build_subscriber_input
from digest.web import create_app

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET_MS = 50.0
EDITIONS = 100  # deliveries per subscriber: a million rows are 10,000 readers' 100 days
CHUNK = 100_000
SOURCES = ("hf", "arxiv-rss", "arxiv-api")
T0 = dt.datetime(2026, 8, 1, 7)


@contextmanager
def bench_database() -> Iterator[str]:
    """DIGEST_DATABASE_URL if set; else a database of our own, dropped afterwards."""
    given = os.environ.get("DIGEST_DATABASE_URL")
    if given:
        yield given
        return
    with scratch_database(PG_ADMIN_URL, "digest_bench_metrics") as url:
        yield url


def median_ms(action: Callable[[], object], times: int) -> float:
    """The median of ``times`` timed calls, after one untimed warm-up."""
    action()
    laps = []
    for _ in range(times):
        start = time.perf_counter()
        action()
        laps.append((time.perf_counter() - start) * 1000)
    return statistics.median(laps)


def scraper(store: Storage) -> Callable[[], object]:
    """One `/metrics` GET through the app `digest web` serves."""
    client = create_app(load_settings(), store, fakeredis.FakeRedis()).test_client()

    def scrape() -> object:
        response = client.get("/metrics")
        assert response.status_code == 200, response.status_code
        return response.data

    return scrape


def select_one(store: Storage) -> Callable[[], object]:
    """The cheapest round trip a query can make: the floor under any scrape."""

    def query() -> object:
        with store.db.engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar()

    return query


def add_subscribers(store: Storage, count: int) -> list[int]:
    """``count`` active readers, in bulk; their ids."""
    rows = [build_subscriber_input(f"reader{i}@example.org", ["rl"]) for i in range(count)]
    store.subscribers.import_rows(rows, SubscriberDefaults())
    with store.db.session() as session:
        return list(session.scalars(text("SELECT id FROM subscribers ORDER BY id")))


def delivery_rows(ids: list[int], editions: int) -> Iterator[tuple[object, ...]]:
    """The history a busy instance keeps: mostly sent, a few failed, bounced or skipped, and
    today's queue (queued, retrying, sending) on the newest edition."""
    today = T0.date() + dt.timedelta(days=editions - 1)
    for n in range(editions):
        edition = T0.date() + dt.timedelta(days=n)
        at = dt.datetime.combine(edition, dt.time(7))
        for i, sid in enumerate(ids):
            status, next_try = "sent", None
            if edition == today and i % 10 == 0:
                status = ("queued", "queued", "sending")[i % 3]
                next_try = at + dt.timedelta(minutes=15) if i % 3 == 1 else None
            elif i % 97 == 0:
                status = ("failed", "bounced", "skipped")[n % 3]
            sent_at = at if status == "sent" else None
            yield sid, edition, status, "[]", "[]", 1, next_try, False, at, sent_at


def copy_deliveries(store: Storage, ids: list[int], editions: int) -> int:
    """A million rows by COPY, in chunks: inserting them one by one would take the bench hours."""
    columns = (
        "subscriber_id, edition, status, picks, quiet_topics, attempts, next_try_at, resent, "
        "created_at, sent_at"
    )
    raw = store.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY deliveries ({columns}) FROM STDIN") as copy:
            for row in delivery_rows(ids, editions):
                copy.write_row(row)
        raw.commit()
        cursor.execute("ANALYZE deliveries")
        raw.commit()
    finally:
        raw.close()
    with store.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


def record_runs(store: Storage, editions: int) -> None:
    """A tick an hour for the kept days, each with its sources: what /metrics reads besides
    the deliveries (one source down now and then, so streaks are real)."""
    for hour in range(editions * 24):
        started = T0 + dt.timedelta(hours=hour)
        run = store.runs.start(BEAT, started)
        sources = [
            SourceRun(name, f"http://x/{name}", "timed out" if hour % 50 == k else None)
            for k, name in enumerate(SOURCES)
        ]
        worked = hour % 24 == 0
        counts = RunCounts(due=100, planned=100) if worked else RunCounts()
        store.runs.finish(run, started + dt.timedelta(seconds=5), counts, sources)
        if worked:
            store.runs.add_outcomes(run, {"sent": 97, "failed": 3})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=31)
    args = parser.parse_args()
    with bench_database() as url:
        store = Storage.from_url(url)
        store.db.upgrade()
        ping = median_ms(select_one(store), args.scrapes)
        empty = median_ms(scraper(store), args.scrapes)
        start = time.perf_counter()
        ids = add_subscribers(store, args.deliveries // EDITIONS)
        rows = copy_deliveries(store, ids, EDITIONS)
        record_runs(store, EDITIONS)
        filled = time.perf_counter() - start
        full = median_ms(scraper(store), args.scrapes)
        store.db.engine.dispose()
    verdict = "met" if full < TARGET_MS else "MISSED"
    print(f"{rows:,} deliveries, {len(ids):,} subscribers, {EDITIONS * 24:,} runs")
    print(f"  (filled in {filled:.1f} s); median of {args.scrapes}:")
    print(f"SELECT 1 round trip:       {ping:7.2f} ms")
    print(f"scrape, empty database:    {empty:7.2f} ms")
    print(f"scrape, full database:     {full:7.2f} ms  target {TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
