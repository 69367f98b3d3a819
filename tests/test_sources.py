"""Every recorded response in tests/fixtures/feeds parses into correct records (see SCHEMA.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import unicodedata

import pytest
from conftest import FEEDS

from digest.sources import (
    ARXIV_API,
    ARXIV_RSS,
    HF,
    HF_RSS,
    PaperRecord,
    SourceError,
    clean_text,
    detect_format,
    merge_paper,
    parse_arxiv_id,
    parse_response,
    split_authors,
)


def edited(name: str, *changes: tuple[str, str]) -> bytes:
    """A recorded response with a few of its elements changed, each change made exactly once."""
    text = (FEEDS / name).read_text(encoding="utf-8")
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} is not in {name} exactly once"
        text = text.replace(old, new)
    return text.encode("utf-8")


def parse(name: str) -> dict[str, PaperRecord]:
    result = parse_response((FEEDS / name).read_bytes())
    assert result.skipped == []
    return {paper.arxiv_id: paper for paper in result.papers}


@pytest.mark.parametrize(
    ("name", "fmt", "count"),
    [
        ("hf_daily_papers_2026-07-13.json", HF, 25),
        ("hf_daily_papers_2026-07-31_trimmed_pretty.json", HF, 5),
        ("arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml", ARXIV_RSS, 4),
        ("arxiv_rss_astro-ph.EP_2026-08-05_trimmed_reserialized.xml", ARXIV_RSS, 8),
        ("arxiv_rss_cs.CL_2026-08-01_weekend_empty.xml", ARXIV_RSS, 0),
        ("arxiv_rss_rdf_cs_2018-08-30.xml", ARXIV_RSS, 185),
        ("arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml", ARXIV_API, 50),
        ("arxiv_api_search_testing_2026-04-12.xml", ARXIV_API, 10),
        ("arxiv_api_id_astro-ph_0601001_2026-05-11.xml", ARXIV_API, 1),
        ("arxiv_api_empty_result_2026-04-12.xml", ARXIV_API, 0),
        ("arxiv_api_legacy_deep_dream_2017-05-14.xml", ARXIV_API, 10),
        ("hf_papers_rss_community_michaelmarkert_2026-08-22.xml", HF_RSS, 26),
    ],
)
def test_every_fixture_is_detected_and_parsed_completely(name: str, fmt: str, count: int) -> None:
    body = (FEEDS / name).read_bytes()
    assert detect_format(body) == fmt
    papers = parse(name)
    assert len(papers) == count
    for paper in papers.values():
        assert parse_arxiv_id(paper.arxiv_id) == (paper.arxiv_id, None), "ids carry no version"
        assert paper.title and paper.title == paper.title.strip() and "\n" not in paper.title
        assert "  " not in paper.abstract and "<p>" not in paper.abstract


def test_hf_daily_papers_fields() -> None:
    papers = parse("hf_daily_papers_2026-07-13.json")
    top = papers["2601.16211"]  # an older paper on a July page
    assert top.upvotes == 48
    assert top.hf_url == "https://huggingface.co/papers/2601.16211"
    assert top.sources == [HF]
    medpmc = papers["2607.07673"]
    assert medpmc.title.startswith("MedPMC: A Systematic Framework")
    assert medpmc.authors[:2] == ["Hyunjae Kim", "Dain Kim"]
    assert medpmc.upvotes == 0
    assert medpmc.published_at == dt.datetime(2026, 7, 8)
    with_ai = [p for p in papers.values() if p.ai_summary]
    assert len(with_ai) == 10 and all(p.ai_keywords for p in with_ai)
    sigma = parse("hf_daily_papers_2026-07-31_trimmed_pretty.json")["2607.27958"]
    assert sigma.title.startswith("Σ-Mem") and sigma.upvotes == 11 and sigma.ai_summary is None


def test_current_arxiv_rss_fields() -> None:
    papers = parse("arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml")
    assert {p: r.announce_type for p, r in papers.items()} == {
        "2609.26811": "new",
        "2609.26820": "new",
        "2205.06398": "cross",
        "2009.13987": "replace",
    }
    replaced = papers["2009.13987"]
    assert replaced.version == 3
    assert replaced.authors == ["Michael Joswig", "Marek Kaluba", "Lukas Ruff"]
    assert replaced.categories == ["cs.LG", "math.MG", "stat.ML"]
    assert replaced.title == "Random Polytope Descriptors"
    assert replaced.abstract.startswith("We introduce a class of random polytopes")
    assert {tuple(r.sources) for r in papers.values()} == {(ARXIV_RSS,)}
    assert papers["2205.06398"].version == 2
    assert papers["2609.26811"].published_at == dt.datetime(2026, 9, 24, 4, 0)


def test_reserialized_rss_with_ns1_prefix_keeps_announce_type_and_tex() -> None:
    papers = parse("arxiv_rss_astro-ph.EP_2026-08-05_trimmed_reserialized.xml")
    assert {r.announce_type for r in papers.values()} == {"new"}
    assert papers["2608.02757"].authors == ["Aaron C. Boley", "Samantha M. Lawler", "Hanno Rein"]
    assert any("$" in p.abstract for p in papers.values()), "TeX math is kept as written"


def test_old_rdf_feed_title_suffix_cross_lists_and_updates() -> None:
    papers = parse("arxiv_rss_rdf_cs_2018-08-30.xml")
    quasar = papers["1808.09955"]
    assert (
        quasar.title
        == "QuasarNET: Human-level spectral classification and redshifting with Deep Neural Networks"
    )
    assert quasar.categories == ["astro-ph.IM"]
    assert quasar.announce_type == "cross"
    assert quasar.authors == ["Nicolas Busca", "Christophe Balland"]
    assert quasar.abstract.startswith(
        "We introduce QuasarNET, a deep convolutional neural network that performs classification"
    )
    assert papers["1808.09964"].announce_type == "new"
    assert (papers["1301.1107"].version, papers["1301.1107"].announce_type) == (6, "replace")
    assert (papers["1309.3014"].version, papers["1309.3014"].announce_type) == (2, "replace-cross")
    assert sum(p.announce_type.startswith("replace") for p in papers.values()) == 74
    assert quasar.published_at == dt.datetime(2018, 8, 31, 1, 30)


def test_arxiv_api_fields_and_old_style_ids() -> None:
    papers = parse("arxiv_api_search_testing_2026-04-12.xml")
    first = papers["2202.12139"]
    assert first.version == 1 and first.announce_type is None
    assert first.categories[0] == "cs.SE"
    assert first.authors == ["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"]
    assert papers["2405.13786"].authors[2] == "José Raúl Romero"
    old = parse("arxiv_api_id_astro-ph_0601001_2026-05-11.xml")["astro-ph/0601001"]
    assert old.version == 1 and old.abstract.startswith("We derive the frequencies")
    assert old.published_at == dt.datetime(2006, 1, 2, 14, 57, 58)
    assert old.abs_url == "https://arxiv.org/abs/astro-ph/0601001"


def test_legacy_api_unwraps_titles_and_drops_msc_categories() -> None:
    papers = parse("arxiv_api_legacy_deep_dream_2017-05-14.xml")
    dream = papers["1611.09520"]
    assert dream.title == (
        "Hierarchical Neural Representation of Dreamed Objects Revealed by Brain "
        "Decoding with Deep Neural Network Features"
    )
    assert dream.version == 2
    for paper in papers.values():
        assert all("," not in c and " " not in c for c in paper.categories)


def test_arxiv_api_error_body_is_an_error_not_a_paper_titled_error() -> None:
    name = "arxiv_api_error_http400_bad_id_2026-04-12.xml"
    with pytest.raises(SourceError, match="arXiv API error: incorrect id format for abc"):
        parse_response((FEEDS / name).read_bytes())
    without_text = edited(name, ("<summary>incorrect id format for abc</summary>", ""))
    with pytest.raises(SourceError) as error:
        parse_response(without_text)
    assert str(error.value) == (
        "arXiv API error: https://arxiv.org/api/errors#incorrect_id_format_for_abc"
    )


def test_arxiv_entries_missing_a_field_fall_back_or_are_skipped_with_a_reason() -> None:
    """One recorded API answer, two of its entries each given a defect a feed can have."""
    body = edited(
        "arxiv_api_search_testing_2026-04-12.xml",
        # 1st: no <id>, so the id comes from its link; no <published>: no date (the feed's
        # <updated> is when the query ran, not when anything was published)
        ("<id>http://arxiv.org/abs/2202.12139v1</id>", ""),
        ("<published>2022-02-24T15:05:19Z</published>", ""),
        # 2nd: no title at all
        (
            "<title>Towards Explainable Test Case Prioritisation with Learning-to-Rank Models</title>",
            "",
        ),
    )
    result = parse_response(body)
    first = {p.arxiv_id: p for p in result.papers}["2202.12139"]
    assert (first.version, first.sources, first.published_at) == (1, [ARXIV_API], None)
    assert result.skipped == ["entry 1: 2405.13786: missing title"]
    assert len(result.papers) == 9, "the entries after a skipped one are still read"


def atom_feed(title: str, *entries: str) -> bytes:
    """An Atom document with arXiv's namespace, as the API and rss.arxiv.org/atom write it."""
    return (
        '<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
        f'xmlns:arxiv="http://arxiv.org/schemas/atom"><title>{title}</title>'
        + "".join(entries)
        + "</feed>"
    ).encode()


