"""Rendered digests: what each paper shows, escaping, CSS inlining and the card cache."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

from conftest import FEEDS
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
    render_already_subscribed,
    render_confirmation,
    render_digest,
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
        == "5 new papers on graph neural networks, efficient attention - Nov 23"
    )
    one = render_digest(content(hf_papers()[:1], topics=("rl", "nlp")))
    assert one.subject == "1 new paper on rl - Nov 23"
    assert (
        render_digest(content([], trending=hf_papers()[:3])).subject
        == "Nothing new on your topics today - trending papers - Nov 23"
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
    assert "Hyunjae Kim, Dain Kim, Pan Xiao et al." in first.text_content()
    assert "0 upvotes on Hugging Face" in first.text_content()
    assert 'Why: matches "graph neural networks"' in first.text_content()
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
        "Why: matches" in rendered.text
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
    assert "Trending on Hugging Face (not picked for your topics)" in rendered.text
    assert len(parse_html(rendered.html).find_class("card")) == 3


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
    env = make_environment()
    papers = hf_papers()[:4]
    first = render_digest(content(papers), env)
    again = render_digest(content(papers), env)  # every card now comes from the cache
    assert again == first == render_digest(content(papers), make_environment())
    assert (
        len(env.extensions[FragmentCacheExtension.identifier].cache.fragments) == 4 * 2
    )  # html + text card
    upvoted = [replace(papers[0], upvotes=(papers[0].upvotes or 0) + 1000), *papers[1:]]
    html = render_digest(content(upvoted), env).html
    assert (
        f"{(papers[0].upvotes or 0) + 1000} upvotes" in html
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
