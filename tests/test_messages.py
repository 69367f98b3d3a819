"""MIME messages parsed back with the email package: headers, encodings, and the direct
writer's equivalence with the stdlib's (what each kind of email carries: test_emails)."""

from __future__ import annotations

import datetime as dt
import secrets
from email.message import EmailMessage

import pytest

from digest import messages, wire
from digest.messages import WIRE, build_message, header_value, transfer_encoding, write_reference
from digest.rendering import RenderedEmail


def test_header_value_is_one_line() -> None:
    assert header_value("Hi\r\nBcc: x@evil.org") == "Hi Bcc: x@evil.org"


def test_transfer_encoding_is_8bit_until_a_line_is_too_long() -> None:
    assert transfer_encoding("short\n" * 100) == "8bit"
    assert transfer_encoding("é" * 400) == "8bit"  # 800 bytes: fits
    assert transfer_encoding("é" * 600) == "quoted-printable"  # 1,200 bytes: does not
    exactly = "é" * (wire.MAX_8BIT_LINE // 2)
    assert len(exactly.encode()) == wire.MAX_8BIT_LINE
    assert transfer_encoding(exactly) == "8bit"
    assert transfer_encoding(exactly + "e") == "quoted-printable"


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
    reference = build_message(RenderedEmail("S", text, html), **args, write=write_reference)
    assert isinstance(reference, EmailMessage) and direct.as_bytes() == reference.as_bytes()


def test_wire_policy_still_refuses_header_newlines() -> None:
    msg = EmailMessage(policy=WIRE)
    with pytest.raises(ValueError):
        msg["Subject"] = "hi\r\nBcc: victim@example.org"


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
