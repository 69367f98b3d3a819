"""Signing up: the home page (the public lists, or the only one's form), each public list's
subscribe form at ``/l/SLUG``, the double opt-in (a mailed link whose page asks before it
confirms, since mail gateways open every link with a GET), and the live preview of what
typed topics would get today."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, jsonify, request, url_for

from digest import emails
from digest.limits import Limit
from digest.lists import (
    DEFAULT_LIST,
    cadence_words,
    first_edition_time,
    is_weekly,
    validate_cadence,
)
from digest.models import utcnow
from digest.pipeline import rank_today
from digest.records import ListRecord, SubscriberRecord
from digest.subscriptions import (
    MAX_TOPICS,
    OPTED_OUT,
    InvalidInput,
    SubscriberInput,
    build_subscriber_input,
    normalize_email,
    normalize_topics,
    validate_send_hour,
    validate_timezone,
)
from digest.web.context import (
    WebContext,
    client_address,
    invalid_link,
    list_of,
    notice,
    page,
    pages,
    public_list,
    signup_url,
    suggestions,
    web_context,
    with_subscriber,
)
from digest.web.forms import known_topics, optional, topic_lines, validated
from digest.web.mail import mail_within_quota

SIGNUPS_PER_CLIENT = Limit("client", 20, 3600)
PREVIEWS_PER_CLIENT = Limit("preview", 30, 60)  # each ranks the day's papers
# five topics of 80 characters, percent-encoded, fit with room to spare
MAX_PREVIEW_QUERY_BYTES = 1024
PREVIEW_PAPERS = 5
# A confirmation link from before links recorded when they were issued: older than anything.
LINK_OF_UNKNOWN_AGE = dt.datetime(1970, 1, 1)


def subscribe_page(
    ctx: WebContext,
    listed: ListRecord,
    status: int = 200,
    form: Any = None,
    errors: dict[str, str] | None = None,
) -> tuple[str, int]:
    """A list's subscribe form, blank or as sent back with its problems."""
    return page(
        "subscribe.html",
        status,
        listed=listed,
        brand=listed.title,
        cadence=cadence_words(listed.cadence),
        suggestions=suggestions(ctx, listed),
        form=form or {},
        errors=errors or {},
        max_topics=MAX_TOPICS,
        default_hour=ctx.settings.send_hour,
    )


@pages.get("/")
def subscribe_form() -> tuple[str, int]:
    """The public lists to choose from; with only one, its form (an install with one list
    looks as it did before there were lists)."""
    ctx = web_context()
    public = ctx.store.lists.public()
    if len(public) == 1:
        return subscribe_page(ctx, public[0])
    return page(
        "lists.html",
        lists=[(listed, cadence_words(listed.cadence)) for listed in public],
    )


@pages.get("/l/<slug>")
def list_page(slug: str) -> tuple[str, int]:
    """A public list's subscribe form; a private or unknown list is "page not found"."""
    ctx = web_context()
    return subscribe_page(ctx, public_list(ctx, slug))


@pages.post("/subscribe")
def subscribe() -> tuple[str, int]:
    ctx = web_context()
    if not ctx.throttle.reserve((SIGNUPS_PER_CLIENT, client_address())):
        return notice(
            "Too many requests",
            "Too many sign-ups from your network. Please try again in an hour.",
            429,
        )
    form = request.form
    listed = public_list(ctx, form.get("list"))
    values, errors = validated(
        email=lambda: normalize_email(form.get("email", "")),
        topics=lambda: known_topics(ctx, form.get("topics", "")),
        timezone=optional(validate_timezone, form.get("timezone")),
        send_hour=optional(validate_send_hour, form.get("send_hour")),
    )
    if errors:
        return subscribe_page(ctx, listed, 400, form, errors)
    data = SubscriberInput(**values)
    answer_by = ctx.clock() + ctx.settings.signup_answer_seconds
    if not _mail_sign_up(ctx, data, listed):
        return notice(
            "Please try again later",
            "We could not send the email just now. Nothing was lost: "
            "submit the form again in a few minutes.",
            503,
        )
    # The same answer, no sooner than the same moment, whether the address is new, pending,
    # already subscribed or over its mail limit: neither the page nor its timing tells.
    ctx.sleep(max(answer_by - ctx.clock(), 0.0))
    return notice(
        "Check your inbox",
        f"If {data.email} can receive our emails, a message is on its way. Open the link in it "
        f"within {ctx.settings.pending_expiry_days} days to start {listed.title}.",
        brand=listed.title,
    )


