"""The production shape, for real: a Celery worker process on Redis, sending to an SMTP server.

Uses the shared Redis at 127.0.0.1:6379 (a dedicated db number, flushed) and, for the
restart test, a private redis-server on another port. Skips with a reason if Redis is absent.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from celery import Celery
from conftest import SHARED_REDIS, redis_skip_reason
from test_delivery import planned, populate, smtp_settings

from digest.models import utcnow
from digest.pipeline import run_tick
from digest.settings import Settings, load_settings
from digest.storage import Storage

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(bool(redis_skip_reason()), reason=str(redis_skip_reason())),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Worker:
    """``celery worker`` as a child process with the given DIGEST_* environment."""

    def __init__(
        self, env: dict[str, str], log: Path, concurrency: int = 2, name: str = "test"
    ) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.celery_app",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{name}{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: b"ready." in log.read_bytes() or self.process.poll() is not None,
            60,
            "the worker to start",
        )
        assert self.process.poll() is None, log.read_text()

    def pool_children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def harness(
    db_url: str, tmp_path: Path, smtp_sink, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict]:
    """Environment shared by the test process and the worker: same DB, same Redis, same SMTP."""
    env = {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_DATA_DIR": str(tmp_path / "var"),
        "DIGEST_REDIS_URL": SHARED_REDIS,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp_sink.port),
        "DIGEST_BATCH_SIZE": "50",
        "DIGEST_OFFLINE": "true",
        "DIGEST_RATE_LIMIT_PER_SECOND": "1000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    redis.Redis.from_url(SHARED_REDIS).flushdb()
    store = Storage.from_url(db_url)
    store.db.upgrade()
    yield {"env": env, "store": store, "sink": smtp_sink, "log": tmp_path / "worker.log"}
    redis.Redis.from_url(SHARED_REDIS).flushdb()
    store.db.engine.dispose()


def configure(harness: dict, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """The same settings for this test process and the worker it starts."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
        harness["env"][key] = value


def tick(store: Storage, settings: Settings, broker: str, later: float = 0) -> int:
    """One beat tick; ``later`` seconds ahead of the clock stands in for waiting out a lease."""
    client = Celery(broker=broker)
    batches: list[list[int]] = []
    now = utcnow() + dt.timedelta(seconds=later)
    run_tick(
        store, settings, now, batches.append, fetch_every=dt.timedelta(days=999), everyone=True
    )
    with client.connection_for_write() as conn:
        for batch in batches:
            client.send_task("workers.tasks.send_batch", args=[batch], connection=conn)
    return sum(len(b) for b in batches)


