"""Every kind of email, as the service sends it: parts, headers, one-click unsubscribe, header
injection; and each one made by the fast paths against the same made by the reference ones
(docs/performance.md, "Fast paths"): MIME bytes identical, cached cards identical, and per-template
CSS inlining identical to per-email inlining element by element."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from types import SimpleNamespace
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from test_rendering import content, hf_papers

from digest import emails, tokens
from digest.emails import FAST, REFERENCE, Paths
from digest.messages import Message, WireMessage, write_fast, write_reference
from digest.records import ListRecord, SubscriberRecord
from digest.rendering import default_environment, render_email
from digest.settings import Settings
from digest.subscriptions import SubscriberInput

NOW = dt.datetime(2026, 11, 23, 7)
# One fast path swapped for its reference at a time: each must change no byte.
STOCK_MIME = Paths(render_email, write_reference)
NO_CARD_CACHE = Paths(
    lambda name, context: render_email(name, context, default_environment(fragment_cache=False)),
    write_fast,
)
ADA = SubscriberRecord(7, "ada@example.org", "active", ("rl", "agents"), "UTC", 7, 5, NOW, NOW)


def test_message_parts_and_headers(settings: Settings) -> None:
    msg = emails.digest(content(hf_papers()[:5]), settings, 42, dt.datetime(2026, 11, 23, 7, 0))
    parsed = message_from_bytes(msg.as_bytes(), policy=default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parsed.iter_parts())
    assert (
        parsed["Subject"]
        == "5 new papers on graph neural networks and efficient attention - Nov 23"
    )
    assert parsed["To"] == "ada@example.org"
    assert parsed["Date"] == "Mon, 23 Nov 2026 07:00:00 +0000"
    assert parsed["Message-ID"].startswith("<digest.20261123.42.") and parsed[
        "Message-ID"
    ].endswith("@localhost>")
    assert parsed["List-Unsubscribe"] == "<https://digest.example.org/unsubscribe/TOKEN-U>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Id"] == "Paper Digest <daily.digest.localhost>"
    assert parsed["Auto-Submitted"] == "auto-generated", "RFC 3834: no auto-replies, please"
    again = emails.digest(content(hf_papers()[:5]), settings, 42, dt.datetime(2026, 11, 23, 8, 0))
    assert again["Message-ID"] == msg["Message-ID"], "a resend keeps its Message-ID"


def test_subject_with_user_controlled_newlines_stays_one_header(settings: Settings) -> None:
    digest = content(hf_papers()[:1], topics=("rl\r\nBcc: victim@example.org",))
    parsed = message_from_bytes(
        emails.digest(digest, settings, 1, dt.datetime(2026, 11, 23)).as_bytes(), policy=default
    )
    assert parsed["Bcc"] is None and "Bcc" in parsed["Subject"]


def test_non_ascii_subject_is_encoded_and_long_headers_are_folded(settings: Settings) -> None:
    digest = content(hf_papers()[:2], topics=("réseaux de neurones", "グラフ"))
    digest = replace(digest, unsubscribe_url="https://digest.example.org/unsubscribe/" + "T" * 1200)
    raw = emails.digest(digest, settings, 7, dt.datetime(2026, 11, 23)).as_bytes()
    assert raw.isascii() and b"=?utf-8?" in raw  # RFC 2047, not raw UTF-8, without SMTPUTF8
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = message_from_bytes(raw, policy=default)
    assert parsed["Subject"] == "2 new papers on réseaux de neurones and グラフ - Nov 23"
    assert parsed["List-Unsubscribe"] == f"<{digest.unsubscribe_url}>"


@pytest.mark.parametrize("topics", [("graph neural networks",), ("réseaux de neurones", "グラフ")])
def test_wire_policy_writes_exactly_what_the_stock_policy_writes(
    settings: Settings, monkeypatch, topics
) -> None:
    """Our bytes, written directly (ASCII topics) or through WirePolicy (non-ASCII), against
    the stdlib's EmailMessage with its stock SMTP policy (the reference writer)."""
    digest = content(hf_papers()[:3], topics=topics)
    monkeypatch.setattr(secrets, "token_hex", lambda n: "ab" * n)  # the same MIME boundary in both
    fast = emails.digest(digest, settings, 5, dt.datetime(2026, 11, 23, 7))
    assert isinstance(fast, WireMessage) == topics[0].isascii(), "the direct path is the common one"
    stock = emails.digest(digest, settings, 5, dt.datetime(2026, 11, 23, 7), paths=STOCK_MIME)
    assert isinstance(stock, EmailMessage) and stock.as_bytes() == fast.as_bytes()


