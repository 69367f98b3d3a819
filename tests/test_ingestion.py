"""Fetch -> parse -> store against a local HTTP server serving the recorded feeds."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner
from conftest import FEEDS
from feed_server import FeedServer, Reply
from sqlalchemy import text

from digest.cli import cli
from digest.fetching import Fetcher
from digest.ingestion import (
    fetch_all,
    ingest_bundled_sample,
    ingest_bytes,
    look_up_papers,
    require_topic_papers,
    source_url,
)
from digest.settings import Settings
from digest.sources import ARXIV_API, ARXIV_RSS, HF, parse_response
from digest.storage import Storage
from digest.subscriptions import InvalidInput, build_subscriber_input

HF_BODY = (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()
RSS_BODY = (FEEDS / "arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml").read_bytes()
API_BODY = (FEEDS / "arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml").read_bytes()
API_ERROR = (FEEDS / "arxiv_api_error_http400_bad_id_2026-04-12.xml").read_bytes()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer()
    yield srv
    srv.close()


@pytest.fixture
def live(settings: Settings, server: FeedServer) -> Settings:
    return settings.model_copy(
        update={
            "hf_api_url": server.url + "/api/daily_papers",
            "arxiv_rss_url": server.url + "/rss",
            "arxiv_api_url": server.url + "/api/query",
        }
    )


def ids_in(body: bytes) -> set[str]:
    return {p.arxiv_id for p in parse_response(body).papers}


def quick_fetcher() -> Fetcher:
    return Fetcher(timeout=2, retries=1, backoff=0.01, host_intervals={})


def fetch(store: Storage, settings: Settings) -> dict[str, object]:
    with quick_fetcher() as fetcher:
        return {
            r.source: r
            for r in fetch_all(
                store.papers, settings, categories=["cs.LG", "cs.AI"], fetcher=fetcher
            )
        }


def test_urls_for_each_source(settings: Settings) -> None:
    import datetime as dt

    day = dt.date(2026, 11, 23)
    assert (
        source_url(settings, HF, day, [])
        == "https://huggingface.co/api/daily_papers?date=2026-11-23"
    )
    assert (
        source_url(settings, ARXIV_RSS, None, ["cs.LG", "cs.CL"])
        == "https://rss.arxiv.org/rss/cs.LG+cs.CL"
    )
    api = source_url(settings, ARXIV_API, day, ["cs.LG"])
    assert (
        "search_query=%28cat%3Acs.LG%29+AND+submittedDate%3A%5B202611230000+TO+202611232359%5D"
        in api
    )


def test_all_sources_land_merged_and_a_second_run_changes_nothing(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    server.script("/api/daily_papers", Reply(200, HF_BODY))
    server.script("/rss/cs.LG+cs.AI", Reply(200, RSS_BODY))
    server.script("/api/query", Reply(200, API_BODY))
    first = fetch(store, live)
    assert [r.error for r in first.values()] == [None, None, None]
    assert (first[HF].new, first[ARXIV_RSS].new, first[ARXIV_RSS].skipped) == (
        25,
        3,
        1,
    )  # 1 replacement
    # papers the HF page already brought are merged, not duplicated
    overlap = len(ids_in(HF_BODY) & ids_in(API_BODY))
    assert overlap > 0
    assert (first[ARXIV_API].fetched, first[ARXIV_API].new, first[ARXIV_API].updated) == (
        50,
        50 - overlap,
        overlap,
    )
    assert store.papers.count() == 25 + 3 + 50 - overlap
    merged = store.papers.find(ids=["2607.09657"])[0]
    assert merged.sources == [ARXIV_API, HF] and merged.upvotes is not None and merged.categories

    second = fetch(store, live)
    assert [(r.new, r.updated) for r in second.values()] == [(0, 0), (0, 0), (0, 0)]
    assert store.papers.count() == 25 + 3 + 50 - overlap


def test_conditional_get_on_the_next_run(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    server.script("/rss/cs.LG+cs.AI", Reply(200, RSS_BODY, {"ETag": '"abc"'}), Reply(304))
    server.script("/api/daily_papers", Reply(200, b"[]"))
    server.script(
        "/api/query", Reply(200, (FEEDS / "arxiv_api_empty_result_2026-04-12.xml").read_bytes())
    )
    fetch(store, live)
    second = fetch(store, live)
    assert second[ARXIV_RSS].not_modified
    assert server.requests["/rss/cs.LG+cs.AI"][1]["If-None-Match"] == '"abc"'


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(400, API_ERROR), "HTTP 400: arXiv API error: incorrect id format for abc"),
        (Reply(200, b"<html><body>Rate limited</body></html>"), "got an HTML page"),
        (Reply(200, API_BODY[:5000]), "malformed feed"),
        (Reply(503), "HTTP 503 after 2 attempts"),
        (Reply(200, b"[]", delay=3), "ReadTimeout"),
    ],
)
def test_a_broken_source_reports_why_and_the_others_still_land(
    store: Storage, live: Settings, server: FeedServer, reply: Reply, reason: str
) -> None:
    server.script("/api/daily_papers", Reply(200, HF_BODY))
    server.script("/rss/cs.LG+cs.AI", Reply(200, RSS_BODY))
    server.script("/api/query", reply)
    reports = fetch(store, live)
    assert reason in (reports[ARXIV_API].error or "")
    assert reports[HF].new == 25 and reports[ARXIV_RSS].new == 3
    assert store.papers.count() == 28


VALIDATORS = {"ETag": '"v1"', "Last-Modified": "Mon, 23 Nov 2026 00:00:00 GMT"}


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(Reply(200, b"<html><body>Rate limited</body></html>", VALIDATORS), id="html"),
        pytest.param(Reply(400, API_ERROR, VALIDATORS), id="http-400"),
    ],
)
def test_the_validators_of_a_response_that_was_not_stored_are_not_kept(
    store: Storage, live: Settings, server: FeedServer, refused: Reply
) -> None:
    """An ETag stands for a body whose papers are stored. Kept for a body that failed, the
    next request would be conditional, and the server's 304 would hide papers never stored."""
    server.script("/rss/cs.LG+cs.AI", refused, Reply(200, RSS_BODY, {"ETag": '"v2"'}))
    with quick_fetcher() as fetcher:
        (first,) = fetch_all(
            store.papers, live, (ARXIV_RSS,), categories=["cs.LG", "cs.AI"], fetcher=fetcher
        )
        (second,) = fetch_all(
            store.papers, live, (ARXIV_RSS,), categories=["cs.LG", "cs.AI"], fetcher=fetcher
        )
    assert first.error and not second.error and second.new == 3
    retried = server.requests["/rss/cs.LG+cs.AI"][1]
    assert "If-None-Match" not in retried and "If-Modified-Since" not in retried


