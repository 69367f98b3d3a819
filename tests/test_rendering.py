"""Rendered digests: what each paper shows, escaping, CSS inlining and the card cache."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest
from conftest import FEEDS, poisoned, poisoned_paper
from jinja2 import UndefinedError
from lxml import html as lxml_html
from markupsafe import Markup

from digest.rendering import (
    TEMPLATES_DIR,
    AlreadySubscribedContent,
    ConfirmationContent,
    DigestContent,
    FragmentCache,
    FragmentCacheExtension,
    compact_css,
    inline_per_email,
    make_environment,
    paper_item,
    preheader,
    render_already_subscribed,
    render_confirmation,
    render_digest,
    short_count,
    shorten_authors,
    snippet,
)
from digest.sources import PaperRecord, parse_response

EDITION = dt.date(2026, 11, 23)
EVIL_TITLE = "<script>alert(1)</script> & $x<y$"


def hf_papers() -> list[PaperRecord]:
    return parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers


def content(
    papers: list[PaperRecord],
    topics=("graph neural networks", "efficient attention"),
    trending: list[PaperRecord] | None = None,
) -> DigestContent:
    items = tuple(
        paper_item(p, topics[i % len(topics)], f'matches "{topics[i % len(topics)]}": graph')
        for i, p in enumerate(papers)
    )
    return DigestContent(
        EDITION,
        "ada@example.org",
        tuple(topics),
        items,
        tuple(paper_item(p) for p in trending or []),
        "https://digest.example.org/preferences/TOKEN-P",
        "https://digest.example.org/unsubscribe/TOKEN-U",
    )


def parse_html(html: str):
    return lxml_html.fromstring(html)


def test_subject_says_what_is_inside() -> None:
    assert (
        render_digest(content(hf_papers()[:5])).subject
        == "5 new papers on graph neural networks and efficient attention - Nov 23"
    )
    one = render_digest(content(hf_papers()[:1], topics=("rl", "nlp")))
    assert one.subject == "1 new paper on rl - Nov 23", "only the topics that have picks"
    three = render_digest(content(hf_papers()[:4], topics=("RL", "agents", "video generation")))
    assert three.subject == "4 new papers on RL, agents and 1 more - Nov 23"
    assert (
        render_digest(content([], trending=hf_papers()[:3])).subject
        == "Nothing new on your topics today: 3 trending papers - Nov 23"
    )


def test_each_paper_shows_link_authors_snippet_upvotes_reason_and_links() -> None:
    papers = hf_papers()[:3]
    rendered = render_digest(content(papers))
    doc = parse_html(rendered.html)
    cards = doc.find_class("card")
    assert len(cards) == 3
    first, paper = cards[0], papers[0]
    title = first.find_class("title")[0]
    assert (
        title.get("href") == f"https://huggingface.co/papers/{paper.arxiv_id}"
    )  # HF page when on HF
    assert title.text_content() == paper.title
    assert "Hyunjae Kim, Dain Kim, Pan Xiao et al. · 28 authors" in first.text_content()
    assert "upvote" not in first.text_content(), "0 upvotes is not shown at all"
    assert first.find_class("why")[0].text_content() == 'matches "graph neural networks": graph'
    hrefs = [a.get("href") for a in first.iter("a")]
    assert (
        f"https://arxiv.org/abs/{paper.arxiv_id}" in hrefs
        and f"https://arxiv.org/pdf/{paper.arxiv_id}" in hrefs
    )
    assert "Your topics: graph neural networks, efficient attention" in doc.text_content()
    footer = doc.find_class("footer")[0]
    assert [a.get("href") for a in footer.iter("a")] == [
        "https://digest.example.org/preferences/TOKEN-P",
        "https://digest.example.org/unsubscribe/TOKEN-U",
    ]
    assert (
        'Why: matches "graph neural networks"' in rendered.text
        and f"https://arxiv.org/pdf/{paper.arxiv_id}" in rendered.text
    )


def test_arxiv_only_paper_links_to_arxiv() -> None:
    paper = PaperRecord(
        arxiv_id="2609.26811",
        title="The Drift Contract",
        abstract="Local learning.",
        authors=["Fabien Polly"],
    )
    doc = parse_html(render_digest(content([paper])).html)
    assert doc.find_class("title")[0].get("href") == "https://arxiv.org/abs/2609.26811"
    assert "upvote" not in doc.text_content()
    anonymous = PaperRecord(
        arxiv_id="2608.19880",
        title="EnvHarness",
        abstract="Agents.",
        hf_url="https://huggingface.co/papers/2608.19880",
    )
    card = parse_html(render_digest(content([anonymous])).html).find_class("card")[0]
    assert not card.find_class("meta"), "no empty 'authors' line when a source gives none"


def test_feed_text_cannot_inject_markup() -> None:
    paper = PaperRecord(
        arxiv_id="2609.00001",
        title=EVIL_TITLE,
        abstract="We show <b>bold</b> claims & $O(n^2)$.",
        authors=['<img src=x onerror="alert(1)">'],
    )
    rendered = render_digest(content([paper]))
    doc = parse_html(rendered.html)
    assert not doc.xpath("//script") and not doc.xpath("//img") and not doc.xpath("//b")
    assert doc.find_class("title")[0].text_content() == EVIL_TITLE
    assert "We show <b>bold</b> claims & $O(n^2)$." in doc.find_class("snippet")[0].text_content()
    assert EVIL_TITLE in rendered.text  # the text part is plain text, not HTML-escaped


def test_nothing_matched_shows_labelled_trending_section() -> None:
    rendered = render_digest(content([], trending=hf_papers()[:3]))
    assert "Nothing new matched your topics today" in rendered.text
    assert "TRENDING TODAY (not picked for your topics)" in rendered.text
    doc = parse_html(rendered.html)
    assert len(doc.find_class("trend")) == 3 and not doc.find_class("card")


def test_css_is_inlined_and_media_queries_kept() -> None:
    doc = parse_html(render_digest(content(hf_papers()[:2])).html)
    assert "font-size:17px" in doc.find_class("title")[0].get("style").replace(" ", "")
    style = doc.xpath("//style")[0].text
    assert "@media only screen and (max-width: 480px)" in style
    assert "prefers-color-scheme: dark" in style and "!important" in style


def test_per_template_inlining_equals_per_email_inlining_element_by_element() -> None:
    digest = content(hf_papers()[:10], trending=hf_papers()[10:12])
    fast, slow = parse_html(render_digest(digest).html), parse_html(inline_per_email(digest))
    fast_elements, slow_elements = list(fast.iter()), list(slow.iter())
    assert len(fast_elements) == len(slow_elements) > 100
    for a, b in zip(fast_elements, slow_elements, strict=True):
        assert (a.tag, dict(a.attrib), (a.text or "").strip()) == (
            b.tag,
            dict(b.attrib),
            (b.text or "").strip(),
        )


def test_cached_cards_equal_fresh_renders_and_follow_changed_papers() -> None:
    env = make_environment(TEMPLATES_DIR, inline=True)
    papers = hf_papers()[:4]
    first = render_digest(content(papers), env)
    again = render_digest(content(papers), env)  # every card now comes from the cache
    assert (
        again
        == first
        == render_digest(content(papers), make_environment(TEMPLATES_DIR, inline=True))
    )
    assert (
        len(env.extensions[FragmentCacheExtension.identifier].cache.fragments) == 4 * 2
    )  # html + text card
    upvoted = [replace(papers[0], upvotes=(papers[0].upvotes or 0) + 1000), *papers[1:]]
    html = render_digest(content(upvoted), env).html
    assert (
        f"{(papers[0].upvotes or 0) + 1000:,} upvotes" in html
    )  # a new value is a new key, not a stale card


def test_fragment_cache_is_bounded_oldest_first() -> None:
    cache = FragmentCache(maxsize=2)
    for key in "abc":
        cache.keep(Markup(key.upper()), key)
    assert list(cache.fragments) == ["b", "c"]


def test_compact_css_keeps_every_rule_in_few_lines() -> None:
    css = (TEMPLATES_DIR / "email" / "email.css").read_text()
    compact = compact_css(css, width=400)
    assert "/*" not in compact and len(compact.splitlines()) < len(css.splitlines()) / 4
    assert all(len(line) <= 400 or line.count("}") == 1 for line in compact.splitlines())
    words = lambda text: "".join(re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL).split())  # noqa: E731
    assert words(compact) == words(css)


def test_helpers() -> None:
    assert shorten_authors(["A", "B", "C", "D"]) == "A, B, C et al."
    assert shorten_authors(["A", "B"]) == "A, B"
    assert snippet("word " * 100, 23) == "word word word word…"


def test_confirmation_email() -> None:
    rendered = render_confirmation(
        ConfirmationContent("ada@example.org", ("rl",), "https://d.example/confirm/T", 7)
    )
    assert rendered.subject == "Confirm your Paper Digest subscription"
    doc = parse_html(rendered.html)
    assert doc.find_class("button")[0].get("href") == "https://d.example/confirm/T"
    assert "https://d.example/confirm/T" in rendered.text and "expires in 7 days" in rendered.text


def test_already_subscribed_email_links_to_preferences_and_escapes_topics() -> None:
    rendered = render_already_subscribed(
        AlreadySubscribedContent(
            "ada@example.org", ("rl", "<b>gnn</b>"), "https://d.example/preferences/T", paused=True
        )
    )
    assert rendered.subject == "You already have a Paper Digest subscription"
    doc = parse_html(rendered.html)
    assert doc.find_class("button")[0].get("href") == "https://d.example/preferences/T"
    assert "&lt;b&gt;gnn&lt;/b&gt;" in rendered.html and "<b>gnn</b>" not in rendered.html
    assert 'style="' in rendered.html, "CSS inlined like every other email"
    assert (
        "(paused at the moment)" in rendered.text
        and "https://d.example/preferences/T" in rendered.text
    )


def test_topics_and_reasons_are_escaped_in_the_digest() -> None:
    evil = "<b>graph & nets</b>"
    rendered = render_digest(content(hf_papers()[:2], topics=(evil, "rl")))
    doc = parse_html(rendered.html)
    assert not doc.xpath("//b"), "a topic or reason became markup"
    assert "&lt;b&gt;graph &amp; nets&lt;/b&gt;" in rendered.html
    assert evil in rendered.text


def test_every_field_is_escaped_in_the_html_and_as_typed_in_the_text_part() -> None:
    """Markup in any field of a pick or a trending paper (with its AI summary and without,
    since the trending line shows one or the other), in the topics, reasons and quiet
    topics: text in the HTML part, everywhere it is shown, and the same characters
    in the text part. A ``|safe`` anywhere in the digest's templates fails this."""
    topic, quiet = poisoned("topic"), poisoned("quiet topic")
    papers = [poisoned_paper(f"2611.0010{n}", summary=n % 2 == 0) for n in range(4)]
    items = tuple(paper_item(p, topic, poisoned("reason"), also=[quiet]) for p in papers[:2])
    rendered = render_digest(
        replace(
            content([], topics=(topic, quiet)),
            items=items,
            trending=tuple(paper_item(p) for p in papers[2:]),
            quiet_topics=(quiet,),
        )
    )
    assert "<u class=" not in rendered.html
    doc = parse_html(rendered.html)  # markup in the source would be elements, not this text
    cards, trends = doc.find_class("card"), doc.find_class("trend")
    assert len(cards) == len(trends) == 2
    for card, paper in zip(cards, papers[:2], strict=True):
        assert card.find_class("title")[0].text_content() == poisoned("title")
        assert card.find_class("why")[0].text_content() == poisoned("reason"), "one topic only"
        assert card.find_class("meta")[0].text_content() == (
            f"{poisoned('author')} · {poisoned('organization')}"
        )
        assert card.find_class("snippet")[0].text_content() == poisoned("abstract")
        links = [a.get("href") for a in card.find_class("link")]
        assert {paper.hf_url, paper.github_repo, paper.project_page} <= set(links)
    assert cards[0].find_class("summary")[0].text_content() == poisoned("summary")
    for trend, paper in zip(trends, papers[2:], strict=True):
        assert trend.find_class("trend-title")[0].get("href") == paper.hf_url
        assert trend.find_class("trend-title")[0].text_content() == poisoned("title")
        line = trend.find_class("trend-line")[0].text_content()
        assert line.endswith(poisoned("summary" if paper.ai_summary else "abstract"))
    assert doc.find_class("quiet-topics")[0].text_content() == f"Nothing new on {quiet} today."
    assert doc.find_class("topics")[0].text_content() == f"Your topics: {topic}, {quiet}"
    assert poisoned("title") in doc.find_class("preheader")[0].text_content()
    text = " ".join(rendered.text.split())  # the text part wraps lines at spaces
    for field in ("title", "abstract", "summary", "author", "organization", "reason", "topic"):
        assert poisoned(field) in text, field
    assert "&lt;" not in rendered.text and "&amp;" not in rendered.text