def test_an_arxiv_entry_without_id_summary_or_authors_is_named_by_its_title_or_kept_bare() -> None:
    entry = (
        "<entry><title>{title}</title>{rest}"
        '<arxiv:primary_category term="cs.LG"/>'
        '<category term="cs.SE"/><category term="cs.LG"/></entry>'
    )
    body = atom_feed(
        "q",
        entry.format(title="A title far longer than forty characters, to be cut", rest=""),
        entry.format(title="Bare", rest="<id>http://arxiv.org/abs/2607.00001v2</id>"),
    )
    result = parse_response(body)
    assert result.skipped == ["entry 0: 'A title far longer than forty characters': no arXiv id"]
    (bare,) = result.papers
    assert (bare.abstract, bare.authors) == ("", [])
    assert bare.categories == ["cs.LG", "cs.SE"], "the primary category leads, whatever the order"


def test_arxiv_rss_in_its_atom_form_counts_as_the_rss_source_and_keeps_its_announce_type() -> None:
    """rss.arxiv.org/atom/... serves the RSS listing as Atom: oai: ids, and the announce type
    in an element or only in the text."""
    body = atom_feed(
        "cs.LG",
        "<entry><id>oai:arXiv.org:2609.26811v1</id><title>By element</title>"
        "<summary>An abstract.</summary><arxiv:announce_type>cross</arxiv:announce_type></entry>",
        "<entry><id>oai:arXiv.org:2609.26820v2</id><title>By text</title>"
        "<summary>arXiv:2609.26820v2 Announce Type: replace Abstract: Text.</summary></entry>",
    )
    papers = {p.arxiv_id: p for p in parse_response(body).papers}
    assert {p: (r.sources, r.announce_type) for p, r in papers.items()} == {
        "2609.26811": ([ARXIV_RSS], "cross"),
        "2609.26820": ([ARXIV_RSS], "replace"),
    }
    assert papers["2609.26820"].abstract == "Text."