def _mail_sign_up(ctx: WebContext, data: SubscriberInput, listed: ListRecord) -> bool:
    """Record the sign-up to ``listed`` and mail the address, within its mail limits. False
    only when the mail could not be sent (and then it is not counted). An address on other
    lists gets a new subscription here, with its own confirmation."""
    sub, needs_confirmation = ctx.store.subscribers.request_subscription(
        data, ctx.defaults, list_id=listed.id
    )
    # An active or paused subscriber who forgot is sent a way to their preferences instead
    # (nothing changes): from the page alone, nobody can tell which of the two was sent.
    now = utcnow()
    message = (
        emails.confirmation(sub, data, ctx.settings, now, listed=listed)
        if needs_confirmation
        else emails.already_subscribed(sub, ctx.settings, now, listed=listed)
    )
    return mail_within_quota(ctx, sub, message)


@pages.get("/confirm/<token>")
@with_subscriber("confirm")
def confirm_page(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    listed = list_of(web_context(), sub)
    return page(
        "confirm.html",
        topics=data.payload.get("t") or sub.topics,
        email=sub.email,
        brand=listed.title,
        cadence=emails.in_sentence(cadence_words(sub.cadence or listed.cadence)),
    )


@pages.post("/confirm/<token>")
@with_subscriber("confirm")
def confirm(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    ctx = web_context()
    confirmed = ctx.store.subscribers.confirm_subscription(
        sub.id,
        _requested_settings(sub, data.payload),
        ctx.defaults,
        data.issued_at or LINK_OF_UNKNOWN_AGE,
    )
    if confirmed is None:
        return invalid_link("subscriber removed")
    if confirmed.status in OPTED_OUT:
        return notice(
            "This link does not work",
            "This subscription was cancelled after the link was sent. "
            "Subscribe again to get a new link.",
            400,
            link=(signup_url(list_of(ctx, confirmed)), "Subscribe again"),
        )
    prefs = ctx.tokens.make("preferences", confirmed.id, confirmed.email)
    listed = list_of(ctx, confirmed)
    cadence = confirmed.cadence or listed.cadence
    when = first_edition_time(utcnow(), confirmed.timezone, confirmed.send_hour, cadence)
    return notice(
        "You are subscribed",
        f"Your first digest on {', '.join(confirmed.topics)} arrives {when}.",
        link=(url_for("pages.preferences", token=prefs), "Manage preferences"),
        brand=listed.title,
    )


def _requested_settings(sub: SubscriberRecord, payload: dict[str, Any]) -> SubscriberInput:
    """What the confirmation link asks for; a link without it confirms the row as stored."""
    if not payload:
        return SubscriberInput(sub.email, sub.topics, sub.timezone, sub.send_hour, sub.max_papers)
    return build_subscriber_input(
        sub.email, payload.get("t") or [], payload.get("z"), payload.get("H"), payload.get("m")
    )


@pages.get("/preview")
def preview() -> tuple[Response, int] | Response:
    """Today's papers for typed topics, from what the public list ``?list=`` picks from (its
    sources; a weekly list's week, or a reader's own ``?cadence=`` window, as the
    preferences page sends it). Bounded before any work: the raw query's size first, then
    the client's rate, then the topics themselves; nothing it computes is stored."""
    ctx = web_context()
    if len(request.query_string) > MAX_PREVIEW_QUERY_BYTES:
        return jsonify({"error": "too many or too long topics", "papers": []}), 400
    if not ctx.throttle.reserve((PREVIEWS_PER_CLIENT, client_address())):
        return jsonify({"error": "too many previews; wait a minute", "papers": []}), 429
    try:
        topics = normalize_topics(topic_lines(request.args.get("topics", "")))
        cadence = optional(validate_cadence, request.args.get("cadence"))()
    except InvalidInput as exc:
        return jsonify({"error": str(exc), "papers": []}), 400
    now = utcnow()
    listed = _previewed_list(ctx, request.args.get("list"))
    visitor = SubscriberRecord(
        0,
        "",
        "active",
        topics,
        "UTC",
        0,
        PREVIEW_PAPERS,
        now,
        None,
        list_id=listed.id,
        cadence=cadence,
    )
    plan = rank_today(ctx.store, ctx.settings, [visitor], now, remember=False, fresh=True)
    papers = [
        (plan.papers[pick["arxiv_id"]], pick["reason"])
        for pick in plan.picks[0]
        if pick.get("topic")
    ]
    return jsonify(
        {
            "heading": preview_heading(cadence or listed.cadence),
            "papers": [
                {"title": paper.title, "url": paper.hf_url or paper.abs_url, "reason": reason}
                for paper, reason in papers
            ],
        }
    )


def preview_heading(cadence: str) -> str:
    """What the live preview's papers are: a weekly digest's week, or today's."""
    return f"{'This week' if is_weekly(cadence) else 'Today'} these topics would get you:"


def _previewed_list(ctx: WebContext, slug: str | None) -> ListRecord:
    """The public list a preview is for; a private or unknown one previews as the default
    scope does (every source, the day), so a preview tells nothing of private lists."""
    found = ctx.store.lists.get(slug) if slug else None
    return found if found is not None and found.public else DEFAULT_LIST