# -- what Hugging Face shows, the trending section, preheader, text part, Outlook -----------------


def by_id(papers: list[PaperRecord]) -> dict[str, PaperRecord]:
    return {p.arxiv_id: p for p in papers}


def test_hugging_face_details_reach_the_card_and_the_text_part() -> None:
    """From the recorded API response: code with stars, project page, author count,
    organization, the AI summary above the abstract, upvotes and comments."""
    papers = by_id(hf_papers())
    medpmc, flow = papers["2607.07673"], papers["2607.06957"]
    rendered = render_digest(content([medpmc, flow]))
    first, second = parse_html(rendered.html).find_class("card")
    links = {a.text_content().strip(): a.get("href") for a in first.find_class("link")}
    assert links == {
        "arXiv": "https://arxiv.org/abs/2607.07673",
        "PDF": "https://arxiv.org/pdf/2607.07673",
        "Hugging Face": "https://huggingface.co/papers/2607.07673",
        "Code ★\xa01": "https://github.com/Yale-BIDS-Chen-Lab/MedPMC",
    }
    assert first.find_class("meta")[0].text_content().endswith("28 authors · Yale-BIDS-Chen-Lab")
    assert not first.find_class("votes") and not first.find_class("summary")
    assert second.find_class("votes")[0].text_content() == "▲ 3 upvotes · 2 comments"
    summary = second.find_class("summary")[0]
    assert summary.text_content() == flow.ai_summary
    assert summary.getnext().get("class") == "snippet", "the AI summary comes first"
    project = [a for a in second.find_class("link") if a.text_content() == "Project"]
    assert project[0].get("href") == "https://seulbinhwang.github.io/flow-erd-project-page/"
    text = rendered.text
    assert "   Code: https://github.com/Yale-BIDS-Chen-Lab/MedPMC (★ 1)" in text
    assert "   Project: https://seulbinhwang.github.io/flow-erd-project-page/" in text
    assert "   3 upvotes on Hugging Face, 2 comments" in text
    assert "In short: Flow-ERD is a multi-agent traffic simulator" in text
    assert "0 upvotes" not in text


