"""Where messages go: an SMTP server, or ``.eml`` files in the outbox (the embedded default).

:class:`SmtpTransport` keeps one connection per batch, reconnects once when the server drops
it, and speaks STARTTLS or implicit TLS with certificate checks. Every failure becomes a
:class:`TransientError` (worth retrying: 4xx, a dropped connection, our own sender or login
refused) or a :class:`PermanentError` (5xx for this recipient). Both transports are context
managers: ``with make_transport(settings) as transport: ...``.

``send`` waits for the server's answer. ``begin`` hands a message over and returns a
:class:`Pending` before the final answer: the worker builds the next digest while the server
takes this one in, and reads the answer (``Pending.result``) before it records anything or
says anything else on the connection. On two shared cores that overlap is a fifth of the
sending rate (docs/delivery.md). ``begin(..., hold=True)`` writes a message short of the end
of its data, so the server cannot accept it yet: the worker commits the record of the
message before meanwhile, and lets this one go (``Pending.release``) only after that commit.

Two SMTP transports share the connection handling: :class:`SmtpTransport`, the fast one every
caller gets from :func:`make_transport` (MAIL, RCPT and DATA pipelined in one write, the final
answer read late), and :class:`PlainSmtpTransport`, the readable reference (smtplib's
``sendmail``, one command and its answer at a time). Tests hold the fast one to the reference:
the same refusals, the same bytes received (docs/performance.md, "Fast paths").
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

from digest.messages import Message, sender_domain
from digest.settings import Settings

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class TransientError(Exception):
    """Worth retrying later: 4xx replies, dropped connections, timeouts."""


class PermanentError(Exception):
    """Retrying will not help: 5xx for this recipient."""


class UnknownOutcome(TransientError):
    """The message was handed over and its answer never came: the server may have kept it.
    Never resent on the spot; retried only after the claim lease, as a possible duplicate."""


class _PhasedTimeouts(smtplib.SMTP):
    """smtplib's client with RFC 5321 4.5.3.2's timeouts per phase: the connection and each
    command wait ``timeout``; the reply to the end of a message's data waits
    ``data_timeout`` (10 minutes by default), because the server may be checking and storing
    it, and a timeout there leaves the message's fate unknown (:class:`UnknownOutcome`)."""

    data_timeout: float = 600.0
    _data_sent = False  # the last bytes written ended a message's data; its reply is due

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        self._data_sent = isinstance(s, bytes) and s.endswith(b"\r\n.\r\n")

    def getreply(self) -> tuple[int, bytes]:
        if not self._data_sent:
            return super().getreply()
        self._data_sent = False
        assert self.sock is not None  # sending the data needed it
        self.sock.settimeout(self.data_timeout)
        try:
            return super().getreply()
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError):
                raise UnknownOutcome(
                    f"unknown outcome: no answer to the message's data in {self.data_timeout:g} s"
                ) from None
            raise
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)


class _Smtp(_PhasedTimeouts, smtplib.SMTP):
    pass


class _SmtpSsl(_PhasedTimeouts, smtplib.SMTP_SSL):
    pass


