"""Every email the service sends, built in one place: one function per kind, each through
:func:`make_message` (healthchecks' ``hc/lib/emails.py`` is the model).

Pure: content and settings in, a finished message out (its bytes are ``as_bytes()``). Who gets
which email and when, and handing it to a transport, belong to the callers
(:mod:`digest.delivery` for digests, :mod:`digest.web` for account emails).

Each message is made by one of two :class:`Paths`: :data:`FAST`, what the service sends, or
:data:`REFERENCE`, the plain stdlib-and-premailer way the fast one is checked against
(tests/test_emails.py; docs/performance.md, "Fast paths").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from digest.editions import subscriber_links
from digest.lists import DEFAULT_LIST, cadence_words, list_id, sender_of
from digest.messages import (
    Message,
    Writer,
    account_message_id,
    build_message,
    message_id,
    sender_domain,
    write_fast,
    write_reference,
)
from digest.records import ListRecord, SubscriberRecord
from digest.rendering import (
    AlreadySubscribedContent,
    ConfirmationContent,
    DigestContent,
    RenderedEmail,
    already_subscribed_context,
    confirmation_context,
    digest_context,
    fit_digest,
    render_email,
    render_email_reference,
)
from digest.settings import Settings
from digest.subscriptions import SubscriberInput


@dataclass(frozen=True)
class Paths:
    """How a message is made: templates to text (``render``), then text to MIME (``write``)."""

    render: Callable[[str, Mapping[str, Any]], RenderedEmail]
    write: Writer


# Templates inlined once and cards cached; MIME bytes written directly.
FAST = Paths(render_email, write_fast)
# premailer on every email, every block rendered; the stdlib's EmailMessage.
REFERENCE = Paths(render_email_reference, write_reference)


def make_message(
    template: str,
    context: Mapping[str, Any],
    settings: Settings,
    *,
    recipient: str,
    msg_id: str,
    date: dt.datetime,
    listed: ListRecord | None = None,
    paths: Paths = FAST,
    sender: str | None = None,
) -> Message:
    """Render ``templates/email/<template>*`` with ``context`` and wrap it for ``recipient``.
    ``listed``: the list it is sent for, which it is from, with List-Id and one-click
    List-Unsubscribe (RFC 8058), which bulk mail needs; then ``context`` must hold the
    ``unsubscribe_url``. ``sender``: who a mail without list headers is from (default
    DIGEST_SENDER)."""
    rendered = paths.render(template, context)
    listing: dict[str, Any] = {}
    sender = sender or settings.sender
    if listed is not None:
        sender = sender_of(listed, settings.sender)
        listing = {
            "unsubscribe_url": context["unsubscribe_url"],
            "unsubscribe_mailto": settings.unsubscribe_mailto or None,
            "list_id": list_id(listed, sender_domain(sender)),
        }
    return build_message(
        rendered,
        sender=sender,
        recipient=recipient,
        msg_id=msg_id,
        date=date,
        write=paths.write,
        **listing,
    )


def digest(
    content: DigestContent,
    settings: Settings,
    delivery_id: int,
    now: dt.datetime,
    install_id: str = "",
    paths: Paths = FAST,
    listed: ListRecord = DEFAULT_LIST,
) -> Message:
    """One subscriber's digest, from its list (``listed``: its sender, its List-Id). Its
    Message-ID is fixed by the delivery: a resend after a crash carries the same one. Its
    HTML is shortened until it fits Gmail's limit (:func:`digest.rendering.fit_digest`);
    its text carries every pick."""
    domain = sender_domain(sender_of(listed, settings.sender))
    return make_message(
        "digest",
        digest_context(content),
        settings,
        recipient=content.recipient,
        msg_id=message_id(delivery_id, content.edition, settings.secret_key, domain, install_id),
        date=now,
        listed=listed,
        paths=fitted(paths),
    )


def fitted(paths: Paths) -> Paths:
    """``paths`` whose render re-renders a digest tighter until its HTML part fits."""
    return Paths(
        lambda name, context: fit_digest(context, partial(paths.render, name)), paths.write
    )


def confirmation(
    subscriber: SubscriberRecord,
    request: SubscriberInput,
    settings: Settings,
    now: dt.datetime,
    paths: Paths = FAST,
    listed: ListRecord = DEFAULT_LIST,
) -> Message:
    """The link carries the settings asked for, applied only when it is used: an unsubscribed
    address keeps its record of opting out until its owner confirms again. ``listed``: the
    list signed up to, which the mail names and is from; the link confirms that
    subscription only (it carries its id)."""
    payload = {
        "t": list(request.topics),
        "z": request.timezone,
        "H": request.send_hour,
        "m": request.max_papers,
    }
    token = settings.tokens.make("confirm", subscriber.id, subscriber.email, payload)
    content = ConfirmationContent(
        subscriber.email,
        request.topics,
        f"{settings.base_url}/confirm/{token}",
        settings.pending_expiry_days,
        listed.title,
        in_sentence(cadence_words(subscriber.cadence or listed.cadence)),
    )
    context = confirmation_context(content)
    return _account_message("confirm", context, settings, now, paths, listed)


def already_subscribed(
    subscriber: SubscriberRecord,
    settings: Settings,
    now: dt.datetime,
    paths: Paths = FAST,
    listed: ListRecord = DEFAULT_LIST,
) -> Message:
    """For a sign-up of an address that is already active or paused on ``listed``: a way to
    that subscription's preferences, nothing changed."""
    return _preferences_mail("already-subscribed", subscriber, settings, now, paths, listed)


