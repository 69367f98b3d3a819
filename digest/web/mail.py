"""Account mail sent while a visitor waits (confirmation, "already subscribed", a fresh
preferences link): at once, within the send rate the digests share, and within limits per
address, mailbox and domain, so no visitor can make us mail-bomb anyone."""

from __future__ import annotations

import logging

from digest.limits import Limit
from digest.messages import Message, wire_address
from digest.records import SubscriberRecord
from digest.subscriptions import mail_domain_of, mailbox_of
from digest.transports import PermanentError, TransientError
from digest.web.context import WebContext

log = logging.getLogger(__name__)

# confirmation or reminder emails to one address (1 while counted without Redis: see Limit)
MAILS_PER_ADDRESS = Limit("address", 3, 86400, without_redis=1)
# ... and to one mailbox: ada+1@, a.da@gmail.com and ada@googlemail.com are one person
MAILS_PER_MAILBOX = Limit("mailbox", 3, 86400, without_redis=1)


def mail_within_quota(ctx: WebContext, sub: SubscriberRecord, message: Message) -> bool:
    """Mail an account email within the per-address, per-mailbox and per-domain limits any
    visitor's request for mail shares. False only when the mail could not be sent (and then
    it is not counted); over a limit, nothing is sent and the caller cannot tell."""
    per_domain = Limit("domain", ctx.settings.signup_mails_per_domain_per_hour, 3600)
    quota = (
        (MAILS_PER_ADDRESS, sub.email),
        (MAILS_PER_MAILBOX, mailbox_of(sub.email)),
        (per_domain, mail_domain_of(sub.email)),
    )
    if not ctx.throttle.reserve(*quota):
        log.info(
            "account mail to subscriber %d not sent: over its address, mailbox or domain limit",
            sub.id,
        )
        return True
    if send_account_email(ctx, sub, message):
        return True
    ctx.throttle.release(*quota)
    return False


def send_account_email(ctx: WebContext, sub: SubscriberRecord, message: Message) -> bool:
    """Sends a sign-up email at once (the visitor is waiting for it), within the send rate the
    digests share; False if SMTP failed."""
    ctx.limiter.wait()
    try:
        with ctx.transport_factory() as transport:
            transport.send(message, ctx.settings.sender, wire_address(sub.email))
    except (TransientError, PermanentError) as exc:
        log.error("%r email to subscriber %d failed: %s", message["Subject"], sub.id, exc)
        return False
    return True
