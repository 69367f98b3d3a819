"""MIME messages (stdlib ``EmailMessage``): multipart/alternative text + HTML, list headers.

Header values are built from settings and user data (subjects carry topics), so every
value passes through :func:`header_value`, which removes line breaks: no header injection.

:func:`build_message` writes through one of two writers: :func:`write_fast` (the default, bytes
written directly) or :func:`write_reference` (the stdlib, stock policy), which tests hold it to
byte for byte. Which kinds of email exist and what they carry is :mod:`digest.emails`' business.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP, EmailPolicy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any

from digest.rendering import RenderedEmail

MAX_8BIT_LINE = 990
_BREAKS = re.compile(r"[\r\n\x00]+")
# Headers whose values this module writes itself, already one line (header_value), and
# in a form that needs no parsing to be correct on the wire: a bare address, a date from
# format_datetime, <angle-bracketed> ids and URLs, plain text; and the two fixed MIME values.
_VERBATIM_HEADERS = frozenset(
    {
        "subject",
        "to",
        "date",
        "message-id",
        "auto-submitted",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-transfer-encoding",
    }
)


class _HeaderClasses(HeaderRegistry):
    """The stdlib registry creates a new class (``type(...)``) for every header it parses;
    this one creates each header's class once."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        if key not in self._classes:
            self._classes[key] = super().__getitem__(name)
        return self._classes[key]


class WirePolicy(EmailPolicy):
    """The SMTP policy, minus work that buys nothing for the headers we write ourselves.

    The default policy parses every header value into a structured object when it is set
    and refolds it when the message is serialised: over half the cost of a digest message.
    An ASCII value of one of :data:`_VERBATIM_HEADERS` is stored as given and written
    as is (unless a line would pass ``max_line_length``: then it is parsed and folded as usual);
    a non-ASCII one (a subject with "é") still goes through the parser and is RFC 2047-encoded.
    """

    def header_store_parse(self, name: str, value: object) -> tuple[str, str]:
        if (
            isinstance(value, str)
            and name.lower() in _VERBATIM_HEADERS
            and value.isascii()
            and not _BREAKS.search(value)
        ):
            return (name, value)
        return super().header_store_parse(name, value)


# Header lines may be up to 998 octets (RFC 5322); folding at 78 makes the generator
# re-parse and refold every longer header (the List-Unsubscribe URL).
MAX_HEADER_LINE = 998
WIRE = WirePolicy(linesep="\r\n", max_line_length=MAX_HEADER_LINE, header_factory=_HeaderClasses())
WIRE_UTF8 = WIRE.clone(utf8=True)
REFERENCE = SMTP.clone(max_line_length=MAX_HEADER_LINE)
REFERENCE_UTF8 = REFERENCE.clone(utf8=True)


def header_value(value: str) -> str:
    """One line, no control characters that could start a new header."""
    return " ".join(_BREAKS.sub(" ", value).split())


def wire_address(email: str) -> str:
    """The address as it travels: an IDN domain in punycode (the local part as given)."""
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.encode('idna').decode('ascii')}" if domain else email


def needs_smtputf8(address: str) -> bool:
    return not address.isascii()


@lru_cache(maxsize=8)
def sender_header(sender: str) -> BaseHeader:
    """The From header, parsed once per process: the same display name and address in every message."""
    header: BaseHeader = WIRE.header_factory("From", header_value(sender))
    return header


@lru_cache(maxsize=8)
def sender_domain(sender: str) -> str:
    address = parseaddr(sender)[1]
    return address.rsplit("@", 1)[-1] if "@" in address else "localhost"


def message_id(
    delivery_id: int, edition: dt.date, secret: str, domain: str, install_id: str
) -> str:
    """Deterministic per delivery: a resend after a crash carries the same Message-ID, so a
    duplicate is recognisable downstream (and by our own SMTP sink in the tests). The
    install id keeps two databases' delivery 1 of the same day apart."""
    tag = hashlib.sha256(f"{secret}:{install_id}:{delivery_id}:{edition}".encode()).hexdigest()[:12]
    return f"<digest.{edition:%Y%m%d}.{delivery_id}.{tag}@{domain}>"


def account_message_id(sender: str) -> str:
    """A sign-up or reminder email is sent once, so its Message-ID only has to be unique."""
    return f"<account.{secrets.token_hex(16)}@{sender_domain(sender)}>"


class WireMessage:
    """A finished message as the wire carries it, with the headers callers read.

    What :func:`write_fast` returns for the common case; it answers ``as_bytes()`` and
    ``message["Name"]`` like an ``EmailMessage``, which the uncommon cases still are."""

    def __init__(self, raw: bytes, headers: dict[str, str]) -> None:
        self.raw = raw
        self.headers = headers

    def as_bytes(self) -> bytes:
        return self.raw

    def __getitem__(self, name: str) -> str | None:
        return self.headers.get(name)


