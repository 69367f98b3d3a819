"""The embedded default, as the README's first command runs it: `digest run --now`."""

from __future__ import annotations

import gc
import re
from email import message_from_bytes
from email.policy import default

import lxml.html
import pytest
from click.testing import CliRunner

from digest import pipeline
from digest.cli import cli
from digest.models import utcnow
from digest.settings import Settings
from digest.sources import parse_response
from digest.storage import Storage


@pytest.fixture
def run(settings: Settings):
    runner = CliRunner()
    env = {"DIGEST_DATA_DIR": str(settings.data_dir), "DIGEST_OFFLINE": "true"}

    def invoke(*args: str, code: int = 0, **extra_env: str):
        result = runner.invoke(cli, list(args), env={**env, **extra_env}, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


def test_first_run_on_a_fresh_machine_sends_a_demo_digest_to_the_outbox_and_a_rerun_sends_nothing(
    run, settings: Settings
) -> None:
    first = run("run", "--now")
    assert "added demo@example.org" in first.output
    assert "fetched 25, new 23" in first.output, "the bundled sample papers are used offline"
    assert "subscribers due: 1, digests sent: 1" in first.output
    (eml,) = list(settings.outbox_dir.rglob("*.eml"))
    message = message_from_bytes(eml.read_bytes(), policy=default)
    assert message["To"] == "demo@example.org" and "new paper" in message["Subject"]
    assert str(settings.outbox_dir.resolve()) in first.output

    second = run("run", "--now")
    assert "subscribers due: 0, digests sent: 0" in second.output
    assert len(list(settings.outbox_dir.rglob("*.eml"))) == 1
    listing = run("deliveries").output
    assert "demo@example.org" in listing and "totals: sent 1" in listing


def test_run_with_an_admin_added_subscriber_uses_their_topics(run, settings: Settings) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "reinforcement learning")
    out = run("run", "--now").output
    assert "added demo" not in out and "digests sent: 1" in out
    (eml,) = list(settings.outbox_dir.rglob("*.eml"))
    assert (
        "reinforcement learning" in message_from_bytes(eml.read_bytes(), policy=default)["Subject"]
    )


def test_run_sends_through_smtp_when_configured(run, smtp_sink) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "medical imaging")
    out = run(
        "run", "--now", DIGEST_SMTP_HOST="127.0.0.1", DIGEST_SMTP_PORT=str(smtp_sink.port)
    ).output
    assert "digests sent: 1" in out and f"SMTP server 127.0.0.1:{smtp_sink.port}" in out
    assert [r.recipient for r in smtp_sink.handler.received] == ["ada@example.org"]


def test_run_reports_smtp_failures_and_retry_failed_requeues(run, smtp_sink) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "medical imaging")
    smtp_sink.handler.rcpt_reply = lambda _: "451 4.3.0 greylisted"
    smtp = {
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp_sink.port),
        "DIGEST_MAX_ATTEMPTS": "1",
    }
    out = run("run", "--now", code=1, **smtp).output
    assert (
        "digests sent: 0" in out
        and "failed: 1" in out
        and "1 digest(s) failed" in out
        and "451 4.3.0 greylisted" in out
    )
    assert "failed 1" in run("deliveries", "--status", "failed").output
    assert "1 failed deliveries queued again" in run("retry-failed").output
    smtp_sink.handler.rcpt_reply = None
    assert "digests sent: 1" in run("run", "--now", **smtp).output


def test_preview_and_send_test(run, smtp_sink, tmp_path) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "reinforcement learning")
    run(
        "fetch",
        "--from-file",
        str(__import__("conftest").FEEDS / "hf_daily_papers_2026-07-13.json"),
    )
    out = tmp_path / "d.html"
    preview = run(
        "preview", "ada@example.org", "--out", str(out), "--eml", str(tmp_path / "d.eml")
    ).output
    assert "Subject: " in preview and "Matches “reinforcement learning” in the abstract" in preview
    assert out.read_text().startswith("<!DOCTYPE html>") and (tmp_path / "d.eml").exists()
    sent = run(
        "send-test",
        "someone@example.org",
        "-t",
        "medical imaging",
        DIGEST_SMTP_HOST="127.0.0.1",
        DIGEST_SMTP_PORT=str(smtp_sink.port),
    ).output
    assert "sent " in sent and [r.recipient for r in smtp_sink.handler.received] == [
        "someone@example.org"
    ]