class Pending:
    """A message handed to the server whose answer may not have been read yet.

    ``result()`` reads it once (or finds it already read) and raises the same
    :class:`TransientError` or :class:`PermanentError` every time it is asked.

    A message begun with ``hold=True`` is *held*: the server has everything but the end of
    its data, so it cannot accept it yet. ``release()`` sends that end; ``abandon()`` makes
    sure it never goes (on SMTP by dropping the connection: a DATA cut short is discarded,
    RFC 5321 4.1.1.4). A held message that is never released is abandoned, never sent."""

    def __init__(
        self,
        answer: Callable[[], None] = lambda: None,
        *,
        release: Callable[[], Pending] | None = None,
        drop: Callable[[], None] = lambda: None,
    ) -> None:
        self._answer: Callable[[], None] | None = answer
        self._error: TransientError | PermanentError | None = None
        self._release, self._drop = release, drop

    @classmethod
    def failed(cls, error: TransientError | PermanentError) -> Pending:
        pending = cls()
        pending._answer, pending._error = None, error
        return pending

    @classmethod
    def holding(cls, release: Callable[[], Pending], drop: Callable[[], None]) -> Pending:
        """A held message: ``release`` sends the end of its data and returns the message's
        (whole) pending answer; ``drop`` abandons it."""
        return cls(lambda: None, release=release, drop=drop)

    @property
    def held(self) -> bool:
        return self._release is not None

    def release(self) -> None:
        """Let the server have the end of a held message (from here it may accept it);
        nothing for one that was not held."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            self._answer = release().result
        except (TransientError, PermanentError) as exc:
            self._answer, self._error = None, exc

    def abandon(self) -> None:
        """A held message must not go: it never reaches the point where a server accepts."""
        if self._release is not None:
            self._release, self._answer = None, None
            self._error = TransientError("abandoned before the end of its data: not sent")
            self._drop()

    def settle(self) -> None:
        """Read the answer, keeping a refusal for whoever asks for the result. A held
        message is abandoned instead: only ``release()`` may let it go."""
        self.abandon()
        answer, self._answer = self._answer, None
        if answer is not None:
            try:
                answer()
            except (TransientError, PermanentError) as exc:
                self._error = exc

    def result(self) -> None:
        self.settle()
        if self._error is not None:
            raise self._error


class Transport(Protocol):
    def send(self, message: Message, sender: str, recipient: str) -> None: ...

    def begin(
        self, message: Message, sender: str, recipient: str, hold: bool = False
    ) -> Pending: ...

    def close(self) -> None: ...


class BaseTransport(ABC):
    """``with transport:`` closes it however the block ends; ``begin`` sends at once where
    a transport has nothing to overlap."""

    @abstractmethod
    def send(self, message: Message, sender: str, recipient: str) -> None:
        """Hand the message over and wait for the answer; a refusal raises."""

    def begin(self, message: Message, sender: str, recipient: str, hold: bool = False) -> Pending:
        """Send now; or, held, when the Pending is released (nothing goes before)."""
        if hold:
            return Pending.holding(
                lambda: self.begin(message, sender, recipient), drop=lambda: None
            )
        try:
            self.send(message, sender, recipient)
        except (TransientError, PermanentError) as exc:
            return Pending.failed(exc)
        return Pending()

    def close(self) -> None:  # noqa: B027 - only a transport with a connection has one to close
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class OutboxTransport(BaseTransport):
    """Writes each message to ``DIR/<edition>/<Message-ID>.eml``: the embedded default."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: Message, sender: str, recipient: str) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(message["Message-ID"]).strip("<>"))
        folder = self.directory / name.split(".")[1] if name.count(".") > 1 else self.directory
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.tmp"
        temporary.write_bytes(message.as_bytes())
        temporary.replace(folder / f"{name}.eml")  # atomic: a reader never sees half a message