def test_trending_today_follows_the_picks_with_one_line_each() -> None:
    papers = hf_papers()
    rendered = render_digest(content(papers[:2], trending=papers[2:5]))
    doc = parse_html(rendered.html)
    sections = [s.text_content() for s in doc.find_class("section")]
    assert sections == ["2 papers for you today", "Trending today"]
    trends = doc.find_class("trend")
    assert [t.find_class("trend-title")[0].text_content() for t in trends] == [
        p.title for p in papers[2:5]
    ]
    voted = [p for p in papers[2:5] if p.upvotes]
    assert [
        t.find_class("votes-inline")[0].text_content()
        for t in trends
        if t.find_class("votes-inline")
    ] == [f"▲ {p.upvotes}" for p in voted]
    assert "TRENDING TODAY\n" in rendered.text and "(not picked" not in rendered.text


def test_preheader_is_the_first_hidden_text_of_the_body() -> None:
    papers = hf_papers()
    doc = parse_html(render_digest(content(papers[:5])).html)
    first = doc.body[0]
    assert first.get("class") == "preheader" and "display:none" in first.get("style")
    assert first.text_content().startswith(
        f"5 papers on graph neural networks and efficient attention: {papers[0].title[:40]}"
    )
    empty = parse_html(render_digest(content([], trending=papers[:3])).html).body[0]
    assert empty.text_content().startswith("Nothing new on your topics today. Trending: ")


