"""Sending a batch of deliveries: claim -> render -> send -> record, one delivery at a time.

The database row is the truth. A delivery is claimed with a conditional UPDATE before it is
sent and marked ``sent`` right after the server's 250, so a redelivered batch (acks_late)
skips what is done and two workers never send the same row. The one unavoidable duplicate
window is between the server accepting a message and the ``sent`` commit: if the worker
dies exactly there, the stale claim is requeued and the digest goes out again with the
same Message-ID (see README, "Exactly once").

Transports: :class:`SmtpTransport` (one connection per batch, reconnect on drop, STARTTLS or
implicit TLS with certificate checks) and :class:`OutboxTransport` (``.eml`` files, the
embedded default). Both raise :class:`TransientError` or :class:`PermanentError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from digest.editions import digest_content, digest_message
from digest.limits import RateLimiter
from digest.messages import message_id as make_message_id
from digest.messages import sender_domain, wire_address
from digest.models import utcnow
from digest.settings import Settings
from digest.storage import StorageError, Store
from digest.tokens import Tokens

log = logging.getLogger(__name__)

DB_WRITE_RETRIES = 5  # a 'sent' that cannot be recorded is the duplicate window: try hard


class TransientError(Exception):
    """Worth retrying later: 4xx replies, dropped connections, timeouts."""


class PermanentError(Exception):
    """Retrying will not help: 5xx for this recipient."""


class Transport(Protocol):
    def send(self, message: EmailMessage, sender: str, recipient: str) -> None: ...

    def close(self) -> None: ...


class OutboxTransport:
    """Writes each message to ``DIR/<edition>/<Message-ID>.eml``: the embedded default."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(message["Message-ID"]).strip("<>"))
        folder = self.directory / name.split(".")[1] if name.count(".") > 1 else self.directory
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.tmp"
        temporary.write_bytes(message.as_bytes())
        temporary.replace(folder / f"{name}.eml")  # atomic: a reader never sees half a message

    def close(self) -> None:
        pass


class SmtpTransport:
    """One SMTP connection reused for a whole batch, reopened when the server drops it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        # verifies certificates and host names; built only for TLS (loading the CA bundle takes ~25 ms)
        context = ssl.create_default_context() if s.smtp_tls != "none" else None
        helo = sender_domain(s.sender)  # without it smtplib does a reverse DNS lookup per connection
        try:
            if s.smtp_tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, local_hostname=helo,
                                                      timeout=s.smtp_timeout, context=context)
            else:
                smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, local_hostname=helo, timeout=s.smtp_timeout)
                if s.smtp_tls == "starttls":
                    smtp.starttls(context=context)
            smtp.ehlo_or_helo_if_needed()
            if s.smtp_user:
                smtp.login(s.smtp_user, s.smtp_password)
        except smtplib.SMTPAuthenticationError as exc:  # our configuration, not the recipient's fault
            raise TransientError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot connect to {s.smtp_host}:{s.smtp_port}: {exc}") from None
        return smtp

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        for attempt in (1, 2):  # a connection the server closed while idle gets one fresh retry
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                self._send_once(self._smtp, message, sender, recipient)
                return
            except smtplib.SMTPServerDisconnected as exc:
                self._smtp = None
                if attempt == 2:
                    raise TransientError(f"server disconnected: {exc}") from None

    @staticmethod
    def _send_once(smtp: smtplib.SMTP, message: EmailMessage, sender: str, recipient: str) -> None:
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


@dataclass
class BatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # not claimable: already sent, or in another worker's hands
    errors: list[str] = field(default_factory=list)

    def add(self, other: BatchReport) -> None:
        for name in ("sent", "retried", "failed", "bounced", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


def retry_delay(settings: Settings, attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=settings.retry_base_seconds * 2 ** max(attempts - 1, 0))


def _record(what: str, action: Callable[..., None], *args: object) -> None:
    """Database writes after a send are retried with backoff: failing them risks a duplicate."""
    for attempt in range(1, DB_WRITE_RETRIES + 1):
        try:
            action(*args)
            return
        except StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any database outage
            if attempt == DB_WRITE_RETRIES:
                raise
            log.warning("%s failed (%s); retrying", what, exc)
            time.sleep(0.2 * 2**attempt)


def send_deliveries(store: Store, settings: Settings, delivery_ids: Sequence[int], transport: Transport,
                    limiter: RateLimiter | None = None, clock: Callable[[], dt.datetime] = utcnow) -> BatchReport:
    """Send every claimable delivery of a batch; one bad address never stops the others."""
    report = BatchReport()
    tokens = Tokens(settings.secret_key, settings.pending_expiry_days)
    loaded = store.load_deliveries(delivery_ids)
    paper_ids = {pick["arxiv_id"] for delivery, _ in loaded for pick in delivery.picks}
    papers = {p.arxiv_id: p for p in store.list_papers(ids=sorted(paper_ids))} if paper_ids else {}
    domain = sender_domain(settings.sender)
    for delivery, subscriber in loaded:
        now = clock()
        if subscriber.status != "active":
            store.skip_delivery(delivery.id, f"not sent: the subscriber is {subscriber.status}")
            report.skipped += 1
            continue
        if not store.claim_delivery(delivery.id, now):
            report.skipped += 1
            continue
        content = digest_content(subscriber, delivery.picks, papers, delivery.edition, tokens, settings.base_url)
        message = digest_message(content, settings, delivery.id, now)
        if limiter is not None:
            limiter.wait()
        try:
            transport.send(message, settings.sender, wire_address(subscriber.email))
        except TransientError as exc:
            _handle_transient(store, settings, delivery.id, delivery.attempts + 1, str(exc), now, report)
            continue
        except PermanentError as exc:
            _record("mark bounced", store.mark_failed, delivery.id, str(exc), True, settings.bounce_limit)
            report.bounced += 1
            report.errors.append(f"{subscriber.email}: {exc}")
            log.warning("delivery %d to %s bounced: %s", delivery.id, subscriber.email, exc)
            continue
        msg_id = make_message_id(delivery.id, delivery.edition, settings.secret_key, domain)
        _record("mark sent", store.mark_sent, delivery.id, msg_id, clock(), [p["arxiv_id"] for p in delivery.picks])
        report.sent += 1
    return report


def _handle_transient(store: Store, settings: Settings, delivery_id: int, attempts: int, error: str,
                      now: dt.datetime, report: BatchReport) -> None:
    if attempts >= settings.max_attempts:
        _record("mark failed", store.mark_failed, delivery_id, f"gave up after {attempts} attempts: {error}", False,
                settings.bounce_limit)
        report.failed += 1
        log.error("delivery %d failed for good after %d attempts: %s", delivery_id, attempts, error)
    else:
        next_try = now + retry_delay(settings, attempts)
        _record("mark retry", store.mark_retry, delivery_id, error, next_try)
        report.retried += 1
        log.info("delivery %d: temporary failure (%s); retry at %s", delivery_id, error, next_try)
    report.errors.append(error)


def make_transport(settings: Settings) -> Transport:
    """SMTP when DIGEST_SMTP_HOST is set, else the local outbox."""
    return SmtpTransport(settings) if settings.smtp_host else OutboxTransport(settings.outbox_dir)