def preferences_link(
    subscriber: SubscriberRecord,
    settings: Settings,
    now: dt.datetime,
    paths: Paths = FAST,
    listed: ListRecord = DEFAULT_LIST,
) -> Message:
    """Asked for on the unsubscribe page: a fresh preferences link, to the address only. The
    unsubscribe link never expires and is forwarded with every digest, so it must not open
    the preferences itself."""
    return _preferences_mail("preferences-link", subscriber, settings, now, paths, listed)


def _preferences_mail(
    template: str,
    subscriber: SubscriberRecord,
    settings: Settings,
    now: dt.datetime,
    paths: Paths,
    listed: ListRecord,
) -> Message:
    """A mail whose one link opens the preferences of ``subscriber`` (one list's)."""
    preferences_url, _ = subscriber_links(subscriber, settings.tokens, settings.base_url)
    content = AlreadySubscribedContent(
        subscriber.email,
        subscriber.topics,
        preferences_url,
        subscriber.status == "paused",
        listed.title,
    )
    context = already_subscribed_context(content)
    return _account_message(template, context, settings, now, paths, listed)


def admin_alert(
    problems: Sequence[str], run_id: int, settings: Settings, now: dt.datetime, paths: Paths = FAST
) -> Message:
    """To DIGEST_ADMIN_EMAIL: what failed, one line each, and the commands to look closer."""
    context = {
        "recipient": settings.admin_email,
        "problems": list(problems),
        "run_id": run_id,
        "base_url": settings.base_url,
        "preheader": problems[0] if problems else "",
    }
    return _account_message("admin-alert", context, settings, now, paths)


def _account_message(
    template: str,
    context: Mapping[str, Any],
    settings: Settings,
    now: dt.datetime,
    paths: Paths,
    listed: ListRecord = DEFAULT_LIST,
) -> Message:
    """A sign-up email is sent once, to the address in its context, from the list it is
    about: no list headers, and a Message-ID that only has to be unique."""
    sender = sender_of(listed, settings.sender)
    return make_message(
        template,
        context,
        settings,
        recipient=context["recipient"],
        msg_id=account_message_id(sender),
        date=now,
        paths=paths,
        sender=sender,
    )


def in_sentence(words: str) -> str:
    """A cadence in words as the middle of a sentence says it: "weekly, on Mondays"."""
    return words[:1].lower() + words[1:]