def test_feed_dates_do_not_depend_on_the_servers_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        papers = parse("arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml")
        hf = parse("hf_daily_papers_2026-07-13.json")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert papers["2609.26811"].published_at == dt.datetime(2026, 9, 24, 4, 0)
    assert hf["2607.07673"].published_at == dt.datetime(2026, 7, 8), "ISO times with Z"


def test_community_hf_rss_splits_ai_summary_from_abstract() -> None:
    papers = parse("hf_papers_rss_community_michaelmarkert_2026-08-22.xml")
    env = papers["2608.19880"]
    assert env.ai_summary.startswith("EnvHarness and EnvRigger dynamically reshape")
    assert env.abstract.startswith("LLM agents learn by interacting with environments")
    assert env.hf_url == "https://huggingface.co/papers/2608.19880"
    assert (env.published_at, env.sources) == (dt.datetime(2026, 8, 21, 2, 30, 55), [HF_RSS])


HF_RSS_FIXTURE = "hf_papers_rss_community_michaelmarkert_2026-08-22.xml"
HF_RSS_LINK = ("<link>https://huggingface.co/papers/2608.19880</link>", "")
HF_RSS_GUID = ('<guid isPermaLink="true">https://huggingface.co/papers/2608.19880</guid>', "")


@pytest.mark.parametrize(
    "changes",
    [
        [HF_RSS_LINK, (HF_RSS_GUID[0], HF_RSS_GUID[0].replace("true", "false"))],
        [HF_RSS_GUID],
    ],
    ids=["guid only", "link only"],
)
def test_community_hf_rss_finds_a_paper_by_its_link_or_its_guid(
    changes: list[tuple[str, str]],
) -> None:
    papers = parse_response(edited(HF_RSS_FIXTURE, *changes)).papers
    assert papers[0].arxiv_id == "2608.19880" and len(papers) == 26