Message = EmailMessage | WireMessage
# Writes a message from (headers, sender, rendered parts, MIME boundary): the seam between the
# fast writer and the reference one, which must give the same bytes for the same inputs.
Writer = Callable[[dict[str, str], str, RenderedEmail, str], Message]


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    msg_id: str,
    date: dt.datetime,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    list_id: str | None = None,
    write: Writer | None = None,
) -> Message:
    """A complete message: text part first, then HTML (clients show the last they support).
    ``write``: :func:`write_fast` unless told otherwise (:func:`write_reference`)."""
    to = wire_address(header_value(recipient))
    headers = {
        "Subject": header_value(rendered.subject),
        "From": str(sender_header(sender)),
        "To": to,
        "Date": format_datetime(date if date.tzinfo else date.replace(tzinfo=dt.UTC)),
        "Message-ID": header_value(msg_id),
        "Auto-Submitted": "auto-generated",
    }
    if list_id:
        headers["List-Id"] = header_value(list_id)
    if unsubscribe_url:
        targets = [f"<{header_value(unsubscribe_url)}>"]
        if unsubscribe_mailto:
            targets.append(f"<mailto:{header_value(unsubscribe_mailto)}?subject=unsubscribe>")
        headers["List-Unsubscribe"] = ", ".join(targets)
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
    return (write or write_fast)(headers, sender, rendered, boundary_for(rendered))


def write_reference(
    headers: dict[str, str], sender: str, rendered: RenderedEmail, boundary: str
) -> EmailMessage:
    """The readable reference: the stdlib's ``EmailMessage`` with its stock SMTP policy
    (lines up to 998 octets, as :data:`WIRE`), every header parsed and folded by the stdlib."""
    policy = REFERENCE_UTF8 if needs_smtputf8(headers["To"]) else REFERENCE
    return _stdlib_message(policy, headers, header_value(sender), rendered, boundary)


def write_fast(
    headers: dict[str, str], sender: str, rendered: RenderedEmail, boundary: str
) -> Message:
    """Our headers are one ASCII line and our parts 8bit text nearly always: then the bytes
    are written directly, exactly as :func:`write_reference` would write them (tests compare
    them) but ~10x faster, which on two cores is a fifth of a worker's time per message.
    Anything else (a non-ASCII subject, an over-long header or body line, an
    internationalised address) goes through ``EmailMessage`` with :class:`WirePolicy`."""
    if _fits_the_direct_path(headers, sender, rendered):
        return WireMessage(_direct_bytes(headers, sender, rendered, boundary), headers)
    policy = WIRE_UTF8 if needs_smtputf8(headers["To"]) else WIRE
    return _stdlib_message(policy, headers, sender_header(sender), rendered, boundary)


def _fits_the_direct_path(headers: dict[str, str], sender: str, rendered: RenderedEmail) -> bool:
    return (
        all(v.isascii() and len(k) + 2 + len(v) <= MAX_HEADER_LINE for k, v in headers.items())
        and sender_line(sender).isascii()
        and sender_line(sender).count("\n") == 1
        and transfer_encoding(rendered.text) == "8bit"
        and transfer_encoding(rendered.html) == "8bit"
    )


def _direct_bytes(
    headers: dict[str, str], sender: str, rendered: RenderedEmail, boundary: str
) -> bytes:
    """The bytes :func:`write_reference` gives for ASCII one-line headers and 8bit parts,
    written without building the object tree."""
    top = "".join(
        sender_line(sender) if k == "From" else f"{k}: {v}\r\n" for k, v in headers.items()
    )
    delimiter = f"--{boundary}\r\n"
    return b"".join(
        (
            top.encode("ascii"),
            f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f'{delimiter}Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'.encode(
                "ascii"
            ),
            _crlf_lines(rendered.text),
            f'\r\n{delimiter}Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n'
            "MIME-Version: 1.0\r\n\r\n".encode("ascii"),
            _crlf_lines(rendered.html),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )


def _crlf_lines(body: str) -> bytes:
    """A text part's payload as the stdlib encodes it: its lines, each ended by CRLF."""
    return b"\r\n".join(body.encode("utf-8").splitlines()) + b"\r\n"


@lru_cache(maxsize=8)
def sender_line(sender: str) -> str:
    """The From line exactly as the stdlib folds it, computed once per sender."""
    return sender_header(sender).fold(policy=WIRE)


def _stdlib_message(
    policy: EmailPolicy[Any],
    headers: dict[str, str],
    sender: object,
    rendered: RenderedEmail,
    boundary: str,
) -> EmailMessage:
    msg = EmailMessage(policy=policy)
    for name, value in headers.items():
        msg[name] = sender if name == "From" else value
    msg.set_content(rendered.text, charset="utf-8", cte=transfer_encoding(rendered.text))
    msg.make_alternative(boundary=boundary)
    msg.add_alternative(
        rendered.html, subtype="html", charset="utf-8", cte=transfer_encoding(rendered.html)
    )
    return msg


def boundary_for(rendered: RenderedEmail) -> str:
    """A MIME boundary found in neither part. Choosing it here spares the generator its own
    check, which compiles a fresh regular expression for every message."""
    while True:
        boundary = f"=_digest_{secrets.token_hex(12)}"
        if boundary not in rendered.text and boundary not in rendered.html:
            return boundary


def transfer_encoding(body: str) -> str:
    """8bit (no re-encoding: ~2x cheaper than quoted-printable) while every line fits SMTP's
    998-octet limit, which our templates keep; quoted-printable for anything longer."""
    lines = body.splitlines()
    if max(map(len, lines), default=0) * 4 <= MAX_8BIT_LINE:  # a UTF-8 character is at most 4 bytes
        return "8bit"
    fits = all(len(line.encode("utf-8")) <= MAX_8BIT_LINE for line in lines)
    return "8bit" if fits else "quoted-printable"