def test_a_preheader_cuts_the_title_at_ninety_characters_and_says_when_nothing_is_new() -> None:
    long = replace(hf_papers()[0], title="Graph" + " word" * 30)
    cut = "Graph" + " word" * 16 + "…"  # the 17th word ends on the 90th character: cut too
    assert preheader((paper_item(long, "rl"),), (), "on rl") == f"1 paper on rl: {cut}"
    trending = (paper_item(long),)
    assert preheader((), trending, "rl") == f"Nothing new on your topics today. Trending: {cut}"
    assert preheader((), (), "rl") == "Nothing new on your topics today."


@pytest.mark.parametrize(
    ("render", "shown"),
    [
        (
            lambda: render_confirmation(ConfirmationContent("a@x.org", ("rl",), "https://c", 7)),
            "One click and your first digest is on its way.",
        ),
        (
            lambda: render_already_subscribed(
                AlreadySubscribedContent("a@x.org", ("rl",), "https://p", paused=False)
            ),
            "Nothing was changed: here is your preferences link.",
        ),
    ],
)
def test_account_emails_have_their_own_preheader(render, shown: str) -> None:
    first = parse_html(render().html).body[0]
    assert first.get("class") == "preheader" and first.text_content().strip().startswith(shown)


def test_counts_on_a_card_are_short_and_only_shown_when_they_say_something() -> None:
    assert [short_count(n) for n in (999, 1000, 1250, 12_000, 12_345, 500_000)] == [
        "999",
        "1k",
        "1.2k",
        "12k",
        "12.3k",
        "500k",
    ]
    assert shorten_authors(["A", "B", "C"]) == "A, B, C", "exactly three: no et al."
    base = PaperRecord("2607.00001", "T", authors=["A", "B", "C"], upvotes=1, github_stars=0)
    three = paper_item(base)
    assert (three.authors_count, three.upvotes_label, three.stars_label, three.snippet) == (
        "",
        "1 upvote",
        "",
        "",
    )
    four = paper_item(replace(base, authors=["A", "B", "C", "D"], upvotes=0, github_stars=1234))
    assert (four.authors_count, four.upvotes_label, four.stars_label) == ("4 authors", "", "1.2k")