def test_a_worker_batch_takes_a_permit_per_message_from_the_shared_rate(
    db_url: str,
    store: Storage,
    settings: Settings,
    smtp_sink,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DIGEST_RATE_LIMIT_PER_SECOND holds across every worker only if each batch the task
    sends takes its permits from the one counter in Redis (``send_deliveries`` sends
    unpaced when it is given no limiter)."""
    monkeypatch.setenv("DIGEST_DATA_DIR", str(settings.data_dir))
    from workers import tasks

    server = redis.Redis.from_url(redis_url)
    server.delete(*server.keys("digest:rate:*") or ["digest:rate:none"])
    config = smtp_settings(settings, smtp_sink).model_copy(
        # 10 a second: each permit is reserved alone, so the counters add up to the messages
        update={
            "database_url": db_url,
            "redis_url": redis_url,
            "rate_limit_per_second": 10,
            "semantic": False,  # words alone: this test is about pacing, not ranking
        }
    )
    monkeypatch.setattr(tasks, "settings", config)
    tasks.store.cache_clear()
    populate(store, 3)
    (batch,) = planned(store, config)
    try:
        assert tasks.send_batch(batch)["sent"] == 3
    finally:
        tasks.store().db.engine.dispose()
        tasks.store.cache_clear()
    assert sum(int(server.get(key)) for key in server.keys("digest:rate:*")) == 3


def test_200_subscribers_get_exactly_one_digest_through_a_real_worker(harness) -> None:
    store, sink = harness["store"], harness["sink"]
    emails = populate(store, 200)
    worker = Worker(harness["env"], harness["log"])
    try:
        assert tick(store, load_settings(), SHARED_REDIS) == 200
        wait_for(lambda: store.deliveries.counts() == {"sent": 200}, 90, "200 sent deliveries")
        assert sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
        assert tick(store, load_settings(), SHARED_REDIS) == 0, (
            "the same edition again creates nothing, so nothing more can be sent"
        )
        assert len(sink.handler.received) == 200
    finally:
        worker.stop()


@contextmanager
def sending_under_way(
    harness: dict, subscribers: int, delay: float, started_after: int, broker: str = SHARED_REDIS
) -> Iterator[tuple[Worker, list[str]]]:
    """A one-process worker sending to a slow sink, stopped however the test ends."""
    emails = populate(harness["store"], subscribers)
    harness["sink"].handler.delay = delay
    worker = Worker(harness["env"], harness["log"], concurrency=1)
    try:
        tick(harness["store"], load_settings(), broker)
        wait_for(
            lambda: len(harness["sink"].handler.received) >= started_after, 60, "sending to start"
        )
        yield worker, emails
    finally:
        worker.stop()


@pytest.mark.parametrize("group", ["1", "20"])
def test_a_worker_killed_mid_batch_has_its_batch_redelivered_and_finished(
    harness, monkeypatch, group: str
) -> None:
    """Groups of one overlap each record with the next message, held short of the end of
    its data: a kill anywhere still repeats at most one message."""
    store, sink = harness["store"], harness["sink"]
    configure(harness, monkeypatch, DIGEST_CLAIM_LEASE_SECONDS="3", DIGEST_SEND_GROUP=group)
    with sending_under_way(harness, subscribers=60, delay=0.05, started_after=10) as (
        worker,
        emails,
    ):
        (child,) = worker.pool_children()
        os.kill(child, signal.SIGKILL)
        wait_for(
            lambda: store.deliveries.counts().get("queued", 0) == 0,
            90,
            "the redelivered batches to finish",
        )
        # The lease must pass in real time: a tick dated ahead would also take the claims
        # of the worker that replaced the dead child, mid-send, and resend them (seen).
        time.sleep(3.5)
        tick(store, load_settings(), SHARED_REDIS)
        wait_for(lambda: store.deliveries.counts() == {"sent": 60}, 60, "every delivery sent")
        counts = sink.handler.by_recipient()
        assert set(counts) == set(emails), "no digest lost"
        duplicated = {email for email, n in counts.items() if n > 1}
        group = load_settings().send_group
        assert sum(counts[e] - 1 for e in duplicated) <= group, (
            f"at most the group in flight at the kill is repeated, got {duplicated}"
        )
        flagged = {d.email for d in store.deliveries.find() if d.resent}
        assert duplicated <= flagged, "`digest deliveries` shows each possible duplicate"
        assert (
            b"WorkerLostError" in harness["log"].read_bytes()
            or b"SIGKILL" in harness["log"].read_bytes()
        )


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[[], None]]:
    """A redis-server of our own on a free port, with a restart() to simulate an outage."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(reason="redis-server is not installed: cannot run a private instance")
    port = free_port()

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(lambda: _pings(port), 10, "redis-server to start")
        return proc

    state = {"proc": start()}

    def restart() -> None:
        state["proc"].terminate()
        state["proc"].wait(10)
        state["proc"] = start()

    restart.url = f"redis://127.0.0.1:{port}/0"  # type: ignore[attr-defined]
    yield restart
    state["proc"].terminate()
    state["proc"].wait(10)


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def test_redis_restart_mid_run_still_completes_exactly_once(
    harness, private_redis, monkeypatch
) -> None:
    store, sink = harness["store"], harness["sink"]
    url = private_redis.url
    configure(harness, monkeypatch, DIGEST_REDIS_URL=url, DIGEST_ENQUEUE_LEASE_SECONDS="2")
    with sending_under_way(harness, subscribers=100, delay=0.02, started_after=5, broker=url) as (
        _,
        emails,
    ):
        private_redis()  # queued batches vanish with it (no persistence)
        wait_for(
            lambda: store.deliveries.counts().get("sending", 0) == 0,
            30,
            "the in-flight batch to end",
        )
        # ticks past the enqueue lease hand the lost deliveries out again
        wait_for(
            lambda: _resend(store, url) or store.deliveries.counts() == {"sent": 100},
            120,
            "every delivery sent after the restart",
        )
        assert sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))


def _resend(store: Storage, url: str) -> bool:
    try:
        tick(store, load_settings(), url, later=2.5)
    except Exception:  # noqa: BLE001 - the broker may still be coming back
        pass
    return store.deliveries.counts() == {"sent": 100}


def test_two_worker_hosts_share_one_run_and_each_recipient_gets_one_digest(
    harness, tmp_path: Path
) -> None:
    """Scaling out: two worker "machines" (own processes, own data folders) on the same Redis
    and PostgreSQL, taking batches of one run."""
    if harness["env"]["DIGEST_DATABASE_URL"].startswith("sqlite"):
        pytest.skip(reason="separate hosts share PostgreSQL; a SQLite file belongs to one machine")
    store, sink = harness["store"], harness["sink"]
    emails = populate(store, 300)
    hosts = [
        Worker(
            {**harness["env"], "DIGEST_DATA_DIR": str(tmp_path / f"host{n}")},
            tmp_path / f"host{n}.log",
            name=f"host{n}-",
        )
        for n in (1, 2)
    ]
    try:
        assert tick(store, load_settings(), SHARED_REDIS) == 300
        wait_for(lambda: store.deliveries.counts() == {"sent": 300}, 120, "300 sent deliveries")
    finally:
        for host in hosts:
            host.stop()
    assert sink.handler.by_recipient() == Counter(dict.fromkeys(emails, 1))
    worked = [b"send_batch" in (tmp_path / f"host{n}.log").read_bytes() for n in (1, 2)]
    assert worked == [True, True], "both hosts took batches"