@pytest.mark.parametrize(
    "changes",
    [
        [HF_RSS_LINK, HF_RSS_GUID],
        [("<title>EnvHarness: Awakening Static Worlds for Agent Learning</title>", "<title/>")],
    ],
    ids=["no id", "no title"],
)
def test_community_hf_rss_skips_an_entry_it_cannot_name_and_reads_on(
    changes: list[tuple[str, str]],
) -> None:
    result = parse_response(edited(HF_RSS_FIXTURE, *changes))
    assert result.skipped == ["entry 0: missing arXiv id or title"]
    assert len(result.papers) == 25 and "2608.19880" not in {p.arxiv_id for p in result.papers}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty response body"),
        (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "got an HTML page, not a feed"),
        (
            (FEEDS / "arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml").read_bytes()[
                :3000
            ],
            "malformed feed",
        ),
        (b'{"error": "Invalid date"}', "expected a JSON array"),
        (b"[{", "not valid JSON"),
        (b"Service Unavailable", "unrecognised format"),
        (b"<?xml version='1.0'?><note>hello</note>", "unrecognised format"),
    ],
)
def test_broken_responses_raise_a_clear_reason(body: bytes, reason: str) -> None:
    with pytest.raises(SourceError) as error:
        parse_response(body)
    assert str(error.value).startswith(reason)


@pytest.mark.parametrize(
    ("body", "source", "reason"),
    [
        (
            b"\xef\xbb\xbf \r\n<!DOCTYPE HTML><html></html>",
            None,
            "got an HTML page, not a feed (an error or captcha page?)",
        ),
        (b"{}", None, "expected a JSON array of papers, got dict"),
        (b"[]", "nope", "unknown source 'nope'; expected one of hf, arxiv-rss, arxiv-api, hf-rss"),
        (
            b"Service Unavailable",
            None,
            "unrecognised format: neither Hugging Face JSON nor an RSS/Atom feed",
        ),
    ],
)
def test_each_refusal_says_exactly_why(body: bytes, source: str | None, reason: str) -> None:
    with pytest.raises(SourceError) as error:
        parse_response(body, source)
    assert str(error.value) == reason


