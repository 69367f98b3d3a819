"""Every run leaves a receipt (#35), end to end: a real unreachable source (a closed port),
a real SMTP server refusing (550) and deferring (451), the CLI, /metrics and the alert."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from click.testing import CliRunner
from conftest import FEEDS
from feed_server import FeedServer, Reply
from prometheus_client.parser import text_string_to_metric_families

from digest.cli import cli
from digest.settings import load_settings
from digest.storage import Storage
from digest.web import create_app

ADMIN = "ops@example.org"


def closed_port() -> int:
    """A localhost port nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path: Path, smtp_sink, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    feeds = FeedServer()
    feeds.script("/api", Reply(200, (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()))
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {
        "DIGEST_DATA_DIR": str(tmp_path / "var"),
        "DIGEST_HF_API_URL": f"{feeds.url}/api",
        "DIGEST_ARXIV_RSS_URL": f"{dead}/rss",
        "DIGEST_ARXIV_API_URL": f"{dead}/api",
        "DIGEST_HTTP_TIMEOUT": "2",
        "DIGEST_SEMANTIC": "false",
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp_sink.port),
        "DIGEST_ADMIN_EMAIL": ADMIN,
    }
    for key in [k for k in os.environ if k.startswith("DIGEST_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    refusals = {"bob@example.org": "550 5.1.1 no such user", "cy@example.org": "451 4.3.0 later"}
    smtp_sink.handler.rcpt_reply = refusals.get
    runner = CliRunner()

    def digest(*args: str) -> object:
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    for who, topic in (("ada", "reinforcement learning"), ("bob", "large language models")):
        assert digest("subscribers", "add", f"{who}@example.org", "-t", topic).exit_code == 0
    assert digest("subscribers", "add", "cy@example.org", "-t", "agents").exit_code == 0
    yield {"digest": digest, "env": env, "sink": smtp_sink, "feeds": feeds}
    feeds.close()


def mails_to(sink, address: str) -> int:
    return sum(r.recipient == address for r in sink.handler.received)


def test_a_partial_run_is_recorded_checked_scraped_alerted_once_then_clears(site: dict) -> None:
    digest, sink = site["digest"], site["sink"]
    first = digest("run", "--now")
    assert first.exit_code == 1, first.output
    assert first.output.count("Connection refused") + first.output.count("refused") >= 2
    runs = json.loads(digest("runs", "--format", "json").output)
    newest = runs[0]
    assert newest["status"] == "partial" and newest["trigger"] == "command"
    by_source = {s["source"]: s for s in newest["sources"]}
    assert by_source["hf"]["ok"] and by_source["hf"]["new"] > 0
    assert by_source["hf"]["http_status"] == 200
    assert not by_source["arxiv-rss"]["ok"] and by_source["arxiv-rss"]["error"]
    assert (newest["sent"], newest["bounced"], newest["retrying"]) == (1, 1, 1)
    assert digest("runs", "show", str(newest["id"])).output.startswith(
        f"run {newest['id']}: partial"
    )

    check = digest("status", "--check")
    assert check.exit_code == 1 and f"run {newest['id']} partial" in check.output

    settings = load_settings(data_dir=Path(site["env"]["DIGEST_DATA_DIR"]))
    store = Storage.open(settings.resolved_database_url)
    client = create_app(settings, store, fakeredis.FakeRedis()).test_client()
    scraped = {
        f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(True))
    }
    for name in (
        "digest_last_run_timestamp_seconds",
        "digest_last_run_status",
        "digest_last_run_duration_seconds",
        "digest_last_run_deliveries",
        "digest_source_last_success_timestamp_seconds",
        "digest_source_consecutive_failures",
        "digest_deliveries_waiting",
        "digest_deliveries",
        "digest_subscribers",
    ):
        assert name in scraped, name
    status = {s.labels["status"]: s.value for s in scraped["digest_last_run_status"].samples}
    assert status["partial"] == 1.0 and status["ok"] == 0.0
    failing = {
        s.labels["source"]: s.value for s in scraped["digest_source_consecutive_failures"].samples
    }
    assert failing == {"hf": 0.0, "arxiv-rss": 1.0, "arxiv-api": 1.0}

    for n in range(3):  # the sources stay down: alerted once, not once per run
        digest("subscribers", "add", f"new{n}@example.org", "-t", "reinforcement learning")
        digest("run", "--now")  # a run fetches only when someone is due
    assert mails_to(sink, ADMIN) == 1
    alert = [r for r in sink.handler.received if r.recipient == ADMIN][0].message()
    body = alert.get_body(("plain",)).get_content()
    assert "arxiv-rss failed 3 runs in a row" in body and "digest runs show" in body

    sink.handler.rcpt_reply = None
    feeds, env = site["feeds"], site["env"]
    feeds.script(
        "/rss/cs.LG+cs.AI+cs.CL+cs.CV+stat.ML",
        Reply(200, (FEEDS / "arxiv_rss_cs.CL_2026-08-01_weekend_empty.xml").read_bytes()),
    )
    feeds.script(
        "/arxiv", Reply(200, (FEEDS / "arxiv_api_empty_result_2026-04-12.xml").read_bytes())
    )
    env["DIGEST_ARXIV_RSS_URL"], env["DIGEST_ARXIV_API_URL"] = (
        f"{feeds.url}/rss",
        f"{feeds.url}/arxiv",
    )
    digest("subscribers", "add", "dan@example.org", "-t", "reinforcement learning")
    clean = digest("run", "--now")
    assert clean.exit_code == 0, clean.output
    assert (
        json.loads(digest("runs", "--format", "json", "--limit", "1").output)[0]["status"] == "ok"
    )
    assert digest("status", "--check").exit_code == 0


def test_metrics_can_be_off_or_need_a_bearer_token(settings, store: Storage) -> None:
    off = create_app(settings.model_copy(update={"metrics": False}), store, fakeredis.FakeRedis())
    assert off.test_client().get("/metrics").status_code == 404
    guarded = create_app(
        settings.model_copy(update={"metrics_token": "s3cret"}), store, fakeredis.FakeRedis()
    ).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = guarded.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200 and "digest_subscribers" in answer.get_data(True)


def test_with_every_source_down_no_digest_pretends_the_day_was_quiet(site: dict) -> None:
    """Nothing fetched is not "nothing new": the readers' digests are held back, the run is
    `failed`, and a later run with a source back plans them as usual."""
    digest, sink, env = site["digest"], site["sink"], site["env"]
    # papers stored before (an arXiv search: old, so nothing new), then every source down
    old = FEEDS / "arxiv_api_search_testing_2026-04-12.xml"
    assert digest("fetch", "--from-file", str(old)).exit_code == 0
    working_hf = env["DIGEST_HF_API_URL"]
    env["DIGEST_HF_API_URL"] = env["DIGEST_ARXIV_API_URL"]  # the closed port too
    down = digest("run", "--now")
    assert down.exit_code == 1, down.output
    readers = [r for r in sink.handler.received if r.recipient != ADMIN]
    assert readers == [], "no digest saying the day was quiet"
    assert mails_to(sink, ADMIN) == 1, "a failed run alerts the admin"
    newest = json.loads(digest("runs", "--format", "json").output)[0]
    assert newest["status"] == "failed", newest
    assert not any(s["ok"] for s in newest["sources"])
    env["DIGEST_HF_API_URL"] = working_hf
    digest("run", "--now")
    assert mails_to(sink, "ada@example.org") == 1, "planned once a source is back"
