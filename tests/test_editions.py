"""One edition, from ranked picks to finished messages: a fixed day's digests must come out
the same, byte for byte, whatever the code's shape (tests/fixtures/golden/ was recorded
from the pipeline as it stood; set DIGEST_RECORD_GOLDEN=1 to record a deliberate change)."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import replace
from email import message_from_bytes
from email.policy import default

import pytest
from conftest import FEEDS, FIXTURES
from itsdangerous import TimestampSigner

from digest import emails
from digest.editions import digest_content, plan_edition
from digest.ranking import SEMANTIC_THRESHOLD
from digest.records import SubscriberRecord
from digest.rendering import RenderedEmail, render_digest
from digest.settings import Settings
from digest.sources import parse_response
from digest.tokens import Tokens

GOLDEN = FIXTURES / "golden" / "digests-2026-07-13.json"
NOW = dt.datetime(2026, 7, 13, 7, 30)
SUBSCRIBERS = [
    SubscriberRecord(
        1,
        "ada@example.org",
        "active",
        ("reinforcement learning", "large language model agents"),
        "Europe/London",
        7,
        5,
        NOW,
        NOW,
    ),
    SubscriberRecord(
        2,
        "bob@exämple.org",
        "active",
        ("video generation", "diffusion models"),
        "UTC",
        7,
        3,
        NOW,
        NOW,
    ),
    SubscriberRecord(3, "eve@example.org", "active", ("medieval poetry",), "UTC", 7, 5, NOW, NOW),
]


def fixed_day_digests(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, str]]:
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_784_000_000)
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    settings = Settings(
        secret_key="golden-secret-of-at-least-32-bytes",
        base_url="https://digest.example.org",
        sender="Paper Digest <digest@example.org>",
        unsubscribe_mailto="leave@example.org",
    )
    plan = plan_edition(papers, SUBSCRIBERS, {1: {papers[0].arxiv_id}}, NOW)
    tokens = Tokens(settings.secret_key)
    digests = {}
    for sub in SUBSCRIBERS:
        content = digest_content(
            sub, plan.picks[sub.id], plan.papers, NOW.date(), tokens, settings.base_url
        )
        message = emails.digest(content, settings, 100 + sub.id, NOW)
        headers = {
            name: str(message[name])
            for name in (
                "Subject",
                "From",
                "To",
                "Date",
                "Message-ID",
                "List-Id",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
            )
        }
        parsed = message_from_bytes(message.as_bytes(), policy=default)
        parts = {
            part.get_content_type(): part.get_content().replace("\r\n", "\n")
            for part in parsed.iter_parts()
        }
        digests[sub.email] = {**headers, **parts}
    return digests


def test_a_fixed_days_digests_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    digests = fixed_day_digests(monkeypatch)
    if os.environ.get("DIGEST_RECORD_GOLDEN") == "1":
        GOLDEN.write_text(
            json.dumps(digests, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert digests.keys() == expected.keys()
    for email, digest in digests.items():
        for field, value in expected[email].items():
            assert digest[field] == value, f"{email}: {field} changed"


def test_the_trending_fallback_never_repeats_what_a_subscriber_got() -> None:
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    nobody_matches = [SUBSCRIBERS[2]]  # "medieval poetry"
    first = [p["arxiv_id"] for p in plan_edition(papers, nobody_matches, {}, NOW).picks[3]]
    again = plan_edition(papers, nobody_matches, {3: set(first)}, NOW).picks[3]
    assert first and again and not {p["arxiv_id"] for p in again} & set(first)


def test_trending_today_follows_the_picks_unless_switched_off() -> None:
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    ada = SUBSCRIBERS[0]
    picks = plan_edition(papers, [ada], {}, NOW).picks[1]
    matched = [p["arxiv_id"] for p in picks if p["topic"]]
    trending = [p["arxiv_id"] for p in picks if not p["topic"]]
    voted = sorted(
        (p for p in papers if (p.upvotes or 0) > 0 and p.arxiv_id not in matched),
        key=lambda p: (-(p.upvotes or 0), p.arxiv_id),
    )
    assert len(matched) == 5 and trending == [p.arxiv_id for p in voted[:3]]
    off = plan_edition(papers, [replace(ada, show_trending=False)], {}, NOW).picks[1]
    assert [p["arxiv_id"] for p in off] == matched
    eve_off = replace(SUBSCRIBERS[2], show_trending=False)
    assert plan_edition(papers, [eve_off], {}, NOW).picks[3] == [], "nothing to send: skipped"


def test_a_topic_with_nothing_new_is_named_quiet() -> None:
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    sub = SubscriberRecord(
        9,
        "q@example.org",
        "active",
        ("video generation", "lattice quantum chromodynamics"),
        "UTC",
        7,
        5,
        NOW,
        NOW,
    )
    plan = plan_edition(papers, [SUBSCRIBERS[0], sub], {}, NOW)  # not the first row
    assert plan.quiet[9] == ["lattice quantum chromodynamics"]
    assert plan.quiet[1] == [], "ada's topics both had news"
    assert {p["topic"] for p in plan.picks[9] if p["topic"]} == {"video generation"}


def test_a_paper_as_topic_finds_papers_like_it_and_is_shown_by_its_title(encoder) -> None:
    """ "More like this paper": the named paper's meaning is the query (its title's words are
    everybody's); it is never its own match, the reason says what it is similar to, and the
    email names it by title."""
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    named = next(p for p in papers if "UniClawBench" in p.title)
    reader = SubscriberRecord(
        4, "cy@example.org", "active", (f"arxiv:{named.arxiv_id}",), "UTC", 7, 3, NOW, NOW
    )
    known = {named.arxiv_id: named}
    plan = plan_edition(papers, [reader], {}, NOW, SEMANTIC_THRESHOLD, encoder, known_papers=known)
    picks = [p for p in plan.picks[4] if p["topic"]]
    assert [plan.papers[p["arxiv_id"]].title.split(":")[0] for p in picks] == [
        "Long-Horizon-Terminal-Bench"
    ], "the one paper of the day as near in meaning (0.70); the next is at 0.59"
    assert named.arxiv_id not in {p["arxiv_id"] for p in plan.picks[4]}, "never its own match"
    assert {p["reason"] for p in picks} == {
        "Similar to “UniClawBench: A Universal Benchmark for Proactive Agents on…”"
    }
    content = digest_content(
        reader, plan.picks[4], plan.papers, NOW.date(), Tokens("k"), "https://x"
    )
    assert content.topics == ("like “UniClawBench: A Universal Benchmark for Proactive…”",)
    assert {item.topic for item in content.items} == set(content.topics)

    unknown = plan_edition(papers, [reader], {}, NOW, SEMANTIC_THRESHOLD, encoder)
    assert not [p for p in unknown.picks[4] if p["topic"]], "a paper not stored matches nothing"


def test_a_papers_age_counts_from_publication_else_first_sight_and_never_goes_negative() -> None:
    from digest.editions import paper_age_days
    from digest.sources import PaperRecord

    day_and_a_half = NOW - dt.timedelta(hours=36)
    assert paper_age_days(PaperRecord("1", "t", published_at=day_and_a_half), NOW) == 1.5
    seen_only = PaperRecord("2", "t", first_seen_at=NOW - dt.timedelta(hours=6))
    assert paper_age_days(seen_only, NOW) == 0.25
    both = PaperRecord("3", "t", published_at=day_and_a_half, first_seen_at=NOW)
    assert paper_age_days(both, NOW) == 1.5, "publication first"
    assert paper_age_days(PaperRecord("4", "t"), NOW) == 0.0, "never seen: new today"
    tomorrow = PaperRecord("5", "t", published_at=NOW + dt.timedelta(days=1))
    assert paper_age_days(tomorrow, NOW) == 0.0, "a clock ahead of ours is not negative age"


def test_most_upvoted_keeps_papers_with_a_vote_most_first_ties_by_id() -> None:
    from digest.editions import most_upvoted
    from digest.sources import PaperRecord

    papers = [
        PaperRecord("2611.00004", "t", upvotes=1),
        PaperRecord("2611.00003", "t", upvotes=0),
        PaperRecord("2611.00005", "t", upvotes=7),
        PaperRecord("2611.00002", "t", upvotes=None),
        PaperRecord("2611.00001", "t", upvotes=7),
    ]
    assert [p.arxiv_id for p in most_upvoted(papers)] == [
        "2611.00001",
        "2611.00005",
        "2611.00004",
    ]


def test_upvotes_and_freshness_order_papers_equally_on_topic() -> None:
    from digest.sources import PaperRecord

    def paper(arxiv_id: str, upvotes: int, age_days: float) -> PaperRecord:
        published = NOW - dt.timedelta(days=age_days)
        return PaperRecord(
            arxiv_id, "Graph neural networks", upvotes=upvotes, published_at=published
        )

    reader = SubscriberRecord(
        5, "g@example.org", "active", ("graph neural networks",), "UTC", 7, 3, NOW, NOW
    )
    papers = [paper("2611.00001", 0, 2), paper("2611.00002", 40, 2), paper("2611.00003", 0, 0)]
    picks = plan_edition(papers, [reader], {}, NOW).picks[5]
    assert [p["arxiv_id"] for p in picks if p["topic"]] == [
        "2611.00002",
        "2611.00003",
        "2611.00001",
    ]


def test_a_digest_skips_a_pick_whose_paper_is_gone_and_names_an_unknown_paper_topic() -> None:

    from digest.sources import PaperRecord

    papers = {p: PaperRecord(p, f"Title {p}") for p in ("2611.00001", "2611.00003")}
    picks = [
        {"arxiv_id": "2611.00001", "topic": "rl", "reason": None},
        {"arxiv_id": "2611.00002", "topic": "rl", "reason": "gone since"},
        {"arxiv_id": "2611.00003", "topic": "arxiv:2607.07953", "reason": "Similar"},
    ]
    reader = replace(SUBSCRIBERS[0], topics=("rl", "arxiv:2607.07953"))
    content = digest_content(reader, picks, papers, NOW.date(), Tokens("k"), "https://x.org")
    assert [(i.arxiv_id, i.topic, i.reason) for i in content.items] == [
        ("2611.00001", "rl", ""),
        ("2611.00003", "like arXiv 2607.07953", "Similar"),
    ]
    assert content.topics == ("rl", "like arXiv 2607.07953")


def test_a_paper_as_topic_agrees_with_itself_in_subject_picks_and_quiet_line(encoder) -> None:
    """#31: "1 paper for you today" above "Nothing new on like “Linear Attention…” today", under
    the subject "1 new paper on like “…”". The named paper is among today's, and excluded;
    a topic is quiet exactly when it has no pick, and a paper topic takes no "on"."""
    papers = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers
    bench = next(p for p in papers if "UniClawBench" in p.title)
    attention = next(p for p in papers if p.title.startswith("Linear Attention"))
    readers = [
        replace(SUBSCRIBERS[0], id=5, topics=(f"arxiv:{bench.arxiv_id}",), show_trending=False),
        replace(
            SUBSCRIBERS[0], id=6, topics=("reinforcement learning", f"arxiv:{attention.arxiv_id}")
        ),
    ]
    known = {p.arxiv_id: p for p in (bench, attention)}
    plan = plan_edition(papers, readers, {}, NOW, SEMANTIC_THRESHOLD, encoder, known_papers=known)
    for reader in readers:
        picked = {p["topic"] for p in plan.picks[reader.id] if p["topic"]}
        assert picked.isdisjoint(plan.quiet[reader.id]) and picked | set(
            plan.quiet[reader.id]
        ) == set(reader.topics), reader.topics

    def rendered(reader: SubscriberRecord) -> RenderedEmail:
        content = digest_content(
            reader,
            plan.picks[reader.id],
            plan.papers,
            NOW.date(),
            Tokens("k"),
            "https://x",
            plan.quiet[reader.id],
        )
        return render_digest(content)

    assert rendered(readers[0]).subject == (
        "1 new paper like “UniClawBench: A Universal Benchmark for Proactive…” - Jul 13"
    )
    assert plan.quiet[6] == [f"arxiv:{attention.arxiv_id}"], "nothing is as near to it today"
    text = " ".join(rendered(readers[1]).text.split())
    assert "Nothing new like “Linear Attention Architectures: Mechanisms…” today." in text
    assert "on like" not in text