def test_hugging_face_values_are_kept_only_when_they_are_what_they_claim(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long_url = "https://example.org/" + "x" * 280
    item = {
        "numComments": 0,
        "organization": {"fullname": "O" * 250},
        "paper": {
            "id": "2607.00001",
            "title": "T",
            "upvotes": "12",
            "githubStars": 0,
            "githubRepo": "http://example.org/code",
            "projectPage": long_url,
            "ai_keywords": [" graph  nets ", 3],
            "authors": [{"name": ""}, "Ada", {"name": "Alan"}],
        },
    }
    refused = {
        "paper": {
            "id": "2607.00002",
            "title": "U",
            "githubStars": -1,
            "githubRepo": "javascript:alert(1)",
            "projectPage": long_url + "y",
        },
        "numComments": True,
    }
    body = json.dumps([item, 7, refused]).encode()
    with caplog.at_level("WARNING", logger="digest.sources"):
        kept, other = parse_response(body).papers
    assert [r.getMessage() for r in caplog.records] == [
        "hf: skipped a record: item 1: no 'paper' object"
    ]
    assert (kept.upvotes, kept.github_stars, kept.num_comments) == (None, 0, 0)
    assert (kept.github_repo, kept.project_page) == ("http://example.org/code", long_url)
    assert (kept.ai_keywords, kept.authors) == (["graph nets"], ["Alan"])
    assert kept.organization == "O" * 200
    assert (other.github_stars, other.num_comments, other.github_repo, other.project_page) == (
        None,
        None,
        None,
        None,
    )


def test_forced_format_still_checks_the_content() -> None:
    with pytest.raises(SourceError) as error:
        parse_response(b"<?xml version='1.0'?><note>hello</note>", ARXIV_RSS)
    assert str(error.value) == "not an RSS or Atom feed (an HTML page or another document?)"
    with pytest.raises(SourceError, match="not valid JSON"):
        parse_response((FEEDS / "arxiv_rss_cs.CL_2026-08-01_weekend_empty.xml").read_bytes(), HF)


def test_record_missing_id_or_title_is_skipped_with_a_reason() -> None:
    body = b'[{"paper": {"id": "2607.00001", "title": "Fine"}}, {"paper": {"title": "No id"}}, {"paper": {"id": "2607.00002"}}, 7]'
    result = parse_response(body)
    assert [p.arxiv_id for p in result.papers] == ["2607.00001"]
    assert result.skipped == [
        "item 1: missing arXiv id",
        "item 2: 2607.00002: missing title",
        "item 3: no 'paper' object",
    ]


def test_text_cleaning() -> None:
    assert clean_text("<p>A &amp; B\n   $O(n^2)$</p>") == "A & B $O(n^2)$"
    assert clean_text("Leconte J\\'er\\'emy and Gr\\\"obner") == "Leconte Jérémy and Gröbner"
    assert clean_text("to exhibit ``fraud collapse''") == "to exhibit \u201cfraud collapse\u201d"
    assert split_authors("Ada Lovelace (Univ A, Lab B), Alan Turing, Grace Hopper (Navy)") == [
        "Ada Lovelace",
        "Alan Turing",
        "Grace Hopper",
    ]
    assert split_authors("Ada (Univ (Dept A), Lab B), Alan (X) (Y, Z), Wei (David) Li, (Anon)") == [
        "Ada",
        "Alan",
        "Wei (David) Li",
    ], "nested and repeated affiliations go; a parenthesis inside a name stays"
    assert parse_arxiv_id("oai:arXiv.org:2009.13987v3") == ("2009.13987", 3)
    assert parse_arxiv_id("http://arxiv.org/abs/astro-ph/0601001v1") == ("astro-ph/0601001", 1)


def test_merge_is_order_independent_and_keeps_the_best_of_each_source() -> None:
    hf = parse("hf_daily_papers_2026-07-13.json")["2607.09657"]
    arxiv = parse("arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml")["2607.09657"]
    one = merge_paper(merge_paper(None, hf), arxiv)
    other = merge_paper(merge_paper(None, arxiv), hf)
    assert one == other
    assert one["upvotes"] == hf.upvotes and one["hf_url"] == hf.hf_url
    assert one["categories"] == arxiv.categories and one["version"] == 1
    assert sorted(one["sources"]) == [ARXIV_API, HF]


def test_hugging_face_details_are_read_and_survive_a_merge_with_arxiv() -> None:
    """Code, stars, project page, comments, organization and submitter, as recorded; only
    some items carry them (the API omits a field rather than sending null)."""
    papers = {
        p.arxiv_id: p
        for p in parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    }
    medpmc, flow = papers["2607.07673"], papers["2607.06957"]
    assert (medpmc.github_repo, medpmc.github_stars, medpmc.project_page) == (
        "https://github.com/Yale-BIDS-Chen-Lab/MedPMC",
        1,
        None,
    )
    assert (medpmc.organization, medpmc.submitted_by, medpmc.num_comments) == (
        "Yale-BIDS-Chen-Lab",
        "Hyunjae Kim",
        1,
    )
    assert flow.project_page == "https://seulbinhwang.github.io/flow-erd-project-page/"
    assert flow.github_repo is None and flow.num_comments == 2
    arxiv_view = PaperRecord(
        arxiv_id="2607.07673", title="MedPMC", version=2, sources=["arxiv-api"]
    )
    merged = merge_paper(merge_paper(None, medpmc), arxiv_view)
    assert (
        merged["github_repo"] == medpmc.github_repo
        and merged["organization"] == "Yale-BIDS-Chen-Lab"
    )


def test_merging_follows_each_fields_authority() -> None:
    """arXiv's newest version owns title and abstract, the longest author list wins, the first
    announce type and the earliest date stay, Hugging Face's keywords stay until replaced."""
    day = dt.datetime(2026, 7, 1)
    v1 = PaperRecord("2607.00001", "Old", "", ["A"], ["cs.LG"], 1, "new", published_at=day)
    hf = PaperRecord("2607.00001", "HF title", "HF abstract", ["A", "B", "C"], ai_keywords=["k"])
    v2 = PaperRecord("2607.00001", "New", "new", ["A", "B", "X"], ["cs.AI"], 2, "replace")
    v2.published_at = day + dt.timedelta(days=9)
    same_version = PaperRecord("2607.00001", "Same version, other title", "other", version=2)
    v3 = PaperRecord("2607.00001", "Newest", "", ["A"], version=3)

    merged = merge_paper(merge_paper(None, v1), hf)
    assert (merged["title"], merged["abstract"]) == ("Old", "HF abstract"), "gaps are filled"
    for record in (v2, same_version, v3):
        merged = merge_paper(merged, record)
    assert (merged["title"], merged["abstract"], merged["version"]) == ("Newest", "new", 3)
    assert merged["authors"] == ["A", "B", "C"]
    assert merged["categories"] == ["cs.LG", "cs.AI"]
    assert (merged["ai_keywords"], merged["announce_type"]) == (["k"], "new")
    assert merged["published_at"] == day
    first_seen_on_hf = merge_paper(merge_paper(None, hf), v1)
    assert first_seen_on_hf["announce_type"] == "new", "arXiv's announce type fills the gap"
    undated = PaperRecord("2607.00002", "Undated")
    assert merge_paper(merge_paper(None, undated), undated)["published_at"] is None


def test_hugging_face_fields_are_read_from_the_paper_or_else_from_the_item() -> None:
    """SCHEMA.md: title, summary and organization appear on both the item and its paper,
    the submitter as item.submittedBy or paper.submittedOnDailyBy; some pages carry only one
    of each pair (the trimmed 07-31 page has no item.summary and no organization)."""
    paper_side = {
        "id": "2607.00001",
        "title": "Paper title",
        "summary": "Paper summary",
        "organization": {"fullname": "Paper org"},
        "submittedOnDailyBy": {"fullname": "Paper submitter"},
    }
    item_side = {
        "title": "Item title",
        "summary": "Item summary",
        "organization": {"name": "item-org"},
        "submittedBy": {"fullname": "Item submitter"},
    }
    both = {**item_side, "paper": paper_side}
    item_only = {**item_side, "paper": {"id": "2607.00002"}}
    paper_only = {"paper": {**paper_side, "id": "2607.00003"}}
    body = json.dumps([both, item_only, paper_only]).encode()
    seen = [
        (p.title, p.abstract, p.organization, p.submitted_by) for p in parse_response(body).papers
    ]
    assert seen == [
        ("Paper title", "Paper summary", "Paper org", "Item submitter"),
        ("Item title", "Item summary", "item-org", "Item submitter"),
        ("Paper title", "Paper summary", "Paper org", "Paper submitter"),
    ]


# -- hostile bytes in a fetched response -------------------------------------------------------


def hidden_characters(record: PaperRecord) -> dict[str, str]:
    """The fields of a record holding a character PostgreSQL (NUL, lone surrogates) or XML
    (C0 controls) refuse, or a terminal obeys (ESC): by field name."""
    found = {}
    for spec in dataclasses.fields(record):
        value = getattr(record, spec.name)
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
                found[spec.name] = text
    return found


def injected(name: str, old: bytes, new: bytes) -> bytes:
    body = (FEEDS / name).read_bytes()
    assert old in body, f"{old!r} is not in {name}"
    return body.replace(old, new)


@pytest.mark.parametrize(
    ("name", "old", "new", "arxiv_id", "title"),
    [
        (  # JSON: escaped NUL, a raw NUL (JSON forbids raw controls), ESC, DEL, C1, a surrogate
            "hf_daily_papers_2026-07-13.json",
            b"MedPMC: A Systematic",
            b"Med\\u0000PMC:\x00 A\x1b[2J Sys\x7ftematic\\u009f\\ud800",
            "2607.07673",
            "MedPMC: A[2J Systematic Framework for Scaling High-Fidelity Medical Multimodal Data "
            "for Foundation Models",
        ),
        (  # RSS: raw bytes XML forbids, and the same as character references
            "arxiv_rss_cs.LG+cs.AI+cs.CL+stat.ML_2026-09-24_trimmed.xml",
            b"The Drift Contract",
            b"The Dri\x00ft \x1bCon&#0;tract&#x1F;&#27;",
            "2609.26811",
            "The Drift Contract: Spectral Updates for Depth-Robust Local Learning",
        ),
        (  # Atom (the arXiv API)
            "arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml",
            b"<title>PHINN-EEG: ",
            b"<title>\x00PHINN-\x08EEG&#x0;: \x0c",
            "2607.09662",
            "PHINN-EEG: Topological Time-Series Analysis of Dream-State EEG -- Dynamic Betti "
            "Curves for Dream Content Classification and Topology-Conditioned Neural Signal "
            "Synthesis",
        ),
        (  # the community HF RSS
            "hf_papers_rss_community_michaelmarkert_2026-08-22.xml",
            b"<title>",
            b"<title>\x00\x1b",
            None,
            None,
        ),
    ],
)
def test_control_characters_are_cleaned_out_and_every_paper_is_kept(
    name: str, old: bytes, new: bytes, arxiv_id: str | None, title: str | None
) -> None:
    clean = parse_response((FEEDS / name).read_bytes())
    result = parse_response(injected(name, old, new))
    assert [p.arxiv_id for p in result.papers] == [p.arxiv_id for p in clean.papers]
    assert result.skipped == clean.skipped
    assert {p.arxiv_id: hidden_characters(p) for p in result.papers if hidden_characters(p)} == {}
    if arxiv_id:
        assert {p.arxiv_id: p for p in result.papers}[arxiv_id].title == title


def test_numbers_and_ids_too_large_for_their_columns_are_dropped() -> None:
    """A count past a database integer, or an id past its column, must not fail the file."""
    item = {
        "numComments": 2**31,
        "paper": {
            "id": "2607.00001v99999999999",
            "title": "T",
            "upvotes": 2**40,
            "githubStars": 2**63,
        },
    }
    long_old_id = {"paper": {"id": "a" * 60 + "/0601001", "title": "Old"}}
    new, old = parse_response(json.dumps([item, long_old_id]).encode()).papers
    assert (new.upvotes, new.github_stars, new.num_comments, new.version) == (
        None,
        None,
        None,
        None,
    )
    assert len(old.arxiv_id) <= 40


@pytest.mark.parametrize(
    "link",
    [
        "https://github.com/a/b\r\nBcc: eve@example.org",
        "https://github.com/a/b\nInjected line",
        "https://github.com/a/b c",
        "https://github.com/a/\x00b",
        "https://github.com/a/\u202eb",  # right-to-left override: a link that reads otherwise
        "https:///no-host",
        "https://github.com@evil.example.org/a/b",  # a host that reads as another
        "ftp://github.com/a/b",
        "javascript:alert(1)//https://x",
        "//github.com/a/b",
        "https://github.com:99999/a",
        "https://" + "x" * 300 + ".org",
    ],
)
def test_a_bad_link_from_a_feed_is_dropped_and_the_paper_kept(link: str) -> None:
    item = {"paper": {"id": "2607.00001", "title": "T", "githubRepo": link, "projectPage": link}}
    (paper,) = parse_response(json.dumps([item]).encode()).papers
    assert (paper.github_repo, paper.project_page) == (None, None)


def test_good_links_from_a_feed_are_kept() -> None:
    links = ["https://github.com/a/b", "HTTP://Example.org/x?y=1#z", " https://x.org/p "]
    items = [
        {"paper": {"id": f"2607.0000{i}", "title": "T", "githubRepo": link}}
        for i, link in enumerate(links)
    ]
    papers = parse_response(json.dumps(items).encode()).papers
    assert [p.github_repo for p in papers] == [
        "https://github.com/a/b",
        "HTTP://Example.org/x?y=1#z",
        "https://x.org/p",
    ]
