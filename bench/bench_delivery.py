"""Delivery throughput: queued deliveries -> messages accepted by a local SMTP sink, through real
Celery workers on Redis (1 and 2 worker processes), beside
  * the sink's own ceiling (pre-built messages blasted over one connection), and
  * the naive baseline: one SMTP connection per message, on a sample.

Run: .venv/bin/python -m bench.bench_delivery [--subscribers 10000] [--workers 1 2]
     [--send-groups 1 20] [--database-url URL | --postgres SERVER_URL]
Needs an empty Redis database in DIGEST_REDIS_URL (the Celery broker). The sink runs in its
own process. A database given by --database-url gets the bench's subscribers, and its
deliveries are deleted before each run: give it a database of its own. --postgres creates a
database of its own on that server and drops it at the end. Each worker count runs once per
``DIGEST_SEND_GROUP`` of --send-groups, in the same run, so their rates compare; and once per
list count of --lists (1 2: everyone on one list, then half on each of two, #34), so the cost
of planning and sending by list shows against the single list's in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import insert, text

from digest.delivery import send_deliveries
from digest.ingestion import ingest_bundled_sample
from digest.messages import WireMessage
from digest.models import SentPaper, Subscriber, SubscriberTopic, Topic, Vote, utcnow
from digest.pipeline import candidate_papers, embed_papers, run_tick
from digest.records import SubscriberDefaults
from digest.settings import load_settings
from digest.storage import Storage
from digest.storage.database import scratch_database
from digest.subscriptions import build_subscriber_input
from digest.transports import SmtpTransport

ROOT = Path(__file__).resolve().parent.parent
TOPICS = [
    "reinforcement learning",
    "large language model agents",
    "medical imaging",
    "diffusion models",
    "speech recognition",
    "graph neural networks",
]


def start_sink(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "smtp-sink", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=1).quit()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the SMTP sink did not start")


def sink_ceiling(port: int, sample: bytes, count: int = 2000) -> float:
    smtp = smtplib.SMTP("127.0.0.1", port)
    start = time.perf_counter()
    for n in range(count):
        smtp.sendmail("digest@localhost", [f"ceiling{n}@example.org"], sample)
    elapsed = time.perf_counter() - start
    smtp.quit()
    return count / elapsed


def transport_ceiling(port: int, sample: bytes, count: int = 2000) -> float:
    """The same, through our own transport (MAIL, RCPT and DATA pipelined where the sink offers
    it): the stricter ceiling, since the pipeline gains from that too."""
    settings = load_settings().model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    message = WireMessage(sample, {"Message-ID": "<ceiling@localhost>"})
    start = time.perf_counter()
    with SmtpTransport(settings) as transport:
        for n in range(count):
            transport.send(message, "digest@localhost", f"ceiling{n}@example.org")
    return count / (time.perf_counter() - start)


SECOND_LIST = "second"


def add_lists(store: Storage, lists: int) -> dict[str, int]:
    """The lists the subscribers are spread over: the default, and with ``lists`` 2 a second
    one with its own title and sender (so its digests differ as a real list's would).
    {slug: id}, the default's first."""
    ids = {store.lists.default().slug: store.lists.default().id}
    if lists == 2:
        ids[SECOND_LIST] = store.lists.add(
            SECOND_LIST, "Second Digest", sender="Second <second@example.org>"
        ).id
    return ids


def populate(url: str, subscribers: int, env: dict[str, str], lists: int = 1) -> Storage:
    """A fresh database with the bundled papers and ``subscribers`` active subscribers, spread
    evenly over ``lists`` lists."""
    os.environ.update(env)
    settings = load_settings()
    store = Storage.from_url(url)
    store.db.upgrade()
    ingest_bundled_sample(store.papers, settings.announce_types)
    list_ids = add_lists(store, lists)
    slugs = list(list_ids)
    for start in range(0, subscribers, 50_000):
        rows = [
            build_subscriber_input(
                f"user{i}@example.org",
                [TOPICS[i % 6], TOPICS[(i + 2) % 6]],
                list_slug=slugs[i % lists],
            )
            for i in range(start, min(start + 50_000, subscribers))
        ]
        store.subscribers.import_rows(rows, SubscriberDefaults(), list_ids=list_ids)
    return store


def forget_sending(store: Storage) -> None:
    """Everyone due again: a database given by URL serves each worker count in turn."""
    with store.db.engine.begin() as conn:
        for table in ("sent_papers", "planned_picks", "deliveries"):
            conn.execute(text(f"DELETE FROM {table}"))


def plan(store: Storage) -> tuple[list[list[int]], float]:
    """One tick that plans everyone: rank, then one delivery row each. (batches, seconds)"""
    batches: list[list[int]] = []
    start = time.perf_counter()
    run_tick(
        store,
        load_settings(),
        utcnow(),
        batches.append,
        fetch_every=dt.timedelta(days=999),
        everyone=True,
    )
    return batches, time.perf_counter() - start


def populate_in_bulk(
    url: str, subscribers: int, env: dict[str, str], voters: float, lists: int = 1
) -> Storage:
    """Like :func:`populate`, written straight into the tables: validating a million
    addresses through the import takes a quarter of an hour, and planning is what is timed.
    ``voters``: the share of subscribers with three votes on the day's papers. As on any day
    but the first, everyone was already sent three of today's candidates yesterday.
    ``lists``: spread over that many lists (1 or 2), every other subscriber on the second."""
    os.environ.update(env)
    settings = load_settings()
    store = Storage.from_url(url)
    store.db.upgrade()
    ingest_bundled_sample(store.papers, settings.announce_types)
    now = utcnow()
    voted = [p.arxiv_id for p in store.papers.find()][:6]
    list_ids = list(add_lists(store, lists).values())
    with store.db.engine.begin() as conn:
        conn.execute(
            insert(Topic.__table__), [{"id": n + 1, "name": t} for n, t in enumerate(TOPICS)]
        )
        for start in range(0, subscribers, 50_000):
            ids = range(start + 1, min(start + 50_000, subscribers) + 1)
            conn.execute(
                insert(Subscriber.__table__),
                [
                    {
                        "id": i,
                        "email": f"user{i}@example.org",
                        "list_id": list_ids[i % lists],
                        "status": "active",
                        "timezone": "UTC",
                        "send_hour": 7,
                        "max_papers": 5,
                        "hard_bounces": 0,
                        "show_trending": True,
                        "created_at": now,
                        "updated_at": now,
                        "confirmed_at": now,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(SubscriberTopic.__table__),
                [
                    {"subscriber_id": i, "topic_id": (i + k * 2) % 6 + 1, "position": k}
                    for i in ids
                    for k in range(2)
                ],
            )
            conn.execute(
                insert(SentPaper.__table__),
                [
                    {"subscriber_id": i, "arxiv_id": voted[(i + k) % len(voted)], "sent_at": now}
                    for i in ids
                    for k in range(3)
                ],
            )
            conn.execute(
                insert(Vote.__table__),
                [
                    {
                        "subscriber_id": i,
                        "arxiv_id": voted[(i + k) % len(voted)],
                        "value": 1 if k else -1,
                        "created_at": now,
                    }
                    for i in ids
                    if (i * 7919) % 1000 < voters * 1000
                    for k in range(3)
                ],
            )
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))")
            )
            conn.execute(text("SELECT setval('topics_id_seq', (SELECT max(id) FROM topics))"))
    if store.db.engine.dialect.name == "postgresql":  # as autovacuum leaves tables a day old
        with store.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    return store