def test_unsubscribe_mailto_is_offered_when_configured(settings: Settings) -> None:
    configured = settings.model_copy(update={"unsubscribe_mailto": "unsubscribe@example.org"})
    msg = emails.digest(content(hf_papers()[:1]), configured, 1, dt.datetime(2026, 11, 23))
    assert msg["List-Unsubscribe"] == (
        "<https://digest.example.org/unsubscribe/TOKEN-U>, "
        "<mailto:unsubscribe@example.org?subject=unsubscribe>"
    )


def kinds(settings: Settings) -> dict[str, Callable[[Paths], Message]]:
    """Each kind of email, in the shapes that take different paths: an ASCII digest (bytes
    written directly), a non-ASCII one (the stdlib with WirePolicy), one with trending papers,
    quiet topics and an unsubscribe URL past one header line; both account emails."""
    plain = content(hf_papers()[:6], trending=hf_papers()[6:9])
    quiet = replace(plain, topics=(*plain.topics, "agents"), quiet_topics=("agents",))
    foreign = content(hf_papers()[:3], topics=("réseaux de neurones", "グラフ"))
    long_link = replace(plain, unsubscribe_url="https://digest.example.org/u/" + "T" * 1200)
    request = SubscriberInput("ada@example.org", ("rl", "agents"), "UTC", 7, 5)
    paused = replace(ADA, status="paused")
    made: dict[str, Callable[[Paths], Message]] = {
        "confirmation": lambda p: emails.confirmation(ADA, request, settings, NOW, paths=p),
        "already subscribed": lambda p: emails.already_subscribed(paused, settings, NOW, paths=p),
    }
    for name, digest in [
        ("digest", plain),
        ("quiet digest", quiet),
        ("non-ascii digest", foreign),
        ("long-link digest", long_link),
    ]:
        made[name] = lambda p, d=digest: emails.digest(d, settings, 5, NOW, paths=p)
    titled = replace(plain, title=ROBOTS.title, subject_title=ROBOTS.title)
    made["list digest"] = lambda p: emails.digest(titled, settings, 5, NOW, paths=p, listed=ROBOTS)
    return made


ROBOTS = ListRecord(2, "robots", "Robots & Réseaux", sender="Lab <lab@example.org>")


def test_a_lists_digest_is_from_its_sender_with_its_list_id_and_title(settings: Settings) -> None:
    digest = replace(content(hf_papers()[:2]), title="Robots", subject_title="Robots")
    listed = replace(ROBOTS, title="Robots")
    msg = message_from_bytes(
        emails.digest(digest, settings, 3, NOW, listed=listed).as_bytes(), policy=default
    )
    assert msg["From"] == "Lab <lab@example.org>"
    assert msg["List-Id"] == "Robots <robots.digest.example.org>"
    assert msg["Subject"].startswith("Robots: 2 new papers")
    assert msg["Message-ID"].endswith("@example.org>")
    html = msg.get_body(("html",)).get_content()
    assert '<div class="brand"' in html and ">Robots</div>" in html


KINDS = [
    "digest",
    "quiet digest",
    "non-ascii digest",
    "long-link digest",
    "list digest",
    "confirmation",
    "already subscribed",
]