class _SmtpConnection(BaseTransport):
    """One SMTP connection reused for a whole batch, reopened when the server drops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> _Smtp | _SmtpSsl:
        """A new connection, TLS and login done as configured (also `digest doctor`'s check)."""
        s = self.settings
        # verifies certificates and host names; built only for TLS (loading the CA bundle takes ~25 ms)
        context = (
            ssl.create_default_context(cafile=s.smtp_ca_file or None)
            if s.smtp_tls != "none"
            else None
        )
        helo = sender_domain(
            s.sender
        )  # without it smtplib does a reverse DNS lookup per connection
        try:
            if s.smtp_tls == "ssl":
                smtp: _Smtp | _SmtpSsl = _SmtpSsl(
                    s.smtp_host,
                    s.smtp_port,
                    local_hostname=helo,
                    timeout=s.smtp_timeout,
                    context=context,
                )
            else:
                smtp = _Smtp(s.smtp_host, s.smtp_port, local_hostname=helo, timeout=s.smtp_timeout)
                if s.smtp_tls == "starttls":
                    smtp.starttls(context=context)
            smtp.data_timeout = s.smtp_data_timeout
            assert smtp.sock is not None  # connected above
            # a held message's end is 5 bytes written after the rest: Nagle would keep them
            # until the rest is acknowledged, which a receiver may delay by 40 ms
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo_or_helo_if_needed()
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
        except (
            smtplib.SMTPAuthenticationError
        ) as exc:  # our configuration, not the recipient's fault
            raise TransientError(
                f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot connect to {s.smtp_host}:{s.smtp_port}: {exc}") from None
        return smtp

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None


class PlainSmtpTransport(_SmtpConnection):
    """The reference for :class:`SmtpTransport`: smtplib's ``sendmail``, which says MAIL, RCPT
    and DATA one at a time, each after the answer to the one before, and waits for the final
    answer. A dropped connection gets one fresh try."""

    def send(self, message: Message, sender: str, recipient: str) -> None:
        data = message.as_bytes()
        try:
            self._sendmail(data, sender, recipient)
        except UnknownOutcome:
            self._smtp = None  # smtplib closed it
            raise
        except smtplib.SMTPServerDisconnected:
            self._smtp = None
            try:
                self._sendmail(data, sender, recipient)
            except smtplib.SMTPServerDisconnected as exc:
                self._smtp = None
                raise TransientError(f"server disconnected: {exc}") from None

    def _sendmail(self, data: bytes, sender: str, recipient: str) -> None:
        """One ``sendmail``, its refusals as our errors; a disconnect is left to the caller."""
        try:
            smtp = self._smtp = self._smtp or self.connect()
            smtp.ehlo_or_helo_if_needed()
            options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else []  # smtplib adds SIZE
            smtp.sendmail(sender, [recipient], data, options + _utf8_option(recipient))
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPSenderRefused as exc:  # our From address: never the recipient's bounce
            raise TransientError(f"sender refused: {exc.smtp_code} {exc.smtp_error!r}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise _error_for(*exc.recipients[recipient]) from None
        except smtplib.SMTPResponseException as exc:
            raise _error_for(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from None


class SmtpTransport(_SmtpConnection):
    """The fast path: the envelope pipelined where the server offers it, and ``begin`` returns
    before the final answer, which is read before anything else is said on the connection."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._outstanding: Pending | None = None  # the last message's answer, not yet read

    def send(self, message: Message, sender: str, recipient: str) -> None:
        self.begin(message, sender, recipient).result()

    def begin(self, message: Message, sender: str, recipient: str, hold: bool = False) -> Pending:
        """Say MAIL, RCPT and DATA, write the message, and return before the final answer;
        with ``hold``, write it short of the end of its data (see :class:`Pending`). The
        answer of the message before is read first: one conversation, in order."""
        self._settle_outstanding()
        try:
            return self._attempt(message, sender, recipient, last=False, hold=hold)
        except (TransientError, PermanentError) as exc:
            return Pending.failed(exc)

    def _settle_outstanding(self) -> None:
        if self._outstanding is not None:
            pending, self._outstanding = self._outstanding, None
            pending.settle()

    def _attempt(
        self, message: Message, sender: str, recipient: str, last: bool, hold: bool = False
    ) -> Pending:
        try:
            smtp = self._smtp = self._smtp or self.connect()
            end = _hand_over(smtp, message, sender, recipient, hold)
        except smtplib.SMTPServerDisconnected as exc:
            return self._after_disconnect(exc, message, sender, recipient, last, hold)
        if end:
            self._outstanding = Pending.holding(
                lambda: self._end_data(smtp, end, message, sender, recipient, last),
                drop=lambda: self._drop(smtp),
            )
        else:
            self._outstanding = Pending(
                lambda: self._answer(smtp, message, sender, recipient, last)
            )
        return self._outstanding

    def _end_data(
        self,
        smtp: smtplib.SMTP,
        end: bytes,
        message: Message,
        sender: str,
        recipient: str,
        last: bool,
    ) -> Pending:
        """A held message's end. A connection lost meanwhile (a server out of patience with
        a DATA cut short) gets the whole message again, as any dropped connection does."""
        try:
            smtp.send(end)
        except smtplib.SMTPServerDisconnected as exc:
            return self._after_disconnect(exc, message, sender, recipient, last)
        self._outstanding = Pending(lambda: self._answer(smtp, message, sender, recipient, last))
        return self._outstanding

    def _drop(self, smtp: smtplib.SMTP) -> None:
        """An abandoned held message goes with its connection: no command can end a DATA
        short of the message, and a server discards a DATA cut off."""
        smtp.close()
        if self._smtp is smtp:
            self._smtp = None
        self._outstanding = None

    def _answer(
        self, smtp: smtplib.SMTP, message: Message, sender: str, recipient: str, last: bool
    ) -> None:
        try:
            code, reply = smtp.getreply()
        except UnknownOutcome:
            self._smtp = None  # smtplib closed it
            raise
        except smtplib.SMTPServerDisconnected as exc:
            self._after_disconnect(exc, message, sender, recipient, last).result()
            return
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        if code != 250:
            _reset(smtp, code)
            raise _error_for(code, reply)

    def _after_disconnect(
        self,
        exc: Exception,
        message: Message,
        sender: str,
        recipient: str,
        last: bool,
        hold: bool = False,
    ) -> Pending:
        """A connection the server closed (idle too long, restarted) gets one fresh try."""
        self._smtp = None
        if last:
            raise TransientError(f"server disconnected: {exc}") from None
        return self._attempt(message, sender, recipient, last=True, hold=hold)

    def close(self) -> None:
        self._settle_outstanding()
        super().close()


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it (RFC 5321 4.5.2): a line that starts with a dot gets
    a second one, and a line with a lone dot ends it. A byte replace, not smtplib's regex:
    a tenth of a millisecond per digest."""
    stuffed = data.replace(b"\n.", b"\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


END_OF_DATA = b"\r\n.\r\n"  # how every dot-stuffed message ends


def _hand_over(
    smtp: smtplib.SMTP, message: Message, sender: str, recipient: str, hold: bool
) -> bytes:
    """What ``smtplib.SMTP.sendmail`` says up to the end of the data, without waiting for
    the answer to it; MAIL, RCPT and DATA in one write where the server offers PIPELINING
    (RFC 2920, as relays do: one round trip instead of three). With ``hold``, the end of
    the data is not written but returned (else ``b""``): the server cannot accept the
    message before it has that. A disconnect is left to the caller; any refusal raises,
    with the connection ready for the next message."""
    data = message.as_bytes()
    try:
        smtp.ehlo_or_helo_if_needed()
        options = _mail_options(smtp, recipient, len(data))
        answers: tuple[Answer, Answer | None, Answer | None]
        if smtp.has_extn("pipelining"):
            answers = _pipelined_envelope(smtp, sender, recipient, options)
        else:
            answers = _envelope_step_by_step(smtp, sender, recipient, options)
        _check_envelope(smtp, *answers)
        stuffed = dot_stuffed(data)
        smtp.send(stuffed[: -len(END_OF_DATA)] if hold else stuffed)
    except smtplib.SMTPServerDisconnected:
        raise
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from None
    return END_OF_DATA if hold else b""


Answer = tuple[int, bytes]


def _envelope_step_by_step(
    smtp: smtplib.SMTP, sender: str, recipient: str, options: list[str]
) -> tuple[Answer, Answer | None, Answer | None]:
    """MAIL, then RCPT, then DATA, each after the answer to the one before; stops at a refusal."""
    mail = smtp.mail(sender, options)
    rcpt = smtp.rcpt(recipient) if mail[0] == 250 else None
    start = smtp.docmd("data") if rcpt is not None and rcpt[0] in (250, 251) else None
    return mail, rcpt, start


def _pipelined_envelope(
    smtp: smtplib.SMTP, sender: str, recipient: str, options: list[str]
) -> tuple[Answer, Answer, Answer]:
    """MAIL, RCPT and DATA in one write; then their three answers, in order."""
    utf8 = "SMTPUTF8" in options
    if utf8 and not smtp.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
    commands = (
        f"MAIL FROM:{smtplib.quoteaddr(sender)}{''.join(' ' + o for o in options)}\r\n"
        f"RCPT TO:{smtplib.quoteaddr(recipient)}\r\nDATA\r\n"
    )
    if commands.count("\n") != 3:
        raise PermanentError(f"a line break in the address {recipient!r} or {sender!r}")
    smtp.send(commands.encode("utf-8" if utf8 else "ascii"))
    return smtp.getreply(), smtp.getreply(), smtp.getreply()


def _check_envelope(
    smtp: smtplib.SMTP, mail: Answer, rcpt: Answer | None, start: Answer | None
) -> None:
    """Raise the first refusal among the envelope's answers, after putting the connection
    back at the start of a new message."""
    error: Exception
    if mail[0] != 250:  # our From address: never the recipient's bounce
        code, error = mail[0], TransientError(f"sender refused: {mail[0]} {mail[1]!r}")
    elif rcpt is not None and rcpt[0] not in (250, 251):
        code, error = rcpt[0], _error_for(*rcpt)
    elif start is not None and start[0] != 354:
        code, error = start[0], _error_for(*start)
    else:
        return
    if start is not None and start[0] == 354:  # pipelined, and told to go on regardless:
        smtp.send(b".\r\n")  # an empty message, refused for want of a recipient (RFC 2920)
        smtp.getreply()
    _reset(smtp, code)
    raise error


def _mail_options(smtp: smtplib.SMTP, recipient: str, size: int) -> list[str]:
    options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else []
    if smtp.has_extn("size"):
        options.append(f"SIZE={size}")  # a server can refuse an oversized message up front
    return options + _utf8_option(recipient)


def _utf8_option(recipient: str) -> list[str]:
    return [] if recipient.isascii() else ["SMTPUTF8"]


def _reset(smtp: smtplib.SMTP, code: int) -> None:
    """After a refusal: 421 means the server is closing; anything else, start over."""
    if code == 421:
        smtp.close()
    else:
        try:
            smtp.rset()
        except smtplib.SMTPServerDisconnected:
            pass


def _error_for(code: int, reply: bytes | str) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{code} {text}".strip()
    return PermanentError(message) if 500 <= code < 600 else TransientError(message)


def make_transport(settings: Settings) -> SmtpTransport | OutboxTransport:
    """SMTP when DIGEST_SMTP_HOST is set, else the local outbox; use it in a ``with`` block."""
    return SmtpTransport(settings) if settings.smtp_host else OutboxTransport(settings.outbox_dir)