def planning_only(
    url: str, subscribers: int, env: dict[str, str], voters: float, lists: int = 1
) -> float:
    """The daily run's planning at scale, on stored vectors (as after `digest fetch`);
    its seconds."""
    store = populate_in_bulk(url, subscribers, env, voters, lists)
    embed_papers(store, load_settings(), candidate_papers(store, load_settings(), utcnow()))
    _, seconds = plan(store)
    store.dispose()
    print(
        f"planning only, {subscribers:,} subscribers ({voters:.0%} with votes) on {lists} "
        f"list(s), rank + delivery rows: {seconds:6.1f} s"
    )
    return seconds


def planning_by_lists(args: argparse.Namespace, tmp: Path, port: int) -> None:
    """Planning with everyone on one list, then spread over more, each on a fresh database;
    then each figure against the first's."""
    seconds: dict[int, float] = {}
    for lists in args.lists:
        with fresh_database(args, tmp, f"planning{lists}") as url:
            seconds[lists] = planning_only(
                url, args.subscribers, bench_env(url, tmp, port), args.voters, lists
            )
    base = args.lists[0]
    for lists in args.lists[1:]:
        print(
            f"planning on {lists} lists against {base}: {seconds[lists]:.1f} against "
            f"{seconds[base]:.1f} s ({seconds[lists] / seconds[base]:.0%})"
        )


