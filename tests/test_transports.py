"""The SMTP transport against a real aiosmtpd server speaking STARTTLS, implicit TLS and AUTH,
with a certificate from a throwaway CA (trustme): trusted, it delivers; untrusted, it refuses.
Every conversation test runs the fast transport and its reference (``smtp_transport``): the
same refusals and the same bytes received."""

from __future__ import annotations

import datetime as dt
import smtplib
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from digest.messages import build_message
from digest.rendering import RenderedEmail
from digest.settings import Settings
from digest.smtp_sink import SmtpSink
from digest.transports import (
    BaseTransport,
    OutboxTransport,
    PermanentError,
    PlainSmtpTransport,
    SmtpTransport,
    TransientError,
    dot_stuffed,
)


def message(subject: str, text: str, html: str, msg_id: str):
    return build_message(
        RenderedEmail(subject, text, html),
        sender="Paper Digest <digest@example.org>",
        recipient="ada@example.org",
        msg_id=msg_id,
        date=dt.datetime(2026, 11, 25, 7),
    )


MESSAGE = message("Hello", "text\n", "<p>html</p>\n", "<t@example.org>")


@pytest.fixture(params=[SmtpTransport, PlainSmtpTransport], ids=["fast", "reference"])
def smtp_transport(request) -> type[SmtpTransport | PlainSmtpTransport]:
    """The pipelined transport every caller gets, or the plain one it is checked against."""
    return request.param


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def only(user: str, password: str):
    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        given = (
            (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else ()
        )
        ok = tuple(v.decode() if isinstance(v, bytes) else v for v in given) == (user, password)
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    return authenticate


@pytest.fixture
def sink(request, ca: trustme.CA) -> Iterator[SmtpSink]:
    options = request.param(ca)
    server = SmtpSink(**options).start()
    yield server
    server.stop()


def settings_for(settings: Settings, sink: SmtpSink, **extra) -> Settings:
    return settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_timeout": 5.0, **extra}
    )


STARTTLS = lambda ca: {"tls_context": server_context(ca), "require_starttls": True}  # noqa: E731
IMPLICIT = lambda ca: {"ssl_context": server_context(ca)}  # noqa: E731
WITH_AUTH = lambda ca: {  # noqa: E731 - PLAIN only: smtplib's LOGIN fallback stalls aiosmtpd
    **STARTTLS(ca),
    "authenticator": only("digest", "s3cret"),
    "auth_exclude_mechanism": ["LOGIN"],
}


@pytest.mark.parametrize(
    ("sink", "mode"), [(STARTTLS, "starttls"), (IMPLICIT, "ssl")], indirect=["sink"]
)
def test_tls_to_a_server_whose_certificate_we_trust(
    settings: Settings, sink, ca_file: str, mode: str
) -> None:
    with SmtpTransport(
        settings_for(settings, sink, smtp_tls=mode, smtp_ca_file=ca_file)
    ) as transport:
        transport.send(MESSAGE, "digest@example.org", "ada@example.org")
    assert [m.recipient for m in sink.handler.received] == ["ada@example.org"]