def test_run_now_fails_when_a_digest_could_not_be_sent_and_says_when_it_retries(
    run, settings: Settings, smtp_sink
) -> None:
    smtp_sink.handler.rcpt_reply = lambda _: "451 4.3.0 try later"
    smtp = {"DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp_sink.port)}
    failed = run("run", "--now", code=1, **smtp)
    assert "to retry: 1" in failed.output and "next retry at" in failed.output
    assert "messages went to" not in failed.output
    listing = run("deliveries", "--status", "queued").output
    assert "451 4.3.0 try later" in listing and "totals: queued 1" in listing

    smtp_sink.handler.rcpt_reply = None
    later = run("retry-failed").output  # nothing failed for good: the retry is already queued
    assert "0 failed deliveries" in later


def test_a_sent_digest_carries_what_hugging_face_shows_trending_and_quiet_topics(
    run, settings: Settings
) -> None:
    """From the bundled recorded HF response through storage, ranking and delivery to the
    .eml: project link, upvotes and comments, the AI summary, a topic with nothing new, and
    the Trending today section."""
    topics = ("multi-agent traffic simulation", "lattice quantum chromodynamics")
    run("subscribers", "add", "ada@example.org", *(a for t in topics for a in ("-t", t)))
    run("run", "--now")
    (eml,) = list(settings.outbox_dir.rglob("*.eml"))
    message = message_from_bytes(eml.read_bytes(), policy=default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert " on multi-agent traffic simulation - " in message["Subject"], "the topic with picks"
    assert 'href="https://seulbinhwang.github.io/flow-erd-project-page/"' in html
    assert "3 upvotes" in html and "2 comments" in html
    assert "Flow-ERD is a multi-agent traffic simulator" in html
    assert "Nothing new on lattice quantum chromodynamics today." in text
    assert "TRENDING TODAY" in text and ">Trending today<" in html
    assert "0 upvotes" not in html + text


def test_the_cyclic_collector_rests_while_a_tick_plans_and_comes_back_after(
    store: Storage, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def plan(*args, **kwargs):
        seen.append(gc.isenabled())
        return 0, 0, []

    monkeypatch.setattr(pipeline, "plan_deliveries", plan)
    assert gc.isenabled()
    pipeline.run_tick(store, settings, utcnow(), lambda batch: None)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        pipeline.run_tick(store, settings, utcnow(), lambda batch: None)
        assert not gc.isenabled(), "a caller that had it off keeps it off"
    finally:
        gc.enable()


def test_a_plan_racing_another_tick_writes_only_the_missing_rows_and_counts_the_skipped(
    store: Storage, settings: Settings
) -> None:
    """Rows are made as storage reads them; when another tick already wrote one of them
    (two beats by mistake), storage reads the plan again and writes only the rest."""

    from dataclasses import replace

    from digest.ingestion import ingest_bundled_sample
    from digest.records import NewDelivery, SubscriberDefaults
    from digest.subscriptions import build_subscriber_input

    ingest_bundled_sample(store.papers, settings.announce_types)
    defaults = SubscriberDefaults(timezone="UTC", send_hour=7, max_papers=5)
    ada, bob, eve = (
        store.subscribers.add(build_subscriber_input(email, [topic]), defaults)
        for email, topic in [
            ("ada@example.org", "large language models"),
            ("bob@example.org", "reinforcement learning"),
            ("eve@example.org", "medieval tapestry weaving"),
        ]
    )
    now = utcnow()
    edition = now.date()
    _, (earlier,) = store.deliveries.create([NewDelivery(ada.id, edition, [{"arxiv_id": "x"}])])

    due = [(ada, edition), (bob, edition), (replace(eve, show_trending=False), edition)]
    created, skipped, queued = pipeline.plan_deliveries(store, settings, due, now)

    rows = {d.email: d for d in store.deliveries.find(edition=edition)}
    assert (created, skipped) == (2, 1), "bob queued, eve skipped: nothing matches or trends"
    assert queued == [rows["bob@example.org"].id] and rows["bob@example.org"].picks
    assert rows["eve@example.org"].status == "skipped"
    assert rows["ada@example.org"].id == earlier, "the other tick's row is left alone"
    assert rows["ada@example.org"].picks == [{"arxiv_id": "x"}]


def test_run_now_takes_a_permit_for_every_message(
    run, smtp_sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`digest run --now` sends at DIGEST_RATE_LIMIT_PER_SECOND like the workers: the real
    limiter, counted as it grants each message its permit."""
    from digest import limits
    from digest.limits import RateLimiter

    permits: list[float] = []

    class CountedLimiter(RateLimiter):
        def wait(self) -> None:
            super().wait()
            permits.append(self.per_window / self.window_seconds)

    monkeypatch.setattr(limits, "RateLimiter", CountedLimiter)  # the command imports it late
    for email in ("ada@example.org", "bob@example.org"):
        run("subscribers", "add", email, "-t", "medical imaging")
    smtp = {"DIGEST_SMTP_HOST": "127.0.0.1", "DIGEST_SMTP_PORT": str(smtp_sink.port)}
    result = run("run", "--now", DIGEST_SEMANTIC="false", DIGEST_RATE_LIMIT_PER_SECOND="40", **smtp)
    assert "digests sent: 2" in result.output
    assert permits == [40.0, 40.0], "one permit per message, at the configured rate"


def test_a_searchs_years_old_papers_are_not_todays_news(run, settings: Settings) -> None:
    """An arXiv search beside the day's listing: its 2012-2025 papers are first seen today,
    but not announced today, so no digest calls them new."""
    from conftest import FEEDS

    day, search = (
        FEEDS / "hf_daily_papers_2026-07-13.json",
        FEEDS / "arxiv_api_search_testing_2026-04-12.xml",
    )
    run("fetch", "--from-file", str(day))
    run("fetch", "--from-file", str(search))
    store = Storage.from_url(settings.resolved_database_url)
    try:
        candidates = pipeline.candidate_papers(store, settings, utcnow())
    finally:
        store.dispose()
    assert {p.arxiv_id for p in candidates} == {
        p.arxiv_id for p in parse_response(day.read_bytes()).papers
    }


def test_the_demo_replays_its_recorded_day(run, settings: Settings) -> None:
    """The bundled sample is one recorded day: all of it is that day's news."""
    out = run("run", "--now").output
    (eml,) = list(settings.outbox_dir.rglob("*.eml"))
    text = message_from_bytes(eml.read_bytes(), policy=default).get_body(("plain",)).get_content()
    assert "Nothing new matched" not in text and "Jul 1" in text, out


def test_deliveries_count_the_picks_as_the_mail_does_and_trending_apart(
    run, settings: Settings
) -> None:
    run("run", "--now")
    (eml,) = list(settings.outbox_dir.rglob("*.eml"))
    subject = message_from_bytes(eml.read_bytes(), policy=default)["Subject"]
    picks = int(re.search(r"(\d+) new paper", subject).group(1))
    listing = run("deliveries").output
    header, row = listing.splitlines()[0], listing.splitlines()[2]
    assert "trending" in header
    assert re.search(rf"\bsent\s+{picks}\s+3\b", row), listing


def test_a_followed_author_or_an_exclusion_with_nothing_today_is_no_quiet_line(
    run, settings: Settings
) -> None:
    """Someone followed publishes a few times a year: "Nothing new on Yann LeCun today" in
    every digest would be noise, and an exclusion is never news. A subject is still said."""
    topics = ("agents", "lattice quantum chromodynamics", "author: Yann LeCun", "-surveys")
    run("subscribers", "add", "ada@example.org", *(a for t in topics for a in ("-t", t)))
    run("run", "--now")
    (eml,) = list(settings.outbox_dir.rglob("*.eml"))
    message = message_from_bytes(eml.read_bytes(), policy=default)
    html = lxml.html.fromstring(message.get_body(("html",)).get_content())
    text = message.get_body(("plain",)).get_content()
    quiet = "Nothing new on lattice quantum chromodynamics today."
    assert [box.text_content() for box in html.find_class("quiet-topics")] == [quiet]
    assert [line for line in text.splitlines() if line.startswith("Nothing new")] == [quiet]