@pytest.fixture
def same_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same MIME boundary, account Message-ID and link tokens on every path."""
    monkeypatch.setattr(secrets, "token_hex", lambda n: "ab" * n)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_784_000_000)
    monkeypatch.setattr(tokens, "time", SimpleNamespace(time=lambda: 1_784_000_000.5))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("swapped", [STOCK_MIME, NO_CARD_CACHE], ids=["stock-mime", "no-cache"])
def test_each_fast_path_changes_no_byte(
    settings: Settings, same_randomness: None, kind: str, swapped: Paths
) -> None:
    make = kinds(settings)[kind]
    make(FAST)  # every card of this email now comes from the fragment cache
    assert make(FAST).as_bytes() == make(swapped).as_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_fast_paths_make_what_the_reference_makes(
    settings: Settings, same_randomness: None, kind: str
) -> None:
    """premailer reserialises what it inlines (``&#34;`` for ``"``...), so the HTML part is
    compared element by element; everything else byte for byte."""
    make = kinds(settings)[kind]
    fast = message_from_bytes(make(FAST).as_bytes(), policy=default)
    reference = message_from_bytes(make(REFERENCE).as_bytes(), policy=default)
    assert fast.items() == reference.items()
    fast_text, fast_html = fast.iter_parts()
    reference_text, reference_html = reference.iter_parts()
    assert fast_text.as_bytes() == reference_text.as_bytes()
    assert fast_html.items() == reference_html.items()
    assert elements(fast_html.get_content()) == elements(reference_html.get_content())


def elements(html: str) -> list[tuple[Any, ...]]:
    from lxml import html as lxml_html

    return [
        (e.tag, dict(e.attrib), (e.text or "").strip(), (e.tail or "").strip())
        for e in lxml_html.fromstring(html).iter()
    ]


def test_a_confirmation_carries_the_settings_asked_for_in_its_link(settings: Settings) -> None:
    request = SubscriberInput("ada@example.org", ("rl", "agents"), "Europe/Paris", 8, 4)
    mail = message_from_bytes(
        emails.confirmation(ADA, request, settings, NOW).as_bytes(), policy=default
    )
    assert mail["To"] == "ada@example.org"
    assert mail["Subject"] == "Confirm your Paper Digest subscription"
    assert mail["Message-ID"].startswith("<account.") and mail["List-Unsubscribe"] is None
    text = mail.get_body(("plain",)).get_content()
    token = text.split(f"{settings.base_url}/confirm/")[1].split()[0]
    read = settings.tokens.read("confirm", token)
    assert read.payload == {"t": ["rl", "agents"], "z": "Europe/Paris", "H": 8, "m": 4}
    assert read.belongs_to("ada@example.org")


WEEKLY = ListRecord(
    2, "ml-weekly", "ML Weekly", cadence="weekly:mon", sender="ML Weekly <ml@lab.example.org>"
)


@pytest.mark.parametrize("kind", ["confirmation", "already_subscribed", "preferences_link"])
def test_account_mail_names_its_list_and_comes_from_its_sender(
    settings: Settings, kind: str
) -> None:
    """A sign-up to a list is answered by that list: its title, its sender (and the domain
    of its Message-ID), but no list headers: a one-off mail, not the list's."""
    make = {
        "confirmation": lambda: emails.confirmation(
            ADA, SubscriberInput(ADA.email, ADA.topics), settings, NOW, listed=WEEKLY
        ),
        "already_subscribed": lambda: emails.already_subscribed(ADA, settings, NOW, listed=WEEKLY),
        "preferences_link": lambda: emails.preferences_link(ADA, settings, NOW, listed=WEEKLY),
    }
    mail = message_from_bytes(make[kind]().as_bytes(), policy=default)
    assert mail["From"] == "ML Weekly <ml@lab.example.org>"
    assert mail["Message-ID"].endswith("@lab.example.org>")
    assert "ML Weekly" in mail["Subject"] and "Paper Digest" not in mail["Subject"]
    assert mail["List-Id"] is None and mail["List-Unsubscribe"] is None
    if kind == "confirmation":
        text = " ".join(mail.get_body(("plain",)).get_content().split())
        assert "wants ML Weekly: a digest of new papers on rl, agents, weekly, on Mondays." in text


def test_already_subscribed_links_to_preferences_and_says_paused(settings: Settings) -> None:
    paused = replace(ADA, status="paused")
    mail = message_from_bytes(
        emails.already_subscribed(paused, settings, NOW).as_bytes(), policy=default
    )
    assert mail["Subject"] == "You already have a Paper Digest subscription"
    assert mail["List-Unsubscribe"] is None, "not bulk mail: a reply to a sign-up"
    text = mail.get_body(("plain",)).get_content()
    token = text.split(f"{settings.base_url}/preferences/")[1].split()[0]
    assert settings.tokens.read("preferences", token).belongs_to("ada@example.org")
    assert "(paused at the moment)" in text