@contextlib.contextmanager
def fresh_database(args: argparse.Namespace, tmp: Path, name: str) -> Iterator[str]:
    """A database of its own on --postgres's server (dropped after), or a SQLite file."""
    if args.postgres:
        with scratch_database(args.postgres, "bench_delivery") as url:
            yield url
    else:
        yield f"sqlite:///{tmp / f'{name}.db'}"


def naive_rate(store: Storage, batches: list[list[int]], sample: int) -> float:
    """One connection per message, the same send path otherwise (consumes `sample` deliveries)."""
    settings = load_settings()
    ids = [i for b in batches for i in b][:sample]
    start = time.perf_counter()
    for delivery_id in ids:
        with SmtpTransport(settings) as transport:
            send_deliveries(store.deliveries, store.papers, settings, [delivery_id], transport)
    return len(ids) / (time.perf_counter() - start)


def celery_rate(
    store: Storage, batches: list[list[int]], workers: int, env: dict[str, str], sink: int
) -> tuple[float, int, dict[str, float]]:
    """(messages per second, messages, CPU milliseconds per message of each part)."""
    broker = load_settings().redis_url  # DIGEST_REDIS_URL, like every other process
    client = Celery(broker=broker)
    with client.connection_for_write() as conn:
        for batch in batches:
            client.send_task("workers.tasks.send_batch", args=[batch], connection=conn)
    total = sum(len(b) for b in batches)
    if not total:
        raise SystemExit("nothing was planned: is everyone in this database already sent today?")
    before = store.deliveries.counts().get("sent", 0)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "worker",
                f"--concurrency={workers}",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
        )
        while (
            store.deliveries.counts().get("sent", 0) == before
        ):  # time from the first accepted message
            time.sleep(0.05)
        start, first = time.perf_counter(), store.deliveries.counts().get("sent", 0)
        cpu_before = cpu_by_part(proc.pid, sink)
        while store.deliveries.counts().get("sent", 0) < before + total:
            time.sleep(0.2)
            if proc.poll() is not None:
                raise SystemExit("worker died")
        elapsed = time.perf_counter() - start
        cpu_after = cpu_by_part(proc.pid, sink)
        proc.terminate()
        proc.wait(30)
    sent = before + total - first
    cpu = {part: 1000 * (cpu_after[part] - cpu_before[part]) / sent for part in cpu_after}
    return sent / elapsed, total, cpu


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[str, int, float]]:
    """pid -> (command name, parent pid, CPU seconds so far), read from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        name = line[line.index("(") + 1 : line.rindex(")")]
        fields = line[line.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        table[int(stat.parent.name)] = (name, int(fields[1]), cpu)
    return table


def cpu_by_part(worker: int, sink: int) -> dict[str, float]:
    """CPU seconds so far of each part of the pipeline: the Celery worker (parent and
    pool), the SMTP sink, the database server's processes and Redis. Shares of a noisy
    machine's throughput move by a fifth between runs; CPU time per message does not."""
    table = _process_table()

    def tree(root: int) -> float:
        children = [pid for pid, (_, parent, _) in table.items() if parent == root]
        return table.get(root, ("", 0, 0.0))[2] + sum(tree(child) for child in children)

    return {
        "workers": tree(worker),
        "sink": tree(sink),
        "database": sum(cpu for name, _, cpu in table.values() if name == "postgres"),
        "redis": sum(cpu for name, _, cpu in table.values() if name == "redis-server"),
    }


