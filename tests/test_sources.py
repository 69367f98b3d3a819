"""Every recorded response in tests/fixtures/feeds parses into correct records (see SCHEMA.md)."""

from __future__ import annotations

import datetime as dt

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
    assert not replaced.abstract.startswith("arXiv:") and not replaced.abstract.startswith(
        "Abstract"
    )
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
    body = (FEEDS / "arxiv_api_error_http400_bad_id_2026-04-12.xml").read_bytes()
    with pytest.raises(SourceError, match="arXiv API error: incorrect id format for abc"):
        parse_response(body)


def test_community_hf_rss_splits_ai_summary_from_abstract() -> None:
    papers = parse("hf_papers_rss_community_michaelmarkert_2026-08-22.xml")
    env = papers["2608.19880"]
    assert env.ai_summary.startswith("EnvHarness and EnvRigger dynamically reshape")
    assert env.abstract.startswith("LLM agents learn by interacting with environments")
    assert env.hf_url == "https://huggingface.co/papers/2608.19880"


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
    with pytest.raises(SourceError, match=reason):
        parse_response(body)


def test_forced_format_still_checks_the_content() -> None:
    with pytest.raises(SourceError, match="not an RSS or Atom feed"):
        parse_response(b"<?xml version='1.0'?><note>hello</note>", ARXIV_RSS)
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