ANNOUNCED = frozenset({"new", "cross"})


def second_paper_titled_like_the_first(body: bytes) -> tuple[bytes, str, str]:
    """A recorded response edited so that its second paper has the first one's title, as
    happens on arXiv (errata, replies, "A note on ..."): derived from the recorded file, the
    rest of it untouched. Returns the body and the two papers' ids."""
    first, second = [
        p for p in parse_response(body).papers if p.announce_type in (None, *ANNOUNCED)
    ][:2]
    if body.lstrip().startswith(b"["):  # Hugging Face's JSON
        items = json.loads(body)
        for item in items:
            if item["paper"]["id"] == second.arxiv_id:
                item["title"] = item["paper"]["title"] = first.title
        return json.dumps(items).encode(), first.arxiv_id, second.arxiv_id
    old, new = (f"<title>{escape(p.title)}</title>".encode() for p in (second, first))
    assert body.count(old) == 1, "the derivation edits exactly one title"
    return body.replace(old, new), first.arxiv_id, second.arxiv_id


@pytest.mark.parametrize(
    "recorded",
    [
        "hf_daily_papers_2026-07-13.json",
        "arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml",
        "arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml",
    ],
)
def test_two_papers_sharing_a_title_are_both_stored(store: Storage, recorded: str) -> None:
    """Papers are merged by arXiv id, never by title."""
    original = (FEEDS / recorded).read_bytes()
    body, first, second = second_paper_titled_like_the_first(original)
    kept = {
        p.arxiv_id for p in parse_response(original).papers if p.announce_type in (None, *ANNOUNCED)
    }
    report = ingest_bytes(store.papers, body, recorded, ANNOUNCED)
    assert report.error is None and report.new == store.papers.count() == len(kept)
    papers = {p.arxiv_id: p.title for p in store.papers.find(ids=[first, second])}
    assert papers[first] == papers[second]