def bench_env(url: str, tmp: Path, port: int) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": url,
        "DIGEST_DATA_DIR": str(tmp),
        "DIGEST_REDIS_URL": load_settings().redis_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(port),
        "DIGEST_OFFLINE": "true",
        "DIGEST_RATE_LIMIT_PER_SECOND": "100000",
        "DIGEST_BATCH_SIZE": "200",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--send-groups", type=int, nargs="+", default=[20], help="DIGEST_SEND_GROUP values to run"
    )
    parser.add_argument("--rounds", type=int, default=1, help="run the settings this many times")
    parser.add_argument("--naive-sample", type=int, default=500)
    parser.add_argument("--database-url", help="default: a fresh SQLite file per run")
    parser.add_argument(
        "--postgres", metavar="SERVER_URL", help="a database of its own on this server, dropped"
    )
    parser.add_argument("--planning-only", action="store_true", help="time only the planning tick")
    parser.add_argument(
        "--voters", type=float, default=0.1, help="--planning-only: share of subscribers with votes"
    )
    parser.add_argument(
        "--lists", type=int, nargs="+", choices=[1, 2], default=[1, 2],
        help="spread the subscribers over 1 list, then 2 (the first is the baseline)",
    )  # fmt: skip
    args = parser.parse_args()
    port = 2600 + os.getpid() % 1000
    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    if args.planning_only:
        planning_by_lists(args, tmp, port)
        return
    if args.postgres:
        with scratch_database(args.postgres, "bench_delivery") as url:
            pipeline(args, url, tmp, port)
    else:
        pipeline(args, args.database_url, tmp, port)


def empty_broker() -> redis.Redis:
    """The Redis database in DIGEST_REDIS_URL, checked empty: the bench empties it after each
    run, and so must never be given one that holds anything of anyone else's."""
    broker = load_settings().redis_url
    db = redis.Redis.from_url(broker)
    if db.dbsize():
        raise SystemExit(
            f"{broker} is not empty: point DIGEST_REDIS_URL at an empty Redis database "
            "(the benchmark never flushes one it did not find empty)"
        )
    return db


def pipeline(args: argparse.Namespace, shared_url: str | None, tmp: Path, port: int) -> None:
    """Every (worker count, send group) in turn, between measures of the sink's ceiling."""
    broker = empty_broker()
    sink = start_sink(port)
    rates: dict[tuple[int, int], list[tuple[float, float]]] = {}
    by_lists: dict[tuple[int, int], list[float]] = {}  # (lists, workers) -> rates
    try:
        print(
            f"{args.subscribers:,} subscribers; SMTP sink (aiosmtpd) in its own process; 2-core machine"
        )
        store, message = None, b""
        runs = [
            (n, w, g)
            for _ in range(args.rounds)
            for n in args.lists
            for w in args.workers
            for g in args.send_groups
        ]
        populated = 0
        for lists, workers, group in runs:
            url = shared_url or f"sqlite:///{tmp / f'l{lists}w{workers}g{group}-{len(runs)}.db'}"
            env = {**bench_env(url, tmp, port), "DIGEST_SEND_GROUP": str(group)}
            if store is not None and shared_url and populated != lists:
                forget_everyone(store)
                store = None
            if store is None or not shared_url:
                store, populated = populate(url, args.subscribers, env, lists), lists
            os.environ.update(env)
            if shared_url:
                forget_sending(store)
            batches, planning = plan(store)
            if not message:
                sample = store.deliveries.load(batches[0][:1])
                print(f"planning (rank + delivery rows), {lists} list(s): {planning:6.1f} s")
                message = _sample_message(store, sample[0][0].id)
                ceiling = sink_ceiling(port, message)
                print(f"sink ceiling, pre-built messages, 1 connection: {ceiling:6.0f} msg/s")
                ours = transport_ceiling(port, message)
                print(f"  the same through our transport (pipelined): {ours:6.0f} msg/s")
                print(
                    f"naive, 1 connection per message ({args.naive_sample} msgs): "
                    f"{naive_rate(store, batches, args.naive_sample):6.0f} msg/s"
                )
                batches = _drop_sent(store, batches)
            rate, total, cpu = celery_rate(store, batches, workers, env, sink.pid)
            broker.flushdb()  # the worker's queue bindings: empty, as it was found
            after, ours_after = sink_ceiling(port, message), transport_ceiling(port, message)
            share = rate / ((ceiling + after) / 2)
            rates.setdefault((workers, group), []).append((rate, share))
            by_lists.setdefault((lists, workers), []).append(rate)
            print(
                f"pipeline, {lists} list(s), {workers} worker process(es), batches of 200, "
                f"DIGEST_SEND_GROUP={group}, "
                f"{total:,} msgs: {rate:6.0f} msg/s = {share:.0%} of the sink ceiling (mean of "
                f"{ceiling:.0f} before and {after:.0f} msg/s right after: on 2 shared cores it drifts)"
                f"; {rate / ((ours + ours_after) / 2):.0%} of our transport's ({ours:.0f}, "
                f"{ours_after:.0f})"
            )
            print(
                "  CPU per message: "
                + ", ".join(f"{part} {ms:.2f} ms" for part, ms in cpu.items())
                + f"; all {sum(cpu.values()):.2f} ms"
            )
            ceiling, ours = after, ours_after
            if not shared_url:
                store.db.engine.dispose()
        if store is not None and shared_url:
            store.db.engine.dispose()
    finally:
        sink.terminate()
    compare_groups(rates)
    compare_lists(by_lists)


