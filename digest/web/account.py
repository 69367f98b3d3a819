"""A reader's account: the preferences page (topics, schedule, size, pause, votes, past
digests) and unsubscribing, by a page's button or by a mail provider's RFC 8058 one-click
POST. The unsubscribe link travels with every forwarded digest, so it opens no other page:
the preferences are mailed to the address on request instead."""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, request, url_for

from digest import emails
from digest.editions import digest_url, feed_url
from digest.limits import Limit
from digest.lists import CADENCES, cadence_words, validate_cadence
from digest.models import utcnow
from digest.ranking.profile import describe_profile
from digest.records import ListRecord, SubscriberRecord
from digest.subscriptions import (
    MAX_PAPERS_LIMIT,
    MAX_TOPICS,
    validate_max_papers,
    validate_send_hour,
    validate_timezone,
)
from digest.tokens import INVALID_LINK
from digest.web.context import (
    WebContext,
    client_address,
    csrf_exempt,
    invalid_link,
    list_of,
    notice,
    page,
    pages,
    signup_url,
    suggestions,
    web_context,
    with_subscriber,
)
from digest.web.forms import known_topics, validated
from digest.web.mail import mail_within_quota
from digest.web.signup import SIGNUPS_PER_CLIENT

log = logging.getLogger(__name__)

# preference saves (each may look papers up on arXiv): per client, and per subscriber
PREFERENCE_SAVES_PER_CLIENT = Limit("prefs-client", 30, 3600)
PREFERENCE_SAVES_PER_SUBSCRIBER = Limit("prefs-subscriber", 20, 3600)


