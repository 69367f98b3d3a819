"""CSV import: 10,000 subscribers with a few hundred bad rows, bulk (as `digest subscribers import`
does it) against one add per row on a sample, in the same run; then the idempotent re-import.

Run: .venv/bin/python -m bench.bench_import [--rows 10000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from digest.records import ChangeReport, SubscriberDefaults
from digest.storage import Storage
from digest.subscriptions import parse_subscriber_csv

BATCH = 1000  # what the CLI uses


def make_csv(rows: int, prefix: str = "user") -> str:
    lines = ["email,topics,timezone,send_hour,max_papers"]
    for i in range(rows):
        lines.append(
            f"{prefix}{i}@example.org,topic {i % 300};graph neural networks,UTC,{i % 24},5"
        )
        if i % 50 == 1:
            lines.append(f"{prefix}{i}@@example.org,rl,,,")
        if i % 50 == 2:
            lines.append(f"{prefix.upper()}{i}@example.org,rl,,,")
    return "\ufeff" + "\r\n".join(lines) + "\r\n"


def bulk_import(store: Storage, text: str) -> tuple[float, ChangeReport, int]:
    start = time.perf_counter()
    parsed = parse_subscriber_csv(text)
    total = ChangeReport()
    for i in range(0, len(parsed.rows), BATCH):
        total.add(store.subscribers.import_rows(parsed.rows[i : i + BATCH], SubscriberDefaults()))
    return time.perf_counter() - start, total, len(parsed.rejections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'import.db'}"
        store = Storage.from_url(url)
        store.db.upgrade()
        text = make_csv(args.rows)
        seconds, report, rejected = bulk_import(store, text)
        print(f"{args.rows:,} valid rows + {rejected} bad rows on {store.db.engine.dialect.name}")
        print(f"bulk import:      {seconds:6.2f} s  created {report.created}, rejected {rejected}")
        again, report, _ = bulk_import(store, text)
        print(
            f"re-import:        {again:6.2f} s  created {report.created}, updated {report.updated}, "
            f"unchanged {report.unchanged}"
        )
        sample = parse_subscriber_csv(make_csv(args.sample, prefix="other")).rows
        start = time.perf_counter()
        for row in sample:
            store.subscribers.add(row, SubscriberDefaults())
        per_row = (time.perf_counter() - start) / len(sample)
        print(
            f"one add per row:  {per_row * args.rows:6.2f} s projected ({per_row * 1000:.1f} ms/row on "
            f"{len(sample)}): bulk is {per_row * args.rows / seconds:.0f}x faster"
        )
        store.db.engine.dispose()


if __name__ == "__main__":
    main()
