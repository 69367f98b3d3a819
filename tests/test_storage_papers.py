"""Papers on SQLite and PostgreSQL: storing and merging, listing, text vectors, the
feeds' last fetch."""

from __future__ import annotations

import datetime as dt
import threading

from conftest import FEEDS, run_at_once

from digest.models import utcnow
from digest.sources import PaperRecord, parse_response
from digest.storage import Storage


def test_vectors_round_trip_keep_the_first_copy_and_are_pruned_by_age(store: Storage) -> None:
    store.papers.save_vectors({"a" * 64: b"\x00\x01", "b" * 64: b"\x02"})
    store.papers.save_vectors({"a" * 64: b"\xff", "c" * 64: b"\x03"})  # a second worker, same texts
    assert store.papers.load_vectors(["a" * 64, "c" * 64, "missing"]) == {
        "a" * 64: b"\x00\x01",
        "c" * 64: b"\x03",
    }
    assert store.papers.prune_vectors(utcnow() - dt.timedelta(days=1)) == 0
    assert store.papers.prune_vectors(utcnow() + dt.timedelta(seconds=1)) == 3
    assert store.papers.load_vectors(["a" * 64]) == {}


def test_two_runs_storing_the_same_new_papers_at_once_both_succeed(store: Storage) -> None:
    """A cron `run --now` and the beat tick fetch the same feed at the same moment."""
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    real_read = store.papers._papers_by_id
    both_read = threading.Barrier(2)

    def read_then_wait(session, ids):
        found = real_read(session, ids)
        both_read.wait(10)  # both runs saw the papers as new before either writes
        return found

    store.papers._papers_by_id = read_then_wait
    reports, errors = run_at_once(lambda _: store.papers.upsert(papers))
    assert errors == [] and store.papers.count() == len(papers)
    assert sum(r.created for r in reports) == len(papers), "each paper counted new once"
    assert [r.created + r.unchanged for r in reports] == [len(papers)] * 2, "the rest as given"


def test_the_last_fetch_is_the_newest_of_any_feed(store: Storage) -> None:
    """The tick fetches again only when this is older than the fetch interval."""
    assert store.papers.last_fetched_at() is None, "never fetched: fetch at once"
    store.papers.save_http_validators("https://a.example/feed", '"v1"', None)
    first = store.papers.last_fetched_at()
    store.papers.save_http_validators(
        "https://b.example/feed", None, "Mon, 30 Nov 2026 08:00:00 GMT"
    )
    assert first is not None and first <= store.papers.last_fetched_at() <= utcnow()
    assert store.papers.http_validators("https://b.example/feed") == (
        None,
        "Mon, 30 Nov 2026 08:00:00 GMT",
    )


def test_papers_are_listed_newest_first_seen_first_from_since_on(store: Storage) -> None:
    """`digest papers` and the candidates of a day: newest first, ties by id, ``since``
    itself included, at most ``limit``."""
    day = dt.datetime(2026, 7, 13, 8)
    seen = {
        "p1": day,
        "p3": day,
        "p2": day + dt.timedelta(hours=1),
        "p0": day - dt.timedelta(minutes=10),
    }
    store.papers.upsert(
        [PaperRecord(pid, f"Title {pid}", published_at=at) for pid, at in seen.items()],
        as_news=False,  # first seen when published: the test's own times
    )
    listed = [p.arxiv_id for p in store.papers.find(since=day)]
    assert listed == ["p2", "p1", "p3"]
    assert [p.arxiv_id for p in store.papers.find(limit=2)] == listed[:2]
    assert len(store.papers.find()) == 4


def test_one_batch_naming_a_new_paper_twice_stores_both_sources_facts(store: Storage) -> None:
    """A fetch gathers every feed before storing: arXiv's text and Hugging Face's upvotes of
    one new paper arrive in the same batch and make one row."""
    arxiv = PaperRecord("2607.00001", "Title", abstract="What it does.", sources=["arxiv_rss"])
    hf = PaperRecord("2607.00001", "Title", upvotes=12, sources=["hf_daily"])
    report = store.papers.upsert([arxiv, hf])
    (paper,) = store.papers.find()
    assert (report.created, paper.abstract, paper.upvotes) == (1, "What it does.", 12)
    assert paper.sources == ["arxiv_rss", "hf_daily"]


def test_storing_papers_again_reports_what_changed_and_touches_only_that(store: Storage) -> None:
    """A fetch re-reads feeds that still list yesterday's papers: only new facts are written,
    and the report says how many papers were new, updated and already as given."""
    day = [PaperRecord(f"2607.0000{n}", f"Title {n}", sources=["arxiv_rss"]) for n in range(4)]
    first = store.papers.upsert(day)
    stored = {p.arxiv_id: p for p in store.papers.find()}
    again = store.papers.upsert(day)
    voted = PaperRecord("2607.00001", "Title 1", upvotes=7, sources=["hf_daily"])
    mixed = store.papers.upsert([*day[2:], voted, PaperRecord("2607.00009", "New")])
    counts = [(r.created, r.updated, r.unchanged) for r in (first, again, mixed)]
    assert counts == [(4, 0, 0), (0, 0, 4), (1, 1, 2)]
    now = {p.arxiv_id: p for p in store.papers.find()}
    assert now["2607.00001"].upvotes == 7
    untouched = ("2607.00000", "2607.00002")
    assert {pid: now[pid] for pid in untouched} == {pid: stored[pid] for pid in untouched}
