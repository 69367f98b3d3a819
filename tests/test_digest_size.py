"""A digest is never clipped: Gmail hides everything past 102 KB of an email's HTML, the
footer's unsubscribe and preferences links included, and a 50-paper digest of real abstracts
is ~130 KB. The HTML part as sent must stay under 100 KB whatever ``max_papers`` is, and the
plain-text part carries every pick."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from email import message_from_bytes
from email.policy import default
from typing import Any

import pytest
from conftest import FEEDS, FIXTURES
from lxml import html as lxml_html
from test_rendering import hf_papers

from digest import emails
from digest.editions import digest_content
from digest.emails import REFERENCE
from digest.evaluation import load_papers_file
from digest.messages import Message
from digest.records import SubscriberRecord
from digest.rendering import FULL_SNIPPETS, DigestContent, render_digest
from digest.settings import Settings
from digest.sources import PaperRecord, parse_response
from digest.tokens import Tokens
from digest.wire import sent_size

NOW = dt.datetime(2026, 7, 14, 7)
TOPICS = ("graph neural networks", "efficient attention", "reinforcement learning")
LIMIT = 100_000  # bytes; Gmail clips at 102 KB


def dev_papers() -> list[PaperRecord]:
    """258 real papers with their whole abstracts (titles and abstracts only)."""
    return load_papers_file(FIXTURES / "ranking-dev" / "papers.json")[-50:]


def feed_papers() -> list[PaperRecord]:
    """50 real papers as the sources give them: Hugging Face's (upvotes, summaries, code,
    organisations) first, then arXiv's with their authors: the longest cards there are."""
    arxiv = parse_response((FEEDS / "arxiv_api_cat_cs.AI_OR_cs.LG_2026-07-13.xml").read_bytes())
    return [*hf_papers()[3:], *arxiv.papers][:50]


def digest_of(count: int, pool: Callable[[], list[PaperRecord]] = feed_papers) -> DigestContent:
    """``count`` picks of real papers, three trending ones, signed links as sent."""
    papers = pool()[:count]
    reader = SubscriberRecord(
        7, "ada.lovelace@example.org", "active", TOPICS, "UTC", 7, 50, NOW, NOW
    )
    picks: list[dict[str, Any]] = [
        {"arxiv_id": p.arxiv_id, "topic": TOPICS[n % 3], "reason": f"matches “{TOPICS[n % 3]}”"}
        for n, p in enumerate(papers)
    ]
    trending = hf_papers()[:3]
    picks += [{"arxiv_id": p.arxiv_id, "topic": None, "reason": None} for p in trending]
    known = {p.arxiv_id: p for p in [*papers, *trending]}
    return digest_content(
        reader, picks, known, NOW.date(), Tokens("k" * 32), "https://d.example.org"
    )


def html_part(message: Message) -> bytes:
    """The HTML part as it goes over the wire: its headers and body, up to the next boundary."""
    raw = message.as_bytes()
    boundary = message_from_bytes(raw, policy=default).get_boundary()
    assert boundary
    return next(p for p in raw.split(b"--" + boundary.encode()) if b"text/html" in p[:200])


def html_doc(message: Message) -> Any:
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    body = parsed.get_body(("html",))
    assert body is not None
    return lxml_html.fromstring(str(body.get_content()))


def text_part(message: Message) -> str:
    parsed = message_from_bytes(message.as_bytes(), policy=default)
    body = parsed.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def more_links(doc: Any, content: DigestContent) -> list[Any]:
    return [a for a in doc.iter("a") if a.get("href") == content.archive_url and "more" in a.text]


@pytest.mark.parametrize("pool", [feed_papers, dev_papers])
@pytest.mark.parametrize("count", [1, 10, 50])
def test_the_html_part_stays_under_budget_with_its_footer(
    count: int, pool: Callable[[], list[PaperRecord]], settings: Settings
) -> None:
    content = digest_of(count, pool)
    message = emails.digest(content, settings, 1, NOW)
    part = html_part(message)
    assert len(part) < LIMIT
    doc = html_doc(message)
    hrefs = {a.get("href") for a in doc.iter("a")}
    assert {content.preferences_url, content.unsubscribe_url} <= hrefs
    cards = doc.find_class("card")
    dropped = count - len(cards)
    links = more_links(doc, content)
    if dropped:
        assert [a.text_content() for a in links] == [f"{dropped} more papers in the browser"]
    else:
        assert links == []
    assert f"{count} paper" in doc.find_class("section")[0].text_content(), "the count is all picks"
    text = text_part(message)
    assert all(f"Read: {item.url}" in text for item in content.items), "text: every pick"
    assert content.unsubscribe_url in text


def test_a_short_digest_is_sent_whole(settings: Settings) -> None:
    """10 papers fit: every card keeps its full abstract (snippet)."""
    content = digest_of(10)
    doc = html_doc(emails.digest(content, settings, 1, NOW))
    snippets = [s.text_content() for s in doc.find_class("snippet")]
    assert snippets == [item.snippet for item in content.items]


def test_fifty_papers_keep_full_abstracts_first_then_drop_cards_for_the_browser(
    settings: Settings,
) -> None:
    content = digest_of(50)
    doc = html_doc(emails.digest(content, settings, 1, NOW))
    cards = doc.find_class("card")
    assert 20 < len(cards) < 50, "as many cards as fit, the rest a link away"
    first = [c.find_class("snippet")[0].text_content() for c in cards[:FULL_SNIPPETS]]
    assert first == [item.snippet for item in content.items[:FULL_SNIPPETS]]
    assert all(not c.find_class("snippet") for c in cards[FULL_SNIPPETS:])
    titles = [c.find_class("title")[0].text_content() for c in cards]
    assert titles == [item.title for item in content.items[: len(cards)]], "best picks first"
    assert len(doc.find_class("trend")) == 3, "the trending section stays"


def test_the_reference_path_fits_the_same_way(settings: Settings) -> None:
    content = digest_of(50)
    fast = html_doc(emails.digest(content, settings, 1, NOW))
    slow = html_doc(emails.digest(content, settings, 1, NOW, paths=REFERENCE))
    assert [e.text_content() for e in fast.find_class("card")] == [
        e.text_content() for e in slow.find_class("card")
    ]


@pytest.mark.parametrize("line", ["short", "x" * 2000], ids=["8bit", "quoted-printable"])
def test_the_size_fitted_is_the_size_sent(line: str, settings: Settings) -> None:
    """The bytes fit_digest counts are those of the HTML part on the wire, in either encoding
    (a line over 998 bytes, such as an enormous title, makes the part quoted-printable)."""
    content = digest_of(3)
    content = replace(content, topics=(line, *content.topics[1:]))
    message = emails.digest(content, settings, 1, NOW)
    part = html_part(message)
    body = part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
    assert (b"quoted-printable" in part[:200]) == (len(line) > 1000)
    assert sent_size(render_digest(content).html) == len(body)
