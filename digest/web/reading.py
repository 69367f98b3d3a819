"""Reading what was sent: one day's digest as it was mailed ("View in browser"), the "more /
less like this" votes its links lead to, and the reader's private Atom feed. Every page here
shows stored picks, never a new ranking, so a link shows what the email showed."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Response, render_template, request
from werkzeug.http import http_date, is_resource_modified, quote_etag, unquote_etag

from digest.announcements import date_label
from digest.editions import digest_content, digest_url, vote_url
from digest.lists import titles
from digest.models import utcnow
from digest.records import DeliveryRecord, SubscriberRecord
from digest.sources import PaperRecord
from digest.subscriptions import papers_of_topics
from digest.web.context import (
    WebContext,
    csrf_exempt,
    invalid_link,
    list_of,
    notice,
    page,
    pages,
    web_context,
    with_subscriber,
)
from digest.web.history import ArchiveDay, archive_days, reader_today, recent_days

log = logging.getLogger(__name__)

VOTES = {"up": 1, "down": -1}
FEED_ENTRIES = 100  # the newest papers a feed lists; readers keep what they saw


@pages.get("/digest/<token>")
@with_subscriber("digest")
def digest_page(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    """One day's digest exactly as it was sent: its stored picks, not a new ranking."""
    ctx = web_context()
    sent = _sent_digest(sub, data.bound)
    if sent is None:
        return notice(
            "No digest that day", f"No digest was sent to {sub.email} on {data.bound}.", 404
        )
    ids = [str(pick["arxiv_id"]) for pick in sent.picks] + sorted(papers_of_topics(sub.topics))
    papers = {p.arxiv_id: p for p in ctx.store.papers.find(ids=ids)}
    base = ctx.settings.base_url
    listed = list_of(ctx, sub)
    content = digest_content(
        sub,
        sent.picks,
        papers,
        sent.edition,
        ctx.tokens,
        base,
        sent.quiet_topics,
        titles(listed, ctx.settings.sender),
    )
    return page(
        "archive.html",
        brand=content.title,
        content=content,
        trending_votes=[vote_url(content.archive_url, p.arxiv_id) for p in content.trending],
        days=_archive_days(ctx, sub),
    )


def _archive_days(ctx: WebContext, sub: SubscriberRecord) -> list[ArchiveDay]:
    """The reader's recent days for the archive's list: the digests sent, with their links,
    and for the other days the runs' verdict on each."""
    today = reader_today(sub, utcnow())
    base = ctx.settings.base_url
    sent = {
        d.edition: (d, digest_url(sub, d.edition, ctx.tokens, base))
        for d in ctx.store.archive.sent_digests(sub.id)
    }
    days = recent_days(sub, today, sent.keys())
    return archive_days(sub, today, days, sent, ctx.store.runs.day_summaries(days))


def _sent_digest(sub: SubscriberRecord, edition: str) -> DeliveryRecord | None:
    """The digest of the day a link is bound to, as sent to ``sub``; None if none was."""
    try:
        day = dt.date.fromisoformat(edition)
    except ValueError:
        return None
    return web_context().store.archive.sent_digest(sub.id, day)


@pages.get("/digest/<token>/vote/<path:arxiv_id>")
@with_subscriber("digest")
def vote_page(sub: SubscriberRecord, data: Any, token: str, arxiv_id: str) -> tuple[str, int]:
    """Shows the paper and the reader's vote; records nothing (mail gateways open every link).
    ``?v=up`` or ``?v=down``, as the email's two links say, puts that button first."""
    paper = _paper_of_digest(sub, data.bound, arxiv_id)
    if paper is None:
        return invalid_link("the paper is not in that digest")
    wanted = request.args.get("v") if request.args.get("v") in VOTES else None
    return _vote_page(sub, paper, wanted)


@pages.post("/digest/<token>/vote/<path:arxiv_id>")
@csrf_exempt  # one tap from the email: the signed link to the reader's digest authorises it
@with_subscriber("digest")
def vote(sub: SubscriberRecord, data: Any, token: str, arxiv_id: str) -> tuple[str, int]:
    ctx = web_context()
    paper = _paper_of_digest(sub, data.bound, arxiv_id)
    if paper is None:
        return invalid_link("the paper is not in that digest")
    choice = request.form.get("vote", "")
    if choice in VOTES:
        ctx.store.feedback.record_vote(sub.id, arxiv_id, VOTES[choice], utcnow())
        log.info("subscriber %d voted %s on %s", sub.id, choice, arxiv_id)
    elif choice == "none":
        ctx.store.feedback.remove_vote(sub.id, arxiv_id)
    else:
        return _vote_page(sub, paper, None, status=400)
    return _vote_page(sub, paper, None, saved=True)


def _paper_of_digest(sub: SubscriberRecord, edition: str, arxiv_id: str) -> PaperRecord | None:
    """The paper, if the reader's digest of ``edition`` held it: a digest's link votes on its
    own papers only."""
    sent = _sent_digest(sub, edition)
    if sent is None or all(pick["arxiv_id"] != arxiv_id for pick in sent.picks):
        return None
    found = web_context().store.papers.find(ids=[arxiv_id])
    return found[0] if found else None


def _vote_page(
    sub: SubscriberRecord,
    paper: PaperRecord,
    wanted: str | None,
    saved: bool = False,
    status: int = 200,
) -> tuple[str, int]:
    """The paper with its two buttons, the reader's current vote first unless they asked."""
    ctx = web_context()
    current = {1: "up", -1: "down"}.get(ctx.store.feedback.vote_of(sub.id, paper.arxiv_id) or 0)
    return page(
        "vote.html",
        status,
        brand=list_of(ctx, sub).title,
        paper=paper,
        current=current,
        wanted=wanted or current or "up",
        saved=saved,
    )


@pages.get("/feed/<token>")
@with_subscriber("feed")
def feed(sub: SubscriberRecord, data: Any, token: str) -> Response:
    """Atom, newest first: one entry per paper sent. A conditional GET that finds nothing new
    is a 304 after reading the sent digests alone, before any paper or template."""
    ctx = web_context()
    digests = ctx.store.archive.sent_digests(sub.id)
    entries = [(d, pick) for d in digests for pick in d.picks][:FEED_ENTRIES]
    updated = max((d.sent_at for d in digests if d.sent_at), default=sub.created_at)
    headers = {
        "ETag": quote_etag(f"{sub.id}-{len(entries)}-{updated.isoformat()}"),
        "Last-Modified": http_date(updated.replace(tzinfo=dt.UTC)),
        "Cache-Control": "private, max-age=300",
    }
    if not is_resource_modified(
        request.environ, etag=unquote_etag(headers["ETag"])[0], last_modified=updated
    ):
        return Response(status=304, headers=headers)
    ids = [str(pick["arxiv_id"]) for _, pick in entries]
    papers = {p.arxiv_id: p for p in ctx.store.papers.find(ids=ids)}
    xml = render_template(
        "web/feed.xml",
        sub=sub,
        title=list_of(ctx, sub).title,
        updated=updated,
        feed_id=f"tag:{urlsplit(ctx.settings.base_url).hostname},2026:paper-digest:{sub.id}",
        self_url=f"{ctx.settings.base_url}/feed/{token}",
        home_url=ctx.settings.base_url + "/",
        date_label=date_label,
        entries=[
            (d, pick, papers[pick["arxiv_id"]]) for d, pick in entries if pick["arxiv_id"] in papers
        ],
    )
    return Response(xml, mimetype="application/atom+xml", headers=headers)