@pytest.mark.parametrize(
    ("sink", "mode"), [(STARTTLS, "starttls"), (IMPLICIT, "ssl")], indirect=["sink"]
)
def test_an_untrusted_certificate_is_refused(settings: Settings, sink, mode: str) -> None:
    with (
        SmtpTransport(settings_for(settings, sink, smtp_tls=mode)) as transport,
        pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        transport.send(MESSAGE, "digest@example.org", "ada@example.org")
    assert sink.handler.received == []


@pytest.mark.parametrize("sink", [WITH_AUTH], indirect=True)
def test_smtp_auth_logs_in_and_a_wrong_password_is_our_error(
    settings: Settings, smtp_transport, sink, ca_file: str
) -> None:
    base = settings_for(
        settings, sink, smtp_tls="starttls", smtp_ca_file=ca_file, smtp_user="digest"
    )
    with (
        smtp_transport(base.model_copy(update={"smtp_password": "wrong"})) as transport,
        pytest.raises(TransientError, match="login refused"),
    ):
        transport.send(MESSAGE, "digest@example.org", "ada@example.org")
    with smtp_transport(base.model_copy(update={"smtp_password": "s3cret"})) as transport:
        transport.send(MESSAGE, "digest@example.org", "ada@example.org")
    assert [m.recipient for m in sink.handler.received] == ["ada@example.org"]


@pytest.mark.parametrize(
    "data",
    [b"a\r\n.b\r\n", b".first\r\n..\r\n.\r\nlast", b"\r\n.\r\n", b"no dots\r\n", b"."],
)
def test_dot_stuffing_matches_smtplib(data: bytes) -> None:
    stuffed = smtplib._quote_periods(data)  # what smtplib.SMTP.data sends
    stuffed += (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n"
    assert dot_stuffed(data) == stuffed


def test_lines_that_start_with_a_dot_arrive_intact(
    settings: Settings, smtp_transport, smtp_sink
) -> None:
    dotted = message(
        "Dots", ".leading\n..double\n.\nend\n", "<p>\n.x\n</p>\n", "<dots@example.org>"
    )
    with smtp_transport(settings_for(settings, smtp_sink)) as transport:
        transport.send(dotted, "digest@example.org", "ada@example.org")
        transport.send(MESSAGE, "digest@example.org", "bob@example.org")
    ada, bob = smtp_sink.handler.received
    assert ada.data == dotted.as_bytes() and bob.data == MESSAGE.as_bytes()


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
@pytest.mark.parametrize(
    ("stage", "reply", "error"),
    [
        ("mail_reply", "550 5.7.1 sender not allowed", TransientError),
        ("mail_reply", "451 4.3.0 try later", TransientError),
        ("rcpt_reply", "550 5.1.1 no such user", PermanentError),
        ("rcpt_reply", "450 4.2.1 mailbox busy", TransientError),
        ("data_reply", "554 5.7.1 rejected as spam", PermanentError),
        ("data_reply", "451 4.3.0 try later", TransientError),
    ],
)
def test_a_refusal_at_each_step_names_its_reply_and_the_next_message_goes_through(
    settings: Settings,
    smtp_transport,
    smtp_sink,
    pipelining: bool,
    stage: str,
    reply: str,
    error: type,
) -> None:
    """Pipelined, the envelope's three answers are read together: after a refusal the
    conversation must still be in step, so the next message on the connection is accepted."""
    smtp_sink.handler.pipelining = pipelining
    setattr(smtp_sink.handler, stage, lambda address: reply if "ada" in address else None)
    with smtp_transport(settings_for(settings, smtp_sink)) as transport:
        connection = transport.connect()
        assert connection.has_extn("pipelining") == pipelining
        connection.quit()
        with pytest.raises(error, match=reply.split()[0]):
            transport.send(MESSAGE, "ada@example.org", "ada@example.org")
        transport.send(MESSAGE, "digest@example.org", "bob@example.org")
        transport.send(MESSAGE, "digest@example.org", "eve@example.org")
    assert [m.recipient for m in smtp_sink.handler.received] == [
        "bob@example.org",
        "eve@example.org",
    ]


class ScriptedRelay(socketserver.StreamRequestHandler):
    """A hand-written relay for what aiosmtpd will not do: answer DATA with 354 after refusing
    every recipient (RFC 2920 then asks the client for a lone dot), accept a recipient with
    251 ("will forward"), or hang up at every MAIL."""

    pipelining = True
    hang_up_at_mail = False
    hang_up_in_first_data = False  # the first connection is cut after the data's first line
    received: list[str]
    connections: int

    def handle(self) -> None:
        type(self).connections += 1
        self.wfile.write(b"220 relay\r\n")
        recipients: list[str] = []
        while line := self.rfile.readline().decode():
            verb = line[:4].upper()
            if verb == "EHLO":
                offers = b"250-PIPELINING\r\n" if self.pipelining else b""
                self.wfile.write(b"250-relay\r\n" + offers + b"250 8BITMIME\r\n")
            elif verb == "MAIL" and self.hang_up_at_mail:
                return
            elif verb == "RCPT" and "ada@" in line:
                self.wfile.write(b"550 5.1.1 no such user\r\n")
            elif verb == "RCPT":
                recipients.append(line.partition(":")[2].strip())
                self.wfile.write(b"251 will forward\r\n" if "fwd@" in line else b"250 ok\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                if self.hang_up_in_first_data and type(self).connections == 1:
                    self.rfile.readline()
                    return
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.received.extend(recipients)
                self.wfile.write(b"250 accepted\r\n" if recipients else b"554 no recipients\r\n")
                recipients = []
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # MAIL, RSET
                self.wfile.write(b"250 ok\r\n")


@contextmanager
def scripted_relay(settings: Settings, **behaviour) -> Iterator[tuple[Settings, type]]:
    relay = type("Relay", (ScriptedRelay,), {"received": [], "connections": 0, **behaviour})
    with socketserver.TCPServer(("127.0.0.1", 0), relay) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        yield (
            settings.model_copy(
                update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_timeout": 5.0}
            ),
            relay,
        )
        server.shutdown()


def test_a_server_that_says_go_ahead_after_refusing_everyone_gets_an_empty_message(
    settings: Settings,
    smtp_transport,
) -> None:
    with scripted_relay(settings) as (config, relay), smtp_transport(config) as transport:
        with pytest.raises(PermanentError, match="550"):
            transport.send(MESSAGE, "digest@example.org", "ada@example.org")
        transport.send(MESSAGE, "digest@example.org", "bob@example.org")
    assert relay.received == ["<bob@example.org>"]
    assert relay.connections == 1, "the conversation stayed in step"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
def test_a_recipient_the_relay_will_forward_is_accepted(
    settings: Settings, smtp_transport, pipelining: bool
) -> None:
    with scripted_relay(settings, pipelining=pipelining) as (config, relay):
        with smtp_transport(config) as transport:
            transport.send(MESSAGE, "digest@example.org", "fwd@example.org")
    assert relay.received == ["<fwd@example.org>"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
def test_a_server_that_always_hangs_up_gets_one_fresh_try_then_a_transient_error(
    settings: Settings, smtp_transport, pipelining: bool
) -> None:
    behaviour = {"pipelining": pipelining, "hang_up_at_mail": True}
    with scripted_relay(settings, **behaviour) as (config, relay), smtp_transport(config) as sender:
        with pytest.raises(TransientError, match="server disconnected"):
            sender.send(MESSAGE, "digest@example.org", "bob@example.org")
    assert relay.connections == 2 and relay.received == []


def test_a_held_message_is_accepted_only_once_released(
    settings: Settings, smtp_transport, smtp_sink
) -> None:
    """A held message has everything but the end of its data: the server cannot accept it
    until ``release``; the conversation then goes on as usual."""
    with smtp_transport(settings_for(settings, smtp_sink)) as transport:
        held = transport.begin(MESSAGE, "digest@example.org", "ada@example.org", hold=True)
        time.sleep(0.3)  # time enough for a server to accept what it had been given
        assert smtp_sink.handler.accepted == 0 and held.held
        held.release()
        held.result()
        transport.send(MESSAGE, "digest@example.org", "bob@example.org")
    assert [(m.recipient, m.data) for m in smtp_sink.handler.received] == [
        ("ada@example.org", MESSAGE.as_bytes()),
        ("bob@example.org", MESSAGE.as_bytes()),
    ]


@pytest.mark.parametrize("how", ["abandoned", "never released"])
def test_a_held_message_that_is_not_released_never_arrives(
    settings: Settings, smtp_transport, smtp_sink, how: str
) -> None:
    with smtp_transport(settings_for(settings, smtp_sink)) as transport:
        held = transport.begin(MESSAGE, "digest@example.org", "ada@example.org", hold=True)
        if how == "abandoned":
            held.abandon()
            with pytest.raises(TransientError, match="abandoned"):
                held.result()
            transport.send(MESSAGE, "digest@example.org", "bob@example.org")
    time.sleep(0.3)
    expected = ["bob@example.org"] if how == "abandoned" else []
    assert [m.recipient for m in smtp_sink.handler.received] == expected


def test_a_connection_lost_while_a_message_is_held_gets_the_whole_message_again(
    settings: Settings, smtp_transport
) -> None:
    """The server cut the connection before the end of the data (its patience with a DATA
    held over a long database outage, say): it never had the message, which goes whole on
    a new connection once released, as after any dropped connection."""
    with scripted_relay(settings, hang_up_in_first_data=True) as (config, relay):
        with smtp_transport(config) as transport:
            held = transport.begin(MESSAGE, "digest@example.org", "bob@example.org", hold=True)
            time.sleep(0.2)
            held.release()
            held.result()
    assert relay.received == ["<bob@example.org>"] and relay.connections == 2


def test_a_refusal_from_a_transport_that_only_sends_comes_back_from_begin() -> None:
    class Refusing(BaseTransport):
        def send(self, message, sender: str, recipient: str) -> None:
            raise PermanentError("550 no such user")

    with pytest.raises(PermanentError, match="550 no such user"):
        Refusing().begin(MESSAGE, "digest@example.org", "ada@example.org").result()


@pytest.mark.parametrize(
    ("msg_id", "path"),
    [
        ("<digest.2026-07-13.7.ab/c d@mail>", "2026-07-13/digest.2026-07-13.7.ab_c_d_mail.eml"),
        ("<a.2026-07-13.b>", "2026-07-13/a.2026-07-13.b.eml"),
        ("<one.dot>", "one.dot.eml"),  # no edition in it: the outbox itself
    ],
)
def test_the_outbox_files_each_message_by_edition_under_a_safe_name(
    tmp_path: Path, msg_id: str, path: str
) -> None:
    OutboxTransport(tmp_path).send(
        message("Hi", "text\n", "<p>html</p>\n", msg_id), "digest@example.org", "a@example.org"
    )
    written = [str(f.relative_to(tmp_path)) for f in tmp_path.rglob("*") if f.is_file()]
    assert written == [path]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "step-by-step"])
def test_an_address_beyond_ascii_goes_out_with_smtputf8(
    settings: Settings, smtp_transport, smtp_sink, pipelining: bool
) -> None:
    smtp_sink.handler.pipelining = pipelining
    with smtp_transport(settings_for(settings, smtp_sink)) as transport:
        transport.send(MESSAGE, "digest@example.org", "josé@example.org")
    assert [m.recipient for m in smtp_sink.handler.received] == ["josé@example.org"]