@pages.get("/unsubscribe/<token>")
@with_subscriber("unsubscribe")
def unsubscribe_page(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    """Asks first (mail scanners follow links). The link never expires and travels with
    every forwarded digest, so it opens no other page: the preferences (to pause instead)
    are mailed to the address on request."""
    return _unsubscribe_page(sub, done=sub.status == "unsubscribed")


def _unsubscribe_page(sub: SubscriberRecord, done: bool) -> tuple[str, int]:
    """The page names the list: leaving one list leaves the reader's others as they are."""
    listed = list_of(web_context(), sub)
    return page(
        "unsubscribe.html",
        email=sub.email,
        brand=listed.title,
        done=done,
        can_ask=not done and sub.status in ("active", "paused"),
        signup_url=signup_url(listed),
    )


@pages.post("/unsubscribe/<token>/preferences-link")
@with_subscriber("unsubscribe")
def preferences_link(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    """Mails a fresh preferences link to the subscriber's own address, within the limits
    sign-up mail has; the page says the same whatever happened."""
    ctx = web_context()
    if not ctx.throttle.reserve((SIGNUPS_PER_CLIENT, client_address())):
        return notice("Too many requests", "Please try again in an hour.", 429)
    if sub.status in ("active", "paused"):
        listed = list_of(ctx, sub)
        message = emails.preferences_link(sub, ctx.settings, utcnow(), listed=listed)
        mail_within_quota(ctx, sub, message)
    return notice(
        "Check your inbox",
        f"If {sub.email} still gets digests, a link to its preferences is on its way there.",
    )


def _one_click() -> bool:
    """An RFC 8058 POST from a mail provider (rather than our own page's button)."""
    return request.form.get("List-Unsubscribe") == "One-Click" and "from_page" not in request.form


def _unsubscribe_refused(reason: str) -> tuple[str, int] | Response:
    """A mail provider gets plain text; a person gets the "this link does not work" page."""
    if _one_click():
        return Response(f"{INVALID_LINK}\n", 400, mimetype="text/plain")
    return invalid_link(reason)


@pages.post("/unsubscribe/<token>")
@csrf_exempt  # RFC 8058: mail providers POST without our cookies; the signed token authorises it
@with_subscriber("unsubscribe", refused=_unsubscribe_refused)
def unsubscribe(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int] | Response:
    one_click = _one_click()
    if sub.status != "unsubscribed":
        web_context().store.subscribers.set_status(sub.email, "unsubscribed", list_id=sub.list_id)
        log.info("unsubscribed subscriber %d (%s)", sub.id, "one-click" if one_click else "page")
    if one_click:
        return Response("unsubscribed\n", 200, mimetype="text/plain")
    return _unsubscribe_page(sub, done=True)


@pages.route("/preferences/<token>", methods=["GET", "POST"])
@with_subscriber("preferences")
def preferences(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    ctx = web_context()
    errors: dict[str, str] = {}
    saved = False
    if request.method == "POST":
        saves = (
            (PREFERENCE_SAVES_PER_CLIENT, client_address()),
            (PREFERENCE_SAVES_PER_SUBSCRIBER, str(sub.id)),
        )
        if not ctx.throttle.reserve(*saves):
            return notice("Too many changes", "Please wait an hour before saving again.", 429)
        sub, errors = _apply_preferences(ctx, sub, request.form)
        saved = not errors
    unsubscribe_token = ctx.tokens.make("unsubscribe", sub.id, sub.email)
    base = ctx.settings.base_url
    listed = list_of(ctx, sub)
    votes = ctx.store.feedback.votes_of(sub.id)
    return page(
        "preferences.html",
        400 if errors else 200,
        sub=sub,
        listed=listed,
        brand=listed.title,
        cadences=cadence_choices(listed),
        signup_url=signup_url(listed),
        form=request.form if errors else {},
        errors=errors,
        saved=saved,
        suggestions=suggestions(ctx, listed),
        max_topics=MAX_TOPICS,
        max_papers_limit=MAX_PAPERS_LIMIT,
        unsubscribe_url=url_for("pages.unsubscribe_page", token=unsubscribe_token),
        votes=votes,
        profile_words=describe_profile(sub.topics, votes),
        past_digests=[
            (d.edition, d.papers, d.trending, digest_url(sub, d.edition, ctx.tokens, base))
            for d in ctx.store.archive.sent_digests(sub.id)
        ],
        feed_url=feed_url(sub, ctx.tokens, base),
    )


def _apply_preferences(
    ctx: WebContext, sub: SubscriberRecord, form: Any
) -> tuple[SubscriberRecord, dict[str, str]]:
    """The subscriber after the form's action, and the form's problems (then nothing changed)."""
    action = form.get("action", "save")
    if action == "unvote":
        ctx.store.feedback.remove_vote(sub.id, form.get("arxiv_id", ""))
        return sub, {}
    if action == "pause":
        return ctx.store.subscribers.set_status(
            sub.email, "paused", allowed_from=("active", "paused"), list_id=sub.list_id
        ), {}
    if action == "resume":
        return ctx.store.subscribers.set_status(
            sub.email, "active", allowed_from=("paused", "active"), list_id=sub.list_id
        ), {}
    values, errors = validated(
        topics=lambda: list(known_topics(ctx, form.get("topics", ""))),
        timezone=lambda: validate_timezone(form.get("timezone", "UTC")),
        send_hour=lambda: validate_send_hour(form.get("send_hour", "")),
        max_papers=lambda: validate_max_papers(form.get("max_papers", "")),
        cadence=lambda: _cadence(form.get("cadence")),
    )
    if errors:
        return sub, errors
    show_trending = form.get("show_trending") == "on"
    return ctx.store.subscribers.update(
        sub.email, **values, show_trending=show_trending, list_id=sub.list_id
    ), {}


def cadence_choices(listed: ListRecord) -> list[tuple[str, str]]:
    """The "how often" choices: the list's own cadence (no override), then each cadence."""
    follow = ("", f"As the list sends: {cadence_words(listed.cadence)}")
    return [follow, *((cadence, cadence_words(cadence)) for cadence in CADENCES)]


def _cadence(raw: str | None) -> str | None:
    """The form's cadence: "" follows the list again; a form without the field (an old
    page) leaves it as it is (None)."""
    return validate_cadence(raw) if raw else raw