def compare_lists(runs: dict[tuple[int, int], list[float]]) -> None:
    """Each list count's mean rate against the fewest lists', per worker count."""
    counts = sorted({n for n, _ in runs})
    for workers in sorted({w for _, w in runs}):
        base = sum(runs[counts[0], workers]) / len(runs[counts[0], workers])
        for lists in counts[1:]:
            rate = sum(runs[lists, workers]) / len(runs[lists, workers])
            print(
                f"{workers} worker process(es), {lists} lists against {counts[0]}: "
                f"{rate:.0f} against {base:.0f} msg/s ({rate / base:.0%})"
            )


def forget_everyone(store: Storage) -> None:
    """A shared database emptied of subscribers and lists but the default, for the next
    list count (its deliveries go with its subscribers)."""
    forget_sending(store)
    with store.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM subscribers"))
        conn.execute(text(f"DELETE FROM lists WHERE slug = '{SECOND_LIST}'"))
    store.dispose()


def compare_groups(runs: dict[tuple[int, int], list[tuple[float, float]]]) -> None:
    """Each send group's mean rate and share of the sink, against the largest group's."""
    for workers in sorted({w for w, _ in runs}):
        groups = sorted(g for w, g in runs if w == workers)
        top_rate, top_share = _means(runs[workers, groups[-1]])
        for group in groups[:-1]:
            rate, share = _means(runs[workers, group])
            print(
                f"{workers} worker process(es), DIGEST_SEND_GROUP={group} against {groups[-1]}: "
                f"{rate:.0f} against {top_rate:.0f} msg/s ({rate / top_rate:.0%}), "
                f"{share:.0%} against {top_share:.0%} of the sink ({share / top_share:.0%})"
            )


def _means(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    return sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs)


def _sample_message(store: Storage, delivery_id: int) -> bytes:
    from digest import emails
    from digest.editions import digest_content
    from digest.tokens import Tokens

    settings = load_settings()
    ((delivery, sub),) = store.deliveries.load([delivery_id])
    papers = {p.arxiv_id: p for p in store.papers.find(ids=[p["arxiv_id"] for p in delivery.picks])}
    content = digest_content(
        sub,
        delivery.picks,
        papers,
        delivery.edition,
        Tokens(settings.secret_key),
        settings.base_url,
    )
    return emails.digest(content, settings, delivery.id, utcnow()).as_bytes()


def _drop_sent(store: Storage, batches: list[list[int]]) -> list[list[int]]:
    sent = {d.id for d in store.deliveries.find(status="sent")}
    return [[i for i in b if i not in sent] for b in batches if any(i not in sent for i in b)]


if __name__ == "__main__":
    main()
