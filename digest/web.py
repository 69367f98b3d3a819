"""The subscriber-facing web app (Flask): subscribe with double opt-in, one-click unsubscribe
(RFC 8058), and a preferences page. A thin shell over storage, tokens, rendering and delivery.

Routes
  GET  /                       subscribe form
  POST /subscribe              always the same answer, in the same time, whether or not the address exists
  GET  /confirm/<token>        a page with one button (mail gateways open every link with a GET)
  POST /confirm/<token>        activates the subscription
  GET  /unsubscribe/<token>    a confirmation page with one button
  POST /unsubscribe/<token>    unsubscribes at once; mail providers POST
                               "List-Unsubscribe=One-Click" here and get a plain 200
  GET  /preferences/<token>    topics, hour, time zone, digest size, pause, unsubscribe
  POST /preferences/<token>
  GET  /digest/<token>         one day's digest as it was sent ("View in browser")
  GET  /digest/<token>/vote/<arxiv id>?v=up|down
                               a paper of that digest with "more / less like this" buttons
                               (a GET records nothing)
  POST /digest/<token>/vote/<arxiv id>
                               records, changes or removes the vote (the signed token authorises it)
  GET  /feed/<token>           the reader's private Atom feed of every paper sent (ETag, 304)
  GET  /preview?topics=...     JSON: today's papers the typed topics would get (the form shows it live)
  GET  /healthz                database reachable?

The signed token is the credential on every page but the sign-up form; every form also
carries a CSRF token (Flask-WTF), except the unsubscribe and vote POSTs: mail providers must
be able to make the first without one, and the second is one tap from an email, where the
token in the URL (the reader's digest of one day, which must hold the paper) authorises it. What the app defends
against, and how, is in the README ("The subscribe page").
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import FileSystemLoader
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.http import http_date, is_resource_modified, quote_etag, unquote_etag
from werkzeug.middleware.proxy_fix import ProxyFix

from digest import emails
from digest.announcements import date_label
from digest.editions import digest_content, digest_url, feed_url, vote_url
from digest.fetching import Fetcher
from digest.ingestion import require_topic_papers
from digest.limits import Limit, RateLimiter, Throttle, redis_client
from digest.messages import Message, wire_address
from digest.models import utcnow
from digest.pipeline import rank_today
from digest.records import DeliveryRecord, SubscriberDefaults, SubscriberRecord
from digest.rendering import TEMPLATES_DIR, about
from digest.settings import Settings, SettingsError
from digest.sources import PaperRecord
from digest.storage import Storage, StorageError
from digest.subscriptions import (
    MAX_PAPERS_LIMIT,
    MAX_TOPICS,
    OPTED_OUT,
    InvalidInput,
    SubscriberInput,
    build_subscriber_input,
    first_digest_time,
    mail_domain_of,
    mailbox_of,
    normalize_email,
    normalize_topics,
    papers_of_topics,
    suggested_topics,
    validate_max_papers,
    validate_send_hour,
    validate_timezone,
)
from digest.tokens import INVALID_LINK, TokenError, Tokens
from digest.transports import PermanentError, TransientError, make_transport

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024
# five topics of 80 characters, percent-encoded, fit with room to spare
MAX_PREVIEW_QUERY_BYTES = 1024
SIGNUPS_PER_CLIENT = Limit("client", 20, 3600)
# confirmation or reminder emails to one address (1 while counted without Redis: see Limit)
MAILS_PER_ADDRESS = Limit("address", 3, 86400, without_redis=1)
# ... and to one mailbox: ada+1@, a.da@gmail.com and ada@googlemail.com are one person
MAILS_PER_MAILBOX = Limit("mailbox", 3, 86400, without_redis=1)
PREVIEWS_PER_CLIENT = Limit("preview", 30, 60)  # each ranks the day's papers
# preference saves (each may look papers up on arXiv): per client, and per subscriber
PREFERENCE_SAVES_PER_CLIENT = Limit("prefs-client", 30, 3600)
PREFERENCE_SAVES_PER_SUBSCRIBER = Limit("prefs-subscriber", 20, 3600)
# a request thread waits for arXiv at most this long, and for its turn (arXiv asks for 3 s
# between requests, shared by every visitor of this process) at most this long
LOOKUP_TIMEOUT = 4.0
LOOKUP_QUEUE = 6.0
ACCOUNT_MAIL_TIMEOUT = 10.0  # seconds a sign-up waits on SMTP, whatever DIGEST_SMTP_*TIMEOUT say
PREVIEW_PAPERS = 5
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Links carry tokens: never send them to another site. Same-origin requests keep their
    # Referer, which Flask-WTF's CSRF check demands on every HTTPS form POST.
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "interest-cohort=()",
}
HSTS = "max-age=31536000"
PRIVATE_PAGES = ("/confirm", "/unsubscribe", "/preferences", "/digest")
VOTES = {"up": 1, "down": -1}
BOUND_PURPOSES = ("digest",)
FEED_ENTRIES = 100  # the newest papers a feed lists; readers keep what they saw

# A confirmation link from before links recorded when they were issued: older than anything.
LINK_OF_UNKNOWN_AGE = dt.datetime(1970, 1, 1)

pages = Blueprint("pages", __name__)
csrf = CSRFProtect()


@dataclass
class WebContext:
    settings: Settings
    store: Storage
    tokens: Tokens
    throttle: Throttle
    limiter: RateLimiter  # the send rate shared with the digest workers
    lookups: Fetcher  # the one client asking arXiv about papers topics name, spaced as it asks
    transport_factory: Callable[[], Any]
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @property
    def defaults(self) -> SubscriberDefaults:
        return self.settings.subscriber_defaults


def create_app(
    settings: Settings,
    store: Storage | None = None,
    redis_conn: redis.Redis | None = None,
    transport_factory: Callable[[], Any] | None = None,
) -> Flask:
    """Build the app; tests pass their own store, Redis and transport."""
    refuse_insecure_production(settings)
    app = Flask(__name__, static_folder=str(TEMPLATES_DIR / "static"), static_url_path="/static")
    app.jinja_loader = FileSystemLoader(str(TEMPLATES_DIR))
    app.jinja_env.filters["about"] = about  # "on RL", "like “…”"
    https = settings.base_url.startswith("https://")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=https,
    )
    if settings.uses_dev_secret:
        log.warning(
            "DIGEST_SECRET_KEY is not set: links and forms are signed with a development key"
        )
    client = redis_conn if redis_conn is not None else redis_client(settings)
    account_settings = settings.model_copy(
        update={
            "smtp_timeout": min(settings.smtp_timeout, ACCOUNT_MAIL_TIMEOUT),
            "smtp_data_timeout": min(settings.smtp_data_timeout, ACCOUNT_MAIL_TIMEOUT),
        }
    )
    ctx = WebContext(
        settings=settings,
        store=store
        or Storage.from_url(
            settings.resolved_database_url,
            connect_timeout=settings.db_connect_timeout,
            statement_timeout=settings.web_db_timeout,
        ),
        tokens=settings.tokens,
        throttle=Throttle(client),
        limiter=RateLimiter(settings.rate_limit_per_second, client),
        lookups=Fetcher(timeout=LOOKUP_TIMEOUT, retries=0, max_queue=LOOKUP_QUEUE),
        transport_factory=transport_factory or (lambda: make_transport(account_settings)),
    )
    app.extensions["digest"] = ctx
    csrf.init_app(app)
    app.register_blueprint(pages)
    if settings.metrics:
        from digest.metrics import metrics

        app.register_blueprint(metrics)
    _register_errors(app)
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if https:
            response.headers["Strict-Transport-Security"] = HSTS
        if request.path.startswith(PRIVATE_PAGES):
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


def refuse_insecure_production(settings: Settings) -> None:
    """A public (https) site signed with the published development key would let anyone
    forge unsubscribe and preferences links: refuse to serve it at all."""
    if settings.uses_dev_secret and settings.base_url.startswith("https://"):
        raise SettingsError(
            f"DIGEST_SECRET_KEY is not set, and DIGEST_BASE_URL ({settings.base_url}) is public: anyone could forge "
            "links with the development key. Set DIGEST_SECRET_KEY, e.g. to the output of "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def _ctx() -> WebContext:
    return current_app.extensions["digest"]


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"web/{template}", timezones=timezone_names(), **context), status


def _notice(
    title: str, message: str, status: int = 200, link: tuple[str, str] | None = None
) -> tuple[str, int]:
    return _page("notice.html", status, title=title, message=message, link=link)


def _invalid_link(reason: str) -> tuple[str, int]:
    log.info("refused a link: %s", reason)
    return _notice(
        "This link does not work",
        f"Sorry, {INVALID_LINK}.",
        400,
        link=(url_for("pages.subscribe_form"), "Go to the subscribe page"),
    )


def with_subscriber(
    purpose: str, refused: Callable[[str], Any] = _invalid_link
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view whose URL carries a ``purpose`` token gets the subscriber it names (and the
    token's data); any bad link gets ``refused``: by default the one "this link does not
    work" page, whatever was wrong with it. Tokens that must be bound (to a day's digest)
    are refused without it."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(token: str, **rest: str) -> Any:
            ctx = _ctx()
            try:
                data = ctx.tokens.read(purpose, token)
            except TokenError as exc:
                return refused(exc.reason)
            if purpose in BOUND_PURPOSES and not data.bound:
                return refused("not bound to a day's digest")
            sub = ctx.store.subscribers.get_by_id(data.subscriber_id)
            if sub is None or not data.belongs_to(sub.email):
                return refused("no such subscriber")
            return view(sub, data, token, **rest)

        return wrapper

    return decorate


def topic_lines(raw: str) -> list[str]:
    """The topics field: one per line, commas also accepted; blank lines ignored."""
    return [t for t in raw.replace(",", "\n").splitlines() if t.strip()]


def _client() -> str:
    """The client's address: behind DIGEST_TRUSTED_PROXIES proxies, the one they forwarded."""
    return request.remote_addr or "unknown"


