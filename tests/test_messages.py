"""MIME messages parsed back with the email package: parts, headers, one-click unsubscribe,
header injection, and the wire policy's equivalence with the stock one."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default

import pytest
from test_rendering import content, hf_papers

from digest import messages
from digest.editions import digest_message
from digest.messages import WIRE, WireMessage, build_message, header_value, transfer_encoding
from digest.rendering import RenderedEmail
from digest.settings import Settings


def test_header_value_is_one_line() -> None:
    assert header_value("Hi\r\nBcc: x@evil.org") == "Hi Bcc: x@evil.org"


def test_transfer_encoding_is_8bit_until_a_line_is_too_long() -> None:
    assert transfer_encoding("short\n" * 100) == "8bit"
    assert transfer_encoding("é" * 400) == "8bit"  # 800 bytes: fits
    assert transfer_encoding("é" * 600) == "quoted-printable"  # 1,200 bytes: does not
    exactly = "é" * (messages.MAX_8BIT_LINE // 2)
    assert len(exactly.encode()) == messages.MAX_8BIT_LINE
    assert transfer_encoding(exactly) == "8bit"
    assert transfer_encoding(exactly + "e") == "quoted-printable"


def test_message_parts_and_headers(settings: Settings) -> None:
    msg = digest_message(content(hf_papers()[:5]), settings, 42, dt.datetime(2026, 11, 23, 7, 0))
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
    again = digest_message(content(hf_papers()[:5]), settings, 42, dt.datetime(2026, 11, 23, 8, 0))
    assert again["Message-ID"] == msg["Message-ID"], "a resend keeps its Message-ID"


def test_subject_with_user_controlled_newlines_stays_one_header(settings: Settings) -> None:
    digest = content(hf_papers()[:1], topics=("rl\r\nBcc: victim@example.org",))
    parsed = message_from_bytes(
        digest_message(digest, settings, 1, dt.datetime(2026, 11, 23)).as_bytes(), policy=default
    )
    assert parsed["Bcc"] is None and "Bcc" in parsed["Subject"]


def test_non_ascii_subject_is_encoded_and_long_headers_are_folded(settings: Settings) -> None:
    digest = content(hf_papers()[:2], topics=("réseaux de neurones", "グラフ"))
    digest = replace(digest, unsubscribe_url="https://digest.example.org/unsubscribe/" + "T" * 1200)
    raw = digest_message(digest, settings, 7, dt.datetime(2026, 11, 23)).as_bytes()
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
    the stdlib's EmailMessage with its stock SMTP policy."""
    digest = content(hf_papers()[:3], topics=topics)
    monkeypatch.setattr(secrets, "token_hex", lambda n: "ab" * n)  # the same MIME boundary in both
    fast = digest_message(digest, settings, 5, dt.datetime(2026, 11, 23, 7))
    assert isinstance(fast, WireMessage) == topics[0].isascii(), "the direct path is the common one"
    monkeypatch.setattr(messages, "WIRE", SMTP.clone(max_line_length=998))
    monkeypatch.setattr(messages, "_fits_the_direct_path", lambda *_: False)
    stock = digest_message(digest, settings, 5, dt.datetime(2026, 11, 23, 7))
    assert isinstance(stock, EmailMessage) and stock.as_bytes() == fast.as_bytes()


@pytest.mark.parametrize(
    "text, html",
    [
        ("", ""),
        ("no newline at the end", "<p>x</p>"),
        ("a\r\nb\rc\n\nd\n\n", "x\n\n\n"),
        ("é\n" * 3, "ü"),
    ],
)
def test_direct_bytes_match_the_stdlib_for_awkward_bodies(
    monkeypatch, text: str, html: str
) -> None:
    monkeypatch.setattr(secrets, "token_hex", lambda n: "cd" * n)
    args = {
        "sender": "Paper Digest <digest@example.org>",
        "recipient": "ada@example.org",
        "msg_id": "<a@b>",
        "date": dt.datetime(2026, 7, 13, 7, 30),
        "unsubscribe_url": "https://x/y",
    }
    direct = build_message(RenderedEmail("S", text, html), **args)
    monkeypatch.setattr(messages, "_fits_the_direct_path", lambda *_: False)
    assert direct.as_bytes() == build_message(RenderedEmail("S", text, html), **args).as_bytes()


def test_wire_policy_still_refuses_header_newlines() -> None:
    msg = EmailMessage(policy=WIRE)
    with pytest.raises(ValueError):
        msg["Subject"] = "hi\r\nBcc: victim@example.org"


def test_unsubscribe_mailto_is_offered_when_configured(settings: Settings) -> None:
    configured = settings.model_copy(update={"unsubscribe_mailto": "unsubscribe@example.org"})
    msg = digest_message(content(hf_papers()[:1]), configured, 1, dt.datetime(2026, 11, 23))
    assert msg["List-Unsubscribe"] == (
        "<https://digest.example.org/unsubscribe/TOKEN-U>, "
        "<mailto:unsubscribe@example.org?subject=unsubscribe>"
    )


def test_a_zoned_date_keeps_its_offset_and_a_naive_one_is_utc() -> None:
    rendered = RenderedEmail(subject="s", text="t", html="<p>h</p>")
    paris = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    dates = [
        build_message(rendered, sender="d@x.org", recipient="a@x.org", msg_id="<1@x>", date=d)[
            "Date"
        ]
        for d in (paris, dt.datetime(2026, 11, 23, 7, 0))
    ]
    assert dates == ["Mon, 23 Nov 2026 08:00:00 +0100", "Mon, 23 Nov 2026 07:00:00 +0000"]


def test_an_internationalised_address_travels_as_utf8_and_an_idn_domain_as_punycode() -> None:
    rendered = RenderedEmail(subject="s", text="t", html="<p>h</p>")
    raw = build_message(
        rendered,
        sender="d@x.org",
        recipient="józef@bücher.example",
        msg_id="<1@x>",
        date=dt.datetime(2026, 11, 23),
    ).as_bytes()
    assert "To: józef@xn--bcher-kva.example\r\n".encode() in raw, "SMTPUTF8, not RFC 2047"


def test_a_boundary_is_never_a_line_of_either_part(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = iter(["in-text", "in-html", "free"])
    monkeypatch.setattr(messages.secrets, "token_hex", lambda _n: next(tried))
    rendered = RenderedEmail(subject="s", text="--=_digest_in-text", html="=_digest_in-html")
    assert messages.boundary_for(rendered) == "=_digest_free"