def test_an_expression_with_spaces_in_a_link_survives_css_inlining(tmp_path) -> None:
    """libxml2 writes a space inside href as %20: {{ url }} would no longer be Jinja."""
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "x.html").write_text(
        '<html><body><a href="{{ url }}?a={{ a }}">x</a><img src="{{ base }}/i.png"></body></html>'
    )
    page = make_environment(tmp_path, inline=True).get_template("email/x.html")
    html = page.render(url="https://x.org/u", a="1", base="https://cdn")
    assert 'href="https://x.org/u?a=1"' in html and 'src="https://cdn/i.png"' in html


def test_a_misspelt_name_in_a_template_fails_loudly() -> None:
    with pytest.raises(UndefinedError):
        make_environment(TEMPLATES_DIR, inline=False).from_string("{{ misspelt }}").render()


def test_quiet_topics_get_one_line_each() -> None:
    quiet = replace(
        content(hf_papers()[:2], topics=("rl", "agents", "video")), quiet_topics=("agents", "video")
    )
    rendered = render_digest(quiet)
    box = parse_html(rendered.html).find_class("quiet-topics")[0]
    assert box.text_content() == "Nothing new on agents today.Nothing new on video today."
    assert "Nothing new on agents today.\nNothing new on video today.\n" in rendered.text


def test_text_part_is_wrapped_spaced_and_signed() -> None:
    rendered = render_digest(content(hf_papers()[:3]))
    lines = rendered.text.splitlines()
    assert all(len(line) <= 72 or "http" in line for line in lines)
    numbered = [n for n, line in enumerate(lines) if re.match(r"\d\. ", line)]
    assert len(numbered) == 3 and all(lines[n - 1] == "" for n in numbered), "a blank line between"
    assert "-- " in lines, "the signature delimiter, trailing space included"
    footer = "\n".join(lines[lines.index("-- ") :])
    assert "graph neural networks, efficient attention" in footer


def test_outlook_gets_a_fixed_width_table_and_padded_cells() -> None:
    """premailer turns the container's width into 100% + max-width, which Outlook for Windows
    ignores: a 640 px table inside [if mso] comments holds it; buttons take their padding
    from a table cell, as Outlook ignores padding on links."""
    digest = render_digest(content(hf_papers()[:1])).html
    assert '<!--[if mso]><table role="presentation" width="640"' in digest
    assert digest.index("<!--[if mso]><table") < digest.index('class="container"')
    assert "<!--[if mso]></td></tr></table><![endif]-->" in digest
    confirm = parse_html(
        render_confirmation(
            ConfirmationContent("ada@example.org", ("rl",), "https://x.org/confirm/T", 7)
        ).html
    )
    cell = confirm.find_class("button-cell")[0]
    assert cell.tag == "td" and "padding:12px 20px" in cell.get("style")
    assert cell[0].get("href") == "https://x.org/confirm/T"


def test_link_row_taps_are_44_px_tall_on_phones() -> None:
    style = parse_html(render_digest(content(hf_papers()[:1])).html).xpath("//style")[0].text
    phone = style[style.index("@media only screen and (max-width: 480px)") :]
    rule = re.search(r"\.link\{([^}]*)\}", phone.replace(" ", "")).group(1)
    padding = int(re.search(r"padding:(\d+)px", rule).group(1))
    line = int(re.search(r"line-height:(\d+)px", rule).group(1))
    assert "display:inline-block" in rule and 2 * padding + line >= 44


def test_a_cached_text_card_keeps_its_number_in_each_digest() -> None:
    """The card is cached across digests; its position in each one is not part of it."""
    env = make_environment(TEMPLATES_DIR, inline=True)
    papers = hf_papers()
    render_digest(content(papers[:2]), env)
    text = render_digest(content([papers[1]]), env).text
    assert f"1. {papers[1].title[:30]}" in text