def test_empty_weekend_feed_is_not_an_error(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    server.script(
        "/rss/cs.LG+cs.AI",
        Reply(200, (FEEDS / "arxiv_rss_cs.CL_2026-08-01_weekend_empty.xml").read_bytes()),
    )
    with quick_fetcher() as fetcher:
        (report,) = fetch_all(
            store.papers, live, (ARXIV_RSS,), categories=["cs.LG", "cs.AI"], fetcher=fetcher
        )
    assert report.error is None and report.fetched == 0


def test_announce_types_are_configurable(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    server.script("/rss/cs.LG+cs.AI", Reply(200, RSS_BODY))
    with_replacements = live.model_copy(update={"arxiv_announce_types": "new,cross,replace"})
    with quick_fetcher() as fetcher:
        (report,) = fetch_all(
            store.papers,
            with_replacements,
            (ARXIV_RSS,),
            categories=["cs.LG", "cs.AI"],
            fetcher=fetcher,
        )
    assert (report.new, report.skipped) == (4, 0)


def test_bundled_sample_loads_offline(store: Storage) -> None:
    reports = ingest_bundled_sample(store.papers, frozenset({"new", "cross"}))
    assert all(r.error is None for r in reports)
    assert store.papers.count() >= 60


def test_cli_fetch_from_files_prints_per_source_lines_and_fails_on_errors(
    settings: Settings,
) -> None:
    runner = CliRunner()
    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}
    ok = runner.invoke(
        cli, ["fetch", "--from-file", str(FEEDS / "hf_daily_papers_2026-07-13.json")], env=env
    )
    assert ok.exit_code == 0, ok.output
    assert "fetched 25, new 25, updated 0, skipped 0" in ok.output
    again = runner.invoke(
        cli, ["fetch", "--from-file", str(FEEDS / "hf_daily_papers_2026-07-13.json")], env=env
    )
    assert "fetched 25, new 0, updated 0, skipped 0" in again.output
    bad = runner.invoke(
        cli,
        [
            "fetch",
            "--from-file",
            str(FEEDS / "arxiv_api_error_http400_bad_id_2026-04-12.xml"),
            "--from-file",
            str(FEEDS / "arxiv_rss_rdf_cs_2018-08-30.xml"),
        ],
        env=env,
    )
    assert bad.exit_code == 1
    assert "ERROR arXiv API error: incorrect id format for abc" in bad.output
    assert "fetched 185, new 111, updated 0, skipped 74" in bad.output
    listing = runner.invoke(cli, ["papers", "--format", "json", "--limit", "500"], env=env)
    assert len(__import__("json").loads(listing.output)) == 25 + 111


def test_cli_papers_filters_by_topic_relevance(settings: Settings) -> None:
    import json

    runner = CliRunner()
    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}
    runner.invoke(
        cli, ["fetch", "--from-file", str(FEEDS / "hf_daily_papers_2026-07-13.json")], env=env
    )
    result = runner.invoke(
        cli, ["papers", "--topic", "Reinforcement Learning", "--format", "json"], env=env
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert 0 < len(found) < 25, "a topic filter, not the whole store"
    assert all("reinforcement" in (p["title"] + p["abstract"]).lower() for p in found)


def test_cli_fetch_embeds_the_new_candidates_once_so_ranking_only_reads_them(
    settings: Settings, encoder
) -> None:
    from digest import semantic
    from digest.ranking import paper_passage

    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}
    result = CliRunner().invoke(
        cli, ["fetch", "--from-file", str(FEEDS / "hf_daily_papers_2026-07-13.json")], env=env
    )
    assert result.exit_code == 0, result.output
    store = Storage.from_url(settings.resolved_database_url)
    keys = [semantic.vector_key(paper_passage(p)) for p in store.papers.find()]
    assert len(keys) == 25 and len(store.papers.load_vectors(keys)) == 25


