"""Where messages go: an SMTP server, or ``.eml`` files in the outbox (the embedded default).

:class:`SmtpTransport` keeps one connection per batch, reconnects once when the server drops
it, and speaks STARTTLS or implicit TLS with certificate checks. Every failure becomes a
:class:`TransientError` (worth retrying: 4xx, a dropped connection, our own sender or login
refused) or a :class:`PermanentError` (5xx for this recipient). Both transports are context
managers: ``with make_transport(settings) as transport: ...``.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from pathlib import Path
from typing import Protocol, Self

from digest.messages import Message, sender_domain
from digest.settings import Settings


class TransientError(Exception):
    """Worth retrying later: 4xx replies, dropped connections, timeouts."""


class PermanentError(Exception):
    """Retrying will not help: 5xx for this recipient."""


class Transport(Protocol):
    def send(self, message: Message, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


class Closing:
    """``with transport:`` closes it however the block ends."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


class OutboxTransport(Closing):
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

    def close(self) -> None:
        pass


class SmtpTransport(Closing):
    """One SMTP connection reused for a whole batch, reopened when the server drops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> smtplib.SMTP:
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
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.smtp_host,
                    s.smtp_port,
                    local_hostname=helo,
                    timeout=s.smtp_timeout,
                    context=context,
                )
            else:
                smtp = smtplib.SMTP(
                    s.smtp_host, s.smtp_port, local_hostname=helo, timeout=s.smtp_timeout
                )
                if s.smtp_tls == "starttls":
                    smtp.starttls(context=context)
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

    def send(self, message: Message, sender: str, recipient: str) -> None:
        for attempt in (1, 2):  # a connection the server closed while idle gets one fresh retry
            if self._smtp is None:
                self._smtp = self.connect()
            try:
                self._send_once(self._smtp, message, sender, recipient)
                return
            except smtplib.SMTPServerDisconnected as exc:
                self._smtp = None
                if attempt == 2:
                    raise TransientError(f"server disconnected: {exc}") from None

    @staticmethod
    def _send_once(smtp: smtplib.SMTP, message: Message, sender: str, recipient: str) -> None:
        options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") else []
        if not recipient.isascii():
            options.append("SMTPUTF8")
        try:
            refused = smtp.sendmail(sender, [recipient], message.as_bytes(), mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients.get(recipient, (0, b""))
            raise _error_for(code, reply) from None
        except smtplib.SMTPSenderRefused as exc:  # our From address: never the recipient's bounce
            raise TransientError(f"sender refused: {exc.smtp_code} {exc.smtp_error!r}") from None
        except smtplib.SMTPDataError as exc:
            raise _error_for(exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPResponseException as exc:
            raise _error_for(exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from None
        if refused:
            code, reply = refused[recipient]
            raise _error_for(code, reply)

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._smtp = None


def _error_for(code: int, reply: bytes | str) -> Exception:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{code} {text}".strip()
    return PermanentError(message) if 500 <= code < 600 else TransientError(message)


def make_transport(settings: Settings) -> SmtpTransport | OutboxTransport:
    """SMTP when DIGEST_SMTP_HOST is set, else the local outbox; use it in a ``with`` block."""
    return SmtpTransport(settings) if settings.smtp_host else OutboxTransport(settings.outbox_dir)
