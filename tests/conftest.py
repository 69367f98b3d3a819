"""Shared fixtures: databases (SQLite always, PostgreSQL when its server is up), settings, data."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from digest.cli import cli
from digest.records import SubscriberDefaults
from digest.settings import Settings, load_settings
from digest.storage import Storage
from digest.storage.database import scratch_database
from digest.subscriptions import SubscriberInput, build_subscriber_input

FIXTURES = Path(__file__).parent / "fixtures"
FEEDS = FIXTURES / "feeds"
PG_ADMIN_URL = os.environ.get(
    "DIGEST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason to skip."""
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {str(exc.orig).strip().splitlines()[0]}"
    return None


PG_SKIP_REASON = _postgres_available()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    if PG_SKIP_REASON:
        pytest.skip(reason=PG_SKIP_REASON)
    with scratch_database(PG_ADMIN_URL, "digest_test") as url:
        yield url


def _shared_redis_url() -> str:
    """The shared Redis database of this test process: ``DIGEST_TEST_REDIS_URL`` (db 13 by
    default), moved up by the pytest-xdist worker's number, because the worker tests flush
    their database and two test processes must never flush each other's."""
    url = os.environ.get("DIGEST_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base, _, db = url.rpartition("/")
    number = int(db or 0) + int(worker.removeprefix("gw"))
    if number > 15:
        raise RuntimeError(f"{url} plus xdist worker {worker} is past Redis's 16 databases")
    return f"{base}/{number}"


SHARED_REDIS = _shared_redis_url()


def redis_skip_reason() -> str | None:
    """None when the shared Redis answers, else the reason to skip."""
    import redis

    try:
        redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {SHARED_REDIS}: {exc}"
    return None


def unreachable_redis():
    """A client for a Redis that is down: nothing listens on port 1."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


@pytest.fixture
def redis_url() -> str:
    """The shared Redis server (a database of its own); tests use keys no other test uses."""
    if reason := redis_skip_reason():
        pytest.skip(reason=reason)
    return SHARED_REDIS


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digest.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Storage]:
    store = Storage.from_url(db_url)
    store.db.upgrade()
    yield store
    store.db.engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings isolated from the developer's environment and .env."""
    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return load_settings(data_dir=tmp_path / "var")


@pytest.fixture
def smtp_sink():
    """A real SMTP server (aiosmtpd) on a free port, recording what it accepts."""
    from digest.smtp_sink import SmtpSink

    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def encoder() -> Iterator:
    """The MiniLM encoder the daily run uses; skipped, saying what to install, where it is absent."""
    from digest import semantic

    if reason := semantic.unavailable_reason():
        pytest.skip(reason=reason)
    model = semantic.load_encoder()
    if saved := os.environ.get("DIGEST_TEST_VECTORS"):
        yield from _with_saved_vectors(model, Path(saved))
    else:
        yield model


def _with_saved_vectors(model, path: Path) -> Iterator:
    """For mutation runs of ranking code only (docs/testing.md, "Mutation testing"): each mutant's
    test run starts a fresh process, and embedding the dev set again costs ~35 s. The
    vectors a first run embedded fill the model's in-process cache (the path a second
    ranking in one process takes anyway); the file is written once and never updated, so
    a mutant that changes the text embedded pays for a forward pass, as it should."""
    import numpy as np

    if path.exists():
        with np.load(path) as saved:
            model.cache.update(zip(saved["texts"], saved["vectors"], strict=True))
    yield model
    if not path.exists() and model.cache:
        texts = list(model.cache)
        np.savez(path, texts=np.array(texts), vectors=np.stack(list(model.cache.values())))


# the storage tests' subscribers: a fixed schedule, topics given by name
DEFAULTS = SubscriberDefaults(timezone="UTC", send_hour=7, max_papers=5)


def sub(email: str, *topics: str, **extra: object) -> SubscriberInput:
    return build_subscriber_input(email, list(topics), **extra)  # type: ignore[arg-type]


def record_sent_digest(
    store: Storage, subscriber_id: int, edition, picks: list[dict], quiet_topics: tuple = ()
) -> int:
    """A digest as the workers leave it once the SMTP server accepted it: planned, claimed and
    recorded as sent with its papers. Returns the delivery id."""
    import datetime as dt

    from digest.records import NewDelivery, SentRecord

    now = dt.datetime.combine(edition, dt.time(7))
    planned = NewDelivery(subscriber_id, edition, picks, quiet_topics=quiet_topics)
    _, (delivery,) = store.deliveries.create([planned])
    claim, _ = store.deliveries.claim([delivery], now)
    papers = tuple(p["arxiv_id"] for p in picks)
    store.deliveries.mark_sent(
        [SentRecord(delivery, subscriber_id, claim, f"<{delivery}@test>", now, papers)]
    )
    return delivery


def run_at_once(work: Callable[[int], object], count: int = 2) -> tuple[list, list[Exception]]:
    """``work(i)`` in ``count`` threads released together by a barrier, as that many
    processes would run it; what they returned (in the order they finished) and what they
    raised, for the test to assert on rather than lose in a thread."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list[Exception] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results.append(work(i))
        except Exception as exc:  # noqa: BLE001 - the caller reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, errors


@pytest.fixture
def run(settings: Settings) -> Callable[..., Result]:
    """`digest ARGS...` on the test's own data folder, asserting its exit code (0 unless
    ``code=`` says otherwise); the tests of the CLI's modules share it."""
    runner = CliRunner()
    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


def one_error_line(result: Result) -> str:
    """The command failed as expected: exit 1, one 'Error:' line, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def poisoned(field: str) -> str:
    """Markup where plain text belongs: a page or email that shows it unescaped contains
    ``<u class=`` (no template writes a ``<u>``), and one that escapes it shows it as text."""
    return f'<u class="x">{field} & co</u>'


def poisoned_paper(arxiv_id: str, summary: bool = True):
    """A paper whose every shown field, links included, carries markup: feed text is written
    by strangers. ``summary``: with Hugging Face's AI summary (the trending line shows it
    instead of the abstract)."""
    from digest.sources import PaperRecord

    link = '">' + poisoned("link")  # out of the href attribute, into the page
    return PaperRecord(
        arxiv_id,
        poisoned("title"),
        poisoned("abstract"),
        authors=[poisoned("author")],
        upvotes=12,
        num_comments=3,
        hf_url=f"https://huggingface.co/papers/{arxiv_id}{link}",
        ai_summary=poisoned("summary") if summary else None,
        github_repo=f"https://github.com/x/y{link}",
        github_stars=1200,
        project_page=f"https://example.org/{link}",
        organization=poisoned("organization"),
    )