def _subscribe_form(
    ctx: WebContext, status: int = 200, form: Any = None, errors: dict[str, str] | None = None
) -> tuple[str, int]:
    return _page(
        "subscribe.html",
        status,
        suggestions=_suggestions(ctx),
        form=form or {},
        errors=errors or {},
        max_topics=MAX_TOPICS,
        default_hour=ctx.settings.send_hour,
    )


def _validated(**checks: Callable[[], Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every field's check, so a form shows all its problems at once: the valid values, and
    per field the problem in plain words, to show beside it."""
    values, errors = {}, {}
    for name, check in checks.items():
        try:
            values[name] = check()
        except InvalidInput as exc:
            errors[exc.field or name] = exc.plain
    return values, errors


def _known_topics(ctx: WebContext, raw: str) -> tuple[str, ...]:
    """The topics field, normalised; a paper it names by id or link is looked up on arXiv
    when it is not stored yet."""
    topics = normalize_topics(topic_lines(raw))
    require_topic_papers(ctx.store.papers, ctx.settings, topics, ctx.lookups)
    return topics


def _optional(check: Callable[[str], Any], raw: str | None) -> Callable[[], Any]:
    """A check for a field that may be left blank (then: the default)."""
    return lambda: check(raw) if raw not in (None, "") else None


@pages.get("/")
def subscribe_form() -> tuple[str, int]:
    return _subscribe_form(_ctx())


@pages.post("/subscribe")
def subscribe() -> tuple[str, int]:
    ctx = _ctx()
    if not ctx.throttle.reserve((SIGNUPS_PER_CLIENT, _client())):
        return _notice(
            "Too many requests",
            "Too many sign-ups from your network. Please try again in an hour.",
            429,
        )
    form = request.form
    values, errors = _validated(
        email=lambda: normalize_email(form.get("email", "")),
        topics=lambda: _known_topics(ctx, form.get("topics", "")),
        timezone=_optional(validate_timezone, form.get("timezone")),
        send_hour=_optional(validate_send_hour, form.get("send_hour")),
    )
    if errors:
        return _subscribe_form(ctx, 400, form, errors)
    data = SubscriberInput(**values)
    answer_by = ctx.clock() + ctx.settings.signup_answer_seconds
    if not _mail_sign_up(ctx, data):
        return _notice(
            "Please try again later",
            "We could not send the email just now. Nothing was lost: "
            "submit the form again in a few minutes.",
            503,
        )
    # The same answer, no sooner than the same moment, whether the address is new, pending,
    # already subscribed or over its mail limit: neither the page nor its timing tells.
    ctx.sleep(max(answer_by - ctx.clock(), 0.0))
    return _notice(
        "Check your inbox",
        f"If {data.email} can receive our emails, a message is on its way. Open the link in it "
        f"within {ctx.settings.pending_expiry_days} days to start your daily digest.",
    )


def _mail_sign_up(ctx: WebContext, data: SubscriberInput) -> bool:
    """Record the sign-up and mail the address, within its mail limits. False only when the
    mail could not be sent (and then it is not counted)."""
    sub, needs_confirmation = ctx.store.subscribers.request_subscription(data, ctx.defaults)
    # An active or paused subscriber who forgot is sent a way to their preferences instead
    # (nothing changes): from the page alone, nobody can tell which of the two was sent.
    message = (
        emails.confirmation(sub, data, ctx.settings, utcnow())
        if needs_confirmation
        else emails.already_subscribed(sub, ctx.settings, utcnow())
    )
    return _mail_within_quota(ctx, sub, message)


def _mail_within_quota(ctx: WebContext, sub: SubscriberRecord, message: Message) -> bool:
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
    if _send_account_email(ctx, sub, message):
        return True
    ctx.throttle.release(*quota)
    return False


@pages.get("/confirm/<token>")
@with_subscriber("confirm")
def confirm_page(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    return _page("confirm.html", topics=data.payload.get("t") or sub.topics, email=sub.email)


@pages.post("/confirm/<token>")
@with_subscriber("confirm")
def confirm(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    ctx = _ctx()
    confirmed = ctx.store.subscribers.confirm_subscription(
        sub.id,
        _requested_settings(sub, data.payload),
        ctx.defaults,
        data.issued_at or LINK_OF_UNKNOWN_AGE,
    )
    if confirmed is None:
        return _invalid_link("subscriber removed")
    if confirmed.status in OPTED_OUT:
        return _notice(
            "This link does not work",
            "This subscription was cancelled after the link was sent. "
            "Subscribe again to get a new link.",
            400,
            link=(url_for("pages.subscribe_form"), "Subscribe again"),
        )
    prefs = ctx.tokens.make("preferences", confirmed.id, confirmed.email)
    when = first_digest_time(utcnow(), confirmed.timezone, confirmed.send_hour)
    return _notice(
        "You are subscribed",
        f"Your first digest on {', '.join(confirmed.topics)} arrives {when}.",
        link=(url_for("pages.preferences", token=prefs), "Manage preferences"),
    )


def _requested_settings(sub: SubscriberRecord, payload: dict[str, Any]) -> SubscriberInput:
    """What the confirmation link asks for; a link without it confirms the row as stored."""
    if not payload:
        return SubscriberInput(sub.email, sub.topics, sub.timezone, sub.send_hour, sub.max_papers)
    return build_subscriber_input(
        sub.email, payload.get("t") or [], payload.get("z"), payload.get("H"), payload.get("m")
    )


@pages.get("/unsubscribe/<token>")
@with_subscriber("unsubscribe")
def unsubscribe_page(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    """Asks first (mail scanners follow links). The link never expires and travels with
    every forwarded digest, so it opens no other page: the preferences (to pause instead)
    are mailed to the address on request."""
    return _page(
        "unsubscribe.html",
        email=sub.email,
        done=sub.status == "unsubscribed",
        can_ask=sub.status in ("active", "paused"),
    )


@pages.post("/unsubscribe/<token>/preferences-link")
@with_subscriber("unsubscribe")
def preferences_link(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    """Mails a fresh preferences link to the subscriber's own address, within the limits
    sign-up mail has; the page says the same whatever happened."""
    ctx = _ctx()
    if not ctx.throttle.reserve((SIGNUPS_PER_CLIENT, _client())):
        return _notice("Too many requests", "Please try again in an hour.", 429)
    if sub.status in ("active", "paused"):
        _mail_within_quota(ctx, sub, emails.preferences_link(sub, ctx.settings, utcnow()))
    return _notice(
        "Check your inbox",
        f"If {sub.email} still gets digests, a link to its preferences is on its way there.",
    )


def _one_click() -> bool:
    """An RFC 8058 POST from a mail provider (rather than our own page's button)."""
    return request.form.get("List-Unsubscribe") == "One-Click" and "from_page" not in request.form


def _unsubscribe_refused(reason: str) -> tuple[str, int] | Response:
    if _one_click():
        return Response(f"{INVALID_LINK}\n", 400, mimetype="text/plain")
    return _invalid_link(reason)


@pages.post("/unsubscribe/<token>")
@csrf.exempt  # RFC 8058: mail providers POST without our cookies; the signed token authorises it
@with_subscriber("unsubscribe", refused=_unsubscribe_refused)
def unsubscribe(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int] | Response:
    one_click = _one_click()
    if sub.status != "unsubscribed":
        _ctx().store.subscribers.set_status(sub.email, "unsubscribed")
        log.info("unsubscribed subscriber %d (%s)", sub.id, "one-click" if one_click else "page")
    if one_click:
        return Response("unsubscribed\n", 200, mimetype="text/plain")
    return _page("unsubscribe.html", email=sub.email, done=True)


@pages.route("/preferences/<token>", methods=["GET", "POST"])
@with_subscriber("preferences")
def preferences(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    ctx = _ctx()
    errors: dict[str, str] = {}
    saved = False
    if request.method == "POST":
        saves = (
            (PREFERENCE_SAVES_PER_CLIENT, _client()),
            (PREFERENCE_SAVES_PER_SUBSCRIBER, str(sub.id)),
        )
        if not ctx.throttle.reserve(*saves):
            return _notice("Too many changes", "Please wait an hour before saving again.", 429)
        sub, errors = _apply_preferences(ctx, sub, request.form)
        saved = not errors
    unsubscribe_token = ctx.tokens.make("unsubscribe", sub.id, sub.email)
    base = ctx.settings.base_url
    return _page(
        "preferences.html",
        400 if errors else 200,
        sub=sub,
        form=request.form if errors else {},
        errors=errors,
        saved=saved,
        suggestions=_suggestions(ctx),
        max_topics=MAX_TOPICS,
        max_papers_limit=MAX_PAPERS_LIMIT,
        unsubscribe_url=url_for("pages.unsubscribe_page", token=unsubscribe_token),
        votes=ctx.store.feedback.votes_of(sub.id),
        past_digests=[
            (d.edition, d.papers, d.trending, digest_url(sub, d.edition, ctx.tokens, base))
            for d in ctx.store.archive.sent_digests(sub.id)
        ],
        feed_url=feed_url(sub, ctx.tokens, base),
    )


@pages.get("/digest/<token>")
@with_subscriber("digest")
def digest_page(sub: SubscriberRecord, data: Any, token: str) -> tuple[str, int]:
    """One day's digest exactly as it was sent: its stored picks, not a new ranking."""
    ctx = _ctx()
    sent = _sent_digest(sub, data.bound)
    if sent is None:
        return _notice(
            "No digest that day", f"No digest was sent to {sub.email} on {data.bound}.", 404
        )
    ids = [pick["arxiv_id"] for pick in sent.picks] + sorted(papers_of_topics(sub.topics))
    papers = {p.arxiv_id: p for p in ctx.store.papers.find(ids=ids)}
    base = ctx.settings.base_url
    content = digest_content(
        sub, sent.picks, papers, sent.edition, ctx.tokens, base, sent.quiet_topics
    )
    return _page(
        "archive.html",
        content=content,
        trending_votes=[vote_url(content.archive_url, p.arxiv_id) for p in content.trending],
    )


def _sent_digest(sub: SubscriberRecord, edition: str) -> DeliveryRecord | None:
    """The digest of the day a link is bound to, as sent to ``sub``; None if none was."""
    try:
        day = dt.date.fromisoformat(edition)
    except ValueError:
        return None
    return _ctx().store.archive.sent_digest(sub.id, day)


@pages.get("/digest/<token>/vote/<path:arxiv_id>")
@with_subscriber("digest")
def vote_page(sub: SubscriberRecord, data: Any, token: str, arxiv_id: str) -> tuple[str, int]:
    """Shows the paper and the reader's vote; records nothing (mail gateways open every link).
    ``?v=up`` or ``?v=down``, as the email's two links say, puts that button first."""
    paper = _paper_of_digest(sub, data.bound, arxiv_id)
    if paper is None:
        return _invalid_link("the paper is not in that digest")
    wanted = request.args.get("v") if request.args.get("v") in VOTES else None
    return _vote_page(sub, paper, wanted)


@pages.post("/digest/<token>/vote/<path:arxiv_id>")
@csrf.exempt  # one tap from the email: the signed link to the reader's digest authorises it
@with_subscriber("digest")
def vote(sub: SubscriberRecord, data: Any, token: str, arxiv_id: str) -> tuple[str, int]:
    ctx = _ctx()
    paper = _paper_of_digest(sub, data.bound, arxiv_id)
    if paper is None:
        return _invalid_link("the paper is not in that digest")
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
    found = _ctx().store.papers.find(ids=[arxiv_id])
    return found[0] if found else None


def _vote_page(
    sub: SubscriberRecord,
    paper: PaperRecord,
    wanted: str | None,
    saved: bool = False,
    status: int = 200,
) -> tuple[str, int]:
    ctx = _ctx()
    current = {1: "up", -1: "down"}.get(ctx.store.feedback.vote_of(sub.id, paper.arxiv_id) or 0)
    return _page(
        "vote.html",
        status,
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
    ctx = _ctx()
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
    ids = [pick["arxiv_id"] for _, pick in entries]
    papers = {p.arxiv_id: p for p in ctx.store.papers.find(ids=ids)}
    xml = render_template(
        "web/feed.xml",
        sub=sub,
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


@pages.get("/preview")
def preview() -> tuple[Response, int] | Response:
    """Today's papers for typed topics. Bounded before any work: the raw query's size first,
    then the client's rate, then the topics themselves; nothing it computes is stored."""
    ctx = _ctx()
    if len(request.query_string) > MAX_PREVIEW_QUERY_BYTES:
        return jsonify({"error": "too many or too long topics", "papers": []}), 400
    if not ctx.throttle.reserve((PREVIEWS_PER_CLIENT, _client())):
        return jsonify({"error": "too many previews; wait a minute", "papers": []}), 429
    try:
        topics = normalize_topics(topic_lines(request.args.get("topics", "")))
    except InvalidInput as exc:
        return jsonify({"error": str(exc), "papers": []}), 400
    now = utcnow()
    visitor = SubscriberRecord(0, "", "active", topics, "UTC", 0, PREVIEW_PAPERS, now, None)
    plan = rank_today(ctx.store, ctx.settings, [visitor], now, remember=False, fresh=True)
    papers = [
        (plan.papers[pick["arxiv_id"]], pick["reason"])
        for pick in plan.picks[0]
        if pick.get("topic")
    ]
    return jsonify(
        {
            "papers": [
                {"title": paper.title, "url": paper.hf_url or paper.abs_url, "reason": reason}
                for paper, reason in papers
            ]
        }
    )


@pages.get("/healthz")
def healthz() -> Response:
    _ctx().store.papers.count()
    return Response("ok\n", mimetype="text/plain")


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
            sub.email, "paused", allowed_from=("active", "paused")
        ), {}
    if action == "resume":
        return ctx.store.subscribers.set_status(
            sub.email, "active", allowed_from=("paused", "active")
        ), {}
    values, errors = _validated(
        topics=lambda: list(_known_topics(ctx, form.get("topics", ""))),
        timezone=lambda: validate_timezone(form.get("timezone", "UTC")),
        send_hour=lambda: validate_send_hour(form.get("send_hour", "")),
        max_papers=lambda: validate_max_papers(form.get("max_papers", "")),
    )
    if errors:
        return sub, errors
    show_trending = form.get("show_trending") == "on"
    return ctx.store.subscribers.update(sub.email, **values, show_trending=show_trending), {}


def _suggestions(ctx: WebContext) -> list[str]:
    settings = ctx.settings
    return suggested_topics(
        settings.suggestion_list, ctx.store.topics.counts(), settings.suggest_min_followers
    )


def _send_account_email(ctx: WebContext, sub: SubscriberRecord, message: Message) -> bool:
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


def _register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        log.info("CSRF check failed: %s", exc.description)
        return _notice(
            "Please try again",
            "The form expired or was sent from another page. Reload it and submit again.",
            400,
        )

    @app.errorhandler(404)
    def _not_found(exc: Exception) -> tuple[str, int]:
        return _notice(
            "Page not found",
            "There is nothing at this address.",
            404,
            link=("/", "Go to the subscribe page"),
        )

    @app.errorhandler(413)
    def _too_large(exc: Exception) -> tuple[str, int]:
        return _notice("Too much data", "That form was larger than we accept.", 413)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception) -> tuple[str, int]:
        log.error("database unavailable: %s", exc)
        return _notice(
            "Temporarily unavailable",
            "We cannot reach our database right now. Nothing was changed; "
            "please try again in a few minutes.",
            503,
        )

    @app.errorhandler(StorageError)
    def _storage(exc: Exception) -> tuple[str, int]:
        return _notice("That did not work", str(exc), 400)

    @app.errorhandler(500)
    def _server_error(exc: Exception) -> tuple[str, int]:
        return _notice(
            "Something went wrong", "An error occurred on our side and has been logged.", 500
        )


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """The time zone suggestions; listing the tz database costs milliseconds, so once."""
    return tuple(sorted(zoneinfo.available_timezones()))