# -- "more like this paper" topics: papers looked up by id --------------------------------------

LOOKUP_BODY = (FEEDS / "arxiv_api_id_astro-ph_0601001_2026-05-11.xml").read_bytes()
EMPTY_BODY = (FEEDS / "arxiv_api_empty_result_2026-04-12.xml").read_bytes()


def test_a_paper_named_by_a_topic_is_looked_up_once_and_is_not_news(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    server.script("/api/query", Reply(200, LOOKUP_BODY))
    with quick_fetcher() as fetcher:
        assert look_up_papers(store.papers, live, {"astro-ph/0601001"}, fetcher) == set()
        (paper,) = store.papers.find(ids=["astro-ph/0601001"])
        assert paper.title.startswith("Frequency of Hot Jupiters")
        assert paper.first_seen_at == paper.published_at, "an old paper is not today's candidate"
        assert store.papers.find(since=dt.datetime(2026, 1, 1)) == []
        look_up_papers(store.papers, live, {"astro-ph/0601001"}, fetcher)
    assert len(server.requests["/api/query"]) == 1, "a stored paper is not asked for again"


def test_an_id_arxiv_does_not_know_is_named(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    server.script("/api/query", Reply(200, EMPTY_BODY))
    with quick_fetcher() as fetcher:
        assert look_up_papers(store.papers, live, {"2699.99999"}, fetcher) == {"2699.99999"}
        with pytest.raises(InvalidInput, match="arXiv has no paper 2699.99999"):
            require_topic_papers(store.papers, live, ["rl", "arxiv:2699.99999"], fetcher)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(400, API_ERROR), "HTTP 400: arXiv API error: incorrect id format for abc"),
        (Reply(503), "HTTP 503"),
    ],
)
def test_when_arxiv_cannot_be_asked_the_error_says_so(
    store: Storage, live: Settings, server: FeedServer, reply: Reply, reason: str
) -> None:
    server.script("/api/query", reply)
    with quick_fetcher() as fetcher, pytest.raises(InvalidInput) as caught:
        look_up_papers(store.papers, live, {"2607.07953"}, fetcher)
    assert f"could not look up paper 2607.07953 on arXiv: {reason}" in str(caught.value)
    assert "try again in a few minutes" in caught.value.plain


def test_offline_a_paper_not_stored_is_a_clear_error(store: Storage, settings: Settings) -> None:
    offline = settings.model_copy(update={"offline": True})
    with pytest.raises(InvalidInput, match="2607.07953 is not stored here and DIGEST_OFFLINE"):
        look_up_papers(store.papers, offline, {"2607.07953"})


def test_an_import_rejects_the_rows_naming_papers_arxiv_does_not_have(
    settings: Settings, server: FeedServer, tmp_path
) -> None:
    server.script("/api/query", Reply(200, LOOKUP_BODY))  # knows astro-ph/0601001 only
    people = tmp_path / "people.csv"
    people.write_text(
        "email,topics\n"
        "ada@example.org,exoplanets;https://arxiv.org/abs/astro-ph/0601001\n"
        "bob@example.org,2699.99999\n"
        "cy@example.org,rl\n"
    )
    env = {
        "DIGEST_DATA_DIR": str(settings.data_dir),
        "DIGEST_ARXIV_API_URL": server.url + "/api/query",
    }
    result = CliRunner().invoke(cli, ["subscribers", "import", str(people)], env=env)
    assert result.exit_code == 1
    assert "bob@example.org: rejected: arXiv has no paper 2699.99999" in result.output
    assert "created 2," in result.output and "rejected 1" in result.output
    assert len(server.requests["/api/query"]) == 1, "one look-up for the whole file"


# -- one hostile paper must not cost the others -------------------------------------------------


