"""A real SMTP server (aiosmtpd) that accepts and records every message.

Used by the test suite (in-process, with scripted failures), by ``digest smtp-sink`` for
demos, and by the delivery benchmark. Never a mock: clients talk SMTP to it over TCP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

Reply = Callable[[str], str | None]  # recipient -> SMTP reply to refuse with, or None to accept


@dataclass
class Received:
    recipient: str
    data: bytes

    def message(self) -> Message:
        return message_from_bytes(self.data, policy=default)


@dataclass
class SinkHandler:
    """Records messages; ``mail_reply``/``rcpt_reply``/``data_reply`` script refusals; ``drop_every`` closes
    the connection after that many accepted messages on it (then resets); ``pipelining=False``
    makes it a server that takes one command at a time. With ``keep=False``
    (the long-running ``digest smtp-sink``) it only counts them, so memory stays flat."""

    maildir: Path | None = None
    keep: bool = True
    accepted: int = 0
    received: list[Received] = field(default_factory=list)
    mail_reply: Reply | None = None  # gets the sender address
    rcpt_reply: Reply | None = None
    data_reply: Reply | None = None
    drop_every: int = 0
    pipelining: bool = True  # offer RFC 2920 PIPELINING in the EHLO answer, as relays do
    delay: float = 0.0  # seconds per accepted message: a slow server, for crash-mid-batch tests
    late_answer: float = 0.0  # seconds between keeping a message and saying so: a slow relay
    lock: threading.Lock = field(default_factory=threading.Lock)
    _count_on_connection: Counter[int] = field(default_factory=Counter)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads one command after the other either way
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = self.mail_reply(address) if self.mail_reply else None
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_reply(address) if self.rcpt_reply else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipient = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        reply = self.data_reply(recipient) if self.data_reply else None
        if reply:
            return reply
        if self.delay:
            await asyncio.sleep(self.delay)
        connection = id(session)
        if self.drop_every and self._count_on_connection[connection] >= self.drop_every:
            self._count_on_connection[connection] = 0
            assert server.transport is not None  # set while the session's connection is open
            server.transport.close()  # the message is NOT accepted: the client sees a disconnect
            return "421 closing"
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)  # decode_data=False: aiosmtpd keeps the bytes
        with self.lock:
            self.accepted += len(envelope.rcpt_tos)
            if self.keep:
                self.received.extend(Received(rcpt, raw) for rcpt in envelope.rcpt_tos)
        self._count_on_connection[connection] += 1
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
            (self.maildir / f"{time.time_ns()}.eml").write_bytes(raw)
        if self.late_answer:
            await asyncio.sleep(self.late_answer)
        return "250 Message accepted"

    def by_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(r.recipient for r in self.received)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 in a background thread."""

    def __init__(self, port: int = 0, handler: SinkHandler | None = None, **security: Any) -> None:
        """``security``: aiosmtpd's TLS and AUTH options (``tls_context`` and
        ``require_starttls`` for STARTTLS, ``ssl_context`` for implicit TLS,
        ``authenticator``), so the tests can speak to a server as strict as a real relay."""
        self.handler = handler or SinkHandler()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=port or _free_port(),
            server_hostname="localhost",  # else a reverse DNS lookup per connection
            decode_data=False,
            enable_SMTPUTF8=True,
            data_size_limit=10 * 1024 * 1024,
            **security,
        )

    @property
    def port(self) -> int:
        return self.controller.port

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PortBusy(OSError):
    """The port is taken; the message says which and what to do."""


def run_sink(host: str, port: int, maildir: Path | None) -> None:
    _check_free(host, port)
    sink = SmtpSink(port, SinkHandler(maildir=maildir, keep=False)).start()
    print(f"SMTP sink listening on {host}:{sink.port}; Ctrl-C to stop", flush=True)
    reported = 0
    try:
        while True:
            time.sleep(1)
            if sink.handler.accepted != reported:
                reported = sink.handler.accepted
                print(f"{reported} message{'' if reported == 1 else 's'} received", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


def _check_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortBusy(
                f"port {port} on {host} is in use ({exc.strerror}): pick another with --port"
            ) from None