def test_a_nul_byte_in_the_hf_file_loses_no_other_paper_and_the_digests_go_out(
    store: Storage, db_url: str, settings: Settings, server: FeedServer
) -> None:
    """PostgreSQL refuses NUL in text: once it failed the whole file, the run and every
    source after it. A raw NUL (which strict JSON refuses) and an escaped one."""
    hf = HF_BODY.replace(b"MedPMC: A Systematic", b"Med\\u0000PMC: A Systematic").replace(
        b"Long-Horizon-Terminal-Bench", b"Long-Horizon\x00-Terminal-Bench"
    )
    for email, topic in (("ada@example.org", "medical imaging"), ("bob@example.org", "agents")):
        store.subscribers.add(build_subscriber_input(email, [topic]), settings.subscriber_defaults)
    server.script("/api/daily_papers", Reply(200, hf))
    # the recorded RSS listing is from September: as the newest listing it would end the
    # window of new papers there, past these July papers; unchanged (304), it lists nothing
    server.script("/rss/cs.LG+cs.AI", Reply(304))
    server.script("/api/query", Reply(200, API_BODY))
    env = {
        "DIGEST_DATA_DIR": str(settings.data_dir),
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_HF_API_URL": server.url + "/api/daily_papers",
        "DIGEST_ARXIV_RSS_URL": server.url + "/rss",
        "DIGEST_ARXIV_API_URL": server.url + "/api/query",
        "DIGEST_ARXIV_CATEGORIES": "cs.LG+cs.AI",
        "DIGEST_SEMANTIC": "false",
    }
    result = CliRunner().invoke(cli, ["run", "--now"], env=env)
    assert result.exit_code == 0, result.output
    assert "fetched 25, new 25" in result.output and "ERROR" not in result.output
    assert "digests sent: 2" in result.output
    overlap = len(ids_in(HF_BODY) & ids_in(API_BODY))
    assert store.papers.count() == 25 + 50 - overlap
    titles = {p.arxiv_id: p.title for p in store.papers.find(ids=["2607.07673", "2607.08964"])}
    assert titles["2607.07673"].startswith("MedPMC: A Systematic")
    assert titles["2607.08964"].startswith("Long-Horizon-Terminal-Bench")


def refuse_titles_with(store: Storage, word: str) -> None:
    """Make the database refuse to store any paper whose title holds ``word``: a failure
    to store that no parser foresaw."""
    with store.db.engine.begin() as conn:
        if store.db.engine.dialect.name == "postgresql":
            conn.execute(
                text(f"ALTER TABLE papers ADD CONSTRAINT refused CHECK (title NOT LIKE '%{word}%')")
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER refused BEFORE INSERT ON papers WHEN NEW.title LIKE '%{word}%' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )


def test_a_source_that_cannot_be_stored_is_that_sources_error_and_the_others_land(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    refuse_titles_with(store, "MedPMC")
    server.script("/api/daily_papers", Reply(200, HF_BODY))
    server.script("/rss/cs.LG+cs.AI", Reply(200, RSS_BODY))
    server.script("/api/query", Reply(200, API_BODY))
    reports = fetch(store, live)
    assert reports[HF].error is not None and reports[HF].error.startswith("could not store")
    assert "\n" not in reports[HF].error and len(reports[HF].error) < 300
    assert (reports[ARXIV_RSS].error, reports[ARXIV_RSS].new) == (None, 3)
    assert (reports[ARXIV_API].error, reports[ARXIV_API].fetched) == (None, 50)


def test_a_lists_arxiv_query_is_fetched_and_recorded_in_its_papers_sources(
    store: Storage, live: Settings, server: FeedServer
) -> None:
    """A list's ``arxiv-query:...`` source runs through the arXiv API with its own search, and
    each paper it finds carries the query among its sources: that is how the list finds them
    (#34). Its report is named by the query."""
    from digest.lists import from_sources

    server.script("/api/query", Reply(200, API_BODY))
    query = "arxiv-query:all:glacier AND cat:physics.ao-ph"
    with quick_fetcher() as fetcher:
        (report,) = fetch_all(store.papers, live, sources=(), fetcher=fetcher, queries=[query])
    assert (report.source, report.error, report.new) == (query, None, 50)
    assert "search_query=all%3Aglacier+AND+cat%3Aphysics.ao-ph" in report.url
    papers = store.papers.find(ids=sorted(ids_in(API_BODY)))
    assert all(query in p.sources and ARXIV_API in p.sources for p in papers)
    assert len(from_sources(papers, [query])) == 50
    assert from_sources(papers, ["arxiv-query:all:something else"]) == []
