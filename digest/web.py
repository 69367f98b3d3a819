"""The subscriber-facing web app (Flask): subscribe with double opt-in, one-click unsubscribe
(RFC 8058), and a preferences page. A thin shell over storage, tokens, rendering and delivery.

Routes
  GET  /                       subscribe form
  POST /subscribe              always the same answer, whether or not the address exists
  GET  /confirm/<token>        activates a pending subscription
  GET  /unsubscribe/<token>    a confirmation page with one button (link scanners only GET)
  POST /unsubscribe/<token>    unsubscribes at once; mail providers POST
                               "List-Unsubscribe=One-Click" here and get a plain 200
  GET  /preferences/<token>    topics, hour, time zone, digest size, pause, unsubscribe
  POST /preferences/<token>
  GET  /preview?topics=...     JSON: today's papers the typed topics would get (the form shows it live)
  GET  /healthz                database reachable?

The signed token is the credential on /confirm, /unsubscribe and /preferences; every form
also carries a CSRF token (Flask-WTF), except the unsubscribe POST, which mail providers
must be able to make without one (the token in the URL authorises it).
"""

from __future__ import annotations

import logging
import zoneinfo
from functools import lru_cache
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, jsonify, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import FileSystemLoader
from sqlalchemy.exc import OperationalError

from digest.editions import CANDIDATE_WINDOW, subscriber_links
from digest.delivery import PermanentError, TransientError, Transport, make_transport, redis_client
from digest.messages import build_message, message_id, sender_domain, wire_address
from digest.models import utcnow
from digest.ranking import rank_profiles
from digest.semantic import ranking_mode
from digest.rendering import (
    TEMPLATES_DIR,
    AlreadySubscribedContent,
    ConfirmationContent,
    RenderedEmail,
    render_already_subscribed,
    render_confirmation,
)
from digest.settings import Settings
from digest.storage import Store, StorageError, SubscriberDefaults, SubscriberRecord
from digest.subscriptions import (
    MAX_PAPERS_LIMIT,
    MAX_TOPICS,
    InvalidInput,
    build_subscriber_input,
    normalize_topics,
    validate_max_papers,
    validate_send_hour,
    validate_timezone,
)
from digest.tokens import TokenData, TokenError, Tokens

log = logging.getLogger(__name__)

POPULAR_TOPICS = ("large language models", "reinforcement learning", "diffusion models", "computer vision",
                  "graph neural networks", "efficient attention", "robotics", "speech recognition")
MAX_FORM_BYTES = 16 * 1024
PER_ADDRESS_PER_DAY = 3  # confirmation emails to one address
PER_IP_PER_HOUR = 20  # sign-up attempts from one client
PREVIEWS_PER_MINUTE = 30  # live previews from one client (each ranks the day's papers)
PREVIEW_PAPERS = 5
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # links carry tokens: never leak them to other sites
    "Permissions-Policy": "interest-cohort=()",
}


class Throttle:
    """Fixed-window counters in Redis. If Redis is down it lets requests through and logs
    it: a sign-up page that fails closed would turn a cache outage into lost subscribers."""

    def __init__(self, client: redis.Redis | None) -> None:
        self.client = client

    def allow(self, key: str, limit: int, window_seconds: int) -> bool:
        if self.client is None:
            return True
        try:
            pipe = self.client.pipeline()
            pipe.incr(f"digest:throttle:{key}")
            pipe.expire(f"digest:throttle:{key}", window_seconds, nx=True)
            count = pipe.execute()[0]
        except redis.RedisError as exc:
            log.warning("throttle unavailable (%s); allowing %s", exc, key)
            return True
        return int(count) <= limit


@dataclass
class WebContext:
    settings: Settings
    store: Store
    tokens: Tokens
    throttle: Throttle
    transport_factory: Any

    @property
    def defaults(self) -> SubscriberDefaults:
        return SubscriberDefaults(send_hour=self.settings.send_hour, max_papers=self.settings.max_papers)


def create_app(settings: Settings, store: Store | None = None, redis_conn: redis.Redis | None = None,
               transport_factory: Any = None) -> Flask:
    """Build the app; tests pass their own store, Redis and transport."""
    app = Flask(__name__, static_folder=str(TEMPLATES_DIR / "static"), static_url_path="/static")
    app.jinja_loader = FileSystemLoader(str(TEMPLATES_DIR))
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=MAX_FORM_BYTES, WTF_CSRF_TIME_LIMIT=None,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=settings.base_url.startswith("https"))
    if settings.uses_dev_secret:
        log.warning("DIGEST_SECRET_KEY is not set: links and forms are signed with a development key")
    csrf = CSRFProtect(app)
    ctx = WebContext(
        settings=settings,
        store=store or Store.from_url(settings.resolved_database_url),
        tokens=Tokens(settings.secret_key, settings.pending_expiry_days),
        throttle=Throttle(redis_conn if redis_conn is not None else redis_client(settings)),
        transport_factory=transport_factory or (lambda: make_transport(settings)),
    )
    app.extensions["digest"] = ctx
    _register_routes(app, ctx, csrf)
    _register_errors(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith(("/confirm", "/unsubscribe", "/preferences")):
            response.headers["Cache-Control"] = "no-store"
        return response

    return app


def _page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(f"web/{template}", timezones=timezone_names(), **context), status


def _notice(title: str, message: str, status: int = 200, link: tuple[str, str] | None = None) -> tuple[str, int]:
    return _page("notice.html", status, title=title, message=message, link=link)


def _subscriber_for(ctx: WebContext, purpose: str, token: str) -> SubscriberRecord:
    """The subscriber a link belongs to, or a TokenError with a message fit to show."""
    data: TokenData = ctx.tokens.read(purpose, token)
    sub = ctx.store.get_subscriber_by_id(data.subscriber_id)
    if sub is None or not data.belongs_to(sub.email):
        raise TokenError("this link no longer matches a subscription")
    return sub


def topic_lines(raw: str) -> list[str]:
    """The topics field: one per line, commas also accepted; blank lines ignored."""
    return [t for t in raw.replace(",", "\n").splitlines() if t.strip()]


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def _register_routes(app: Flask, ctx: WebContext, csrf: CSRFProtect) -> None:
    @app.get("/")
    def subscribe_form() -> tuple[str, int]:
        return _page("subscribe.html", suggestions=_suggestions(ctx), form={}, errors=[], max_topics=MAX_TOPICS,
                     default_hour=ctx.settings.send_hour)

    @app.post("/subscribe")
    def subscribe() -> tuple[str, int]:
        form = request.form
        raw_topics = topic_lines(form.get("topics", ""))
        try:
            data = build_subscriber_input(form.get("email", ""), raw_topics, form.get("timezone") or None,
                                          form.get("send_hour") or None)
        except InvalidInput as exc:
            return _page("subscribe.html", 400, suggestions=_suggestions(ctx), form=form, errors=[str(exc)],
                         max_topics=MAX_TOPICS, default_hour=ctx.settings.send_hour)
        if not ctx.throttle.allow(f"ip:{_client_ip()}", PER_IP_PER_HOUR, 3600):
            return _notice("Too many requests", "Too many sign-ups from your network. Please try again in an hour.", 429)
        sub, needs_confirmation = ctx.store.request_subscription(data, ctx.defaults)
        if ctx.throttle.allow(f"email:{sub.email}", PER_ADDRESS_PER_DAY, 86400):
            # An active or paused subscriber who forgot is sent a way to their preferences instead
            # (nothing changes): from the page alone, nobody can tell which of the two was sent.
            email = confirmation_email(ctx, sub) if needs_confirmation else already_subscribed_email(ctx, sub)
            if not _send_account_email(ctx, sub, email):
                return _notice("Please try again later",
                               "We could not send the email just now. Nothing was lost: "
                               "submit the form again in a few minutes.", 503)
        # The same answer whether the address is new, pending or already subscribed.
        return _notice("Check your inbox",
                       f"If {data.email} can receive our emails, a message is on its way. Open the link in it "
                       f"within {ctx.settings.pending_expiry_days} days to start your daily digest.")

    @app.get("/confirm/<token>")
    def confirm(token: str) -> tuple[str, int]:
        try:
            sub = _subscriber_for(ctx, "confirm", token)
        except TokenError as exc:
            return _notice("This link does not work", f"Sorry, {exc}. You can subscribe again to get a new one.", 400,
                           link=(url_for("subscribe_form"), "Subscribe again"))
        if sub.status in ("unsubscribed", "bounced"):
            return _notice("This link does not work", "This subscription was cancelled after the link was sent. "
                           "Subscribe again to get a new link.", 400, link=(url_for("subscribe_form"), "Subscribe again"))
        if sub.status == "pending":
            sub = ctx.store.set_status(sub.email, "active", allowed_from=("pending",))
        prefs = ctx.tokens.make("preferences", sub.id, sub.email)
        return _notice("You are subscribed", f"Your first digest on {', '.join(sub.topics)} arrives at "
                       f"{sub.send_hour:02d}:00 ({sub.timezone}).",
                       link=(url_for("preferences", token=prefs), "Manage preferences"))

    @app.get("/unsubscribe/<token>")
    def unsubscribe_page(token: str) -> tuple[str, int]:
        try:
            sub = _subscriber_for(ctx, "unsubscribe", token)
        except TokenError as exc:
            return _notice("This link does not work", f"Sorry, {exc}.", 400)
        return _page("unsubscribe.html", email=sub.email, done=sub.status == "unsubscribed")

    @app.post("/unsubscribe/<token>")
    @csrf.exempt  # RFC 8058: mail providers POST without our cookies; the signed token authorises it
    def unsubscribe(token: str) -> tuple[str, int] | Response:
        one_click = request.form.get("List-Unsubscribe") == "One-Click" and "from_page" not in request.form
        try:
            sub = _subscriber_for(ctx, "unsubscribe", token)
        except TokenError as exc:
            if one_click:
                return Response(f"invalid link: {exc}\n", 400, mimetype="text/plain")
            return _notice("This link does not work", f"Sorry, {exc}.", 400)
        if sub.status != "unsubscribed":
            ctx.store.set_status(sub.email, "unsubscribed")
            log.info("unsubscribed subscriber %d (%s)", sub.id, "one-click" if one_click else "page")
        if one_click:
            return Response("unsubscribed\n", 200, mimetype="text/plain")
        return _page("unsubscribe.html", email=sub.email, done=True)

    @app.route("/preferences/<token>", methods=["GET", "POST"])
    def preferences(token: str) -> tuple[str, int]:
        try:
            sub = _subscriber_for(ctx, "preferences", token)
        except TokenError as exc:
            return _notice("This link does not work", f"Sorry, {exc}.", 400)
        errors: list[str] = []
        saved = False
        if request.method == "POST":
            try:
                sub = _apply_preferences(ctx, sub, request.form)
                saved = True
            except InvalidInput as exc:
                errors.append(str(exc))
        unsubscribe_token = ctx.tokens.make("unsubscribe", sub.id, sub.email)
        return _page("preferences.html", 400 if errors else 200, sub=sub, errors=errors, saved=saved,
                     max_topics=MAX_TOPICS, max_papers_limit=MAX_PAPERS_LIMIT,
                     unsubscribe_url=url_for("unsubscribe_page", token=unsubscribe_token))

    @app.get("/preview")
    def preview() -> tuple[Response, int] | Response:
        raw_topics = topic_lines(request.args.get("topics", ""))
        try:
            topics = normalize_topics(raw_topics)
        except InvalidInput as exc:
            return jsonify({"error": str(exc), "papers": []}), 400
        if not ctx.throttle.allow(f"preview:{_client_ip()}", PREVIEWS_PER_MINUTE, 60):
            return jsonify({"error": "too many previews; wait a minute", "papers": []}), 429
        papers = ctx.store.list_papers(since=utcnow() - CANDIDATE_WINDOW)
        encoder, threshold = ranking_mode(ctx.settings, ctx.store)
        picks = rank_profiles(papers, {"you": list(topics)}, PREVIEW_PAPERS, threshold, encoder)["you"] if papers else []
        by_id = {p.arxiv_id: p for p in papers}
        return jsonify({"papers": [{"title": by_id[p.arxiv_id].title, "url": by_id[p.arxiv_id].hf_url
                                    or by_id[p.arxiv_id].abs_url, "reason": p.reason} for p in picks]})

    @app.get("/healthz")
    def healthz() -> Response:
        ctx.store.count_papers()
        return Response("ok\n", mimetype="text/plain")


def _apply_preferences(ctx: WebContext, sub: SubscriberRecord, form: Any) -> SubscriberRecord:
    action = form.get("action", "save")
    if action == "pause":
        return ctx.store.set_status(sub.email, "paused", allowed_from=("active", "paused"))
    if action == "resume":
        return ctx.store.set_status(sub.email, "active", allowed_from=("paused", "active"))
    topics = topic_lines(form.get("topics", ""))
    data = build_subscriber_input(sub.email, topics)
    return ctx.store.update_subscriber(
        sub.email, topics=list(data.topics), timezone=validate_timezone(form.get("timezone", "UTC")),
        send_hour=validate_send_hour(form.get("send_hour", "")), max_papers=validate_max_papers(form.get("max_papers", "")),
    )


def _suggestions(ctx: WebContext) -> list[str]:
    popular = [name for name, _ in ctx.store.topic_counts()[:12]]
    return list(dict.fromkeys([*popular, *POPULAR_TOPICS]))


def confirmation_email(ctx: WebContext, sub: SubscriberRecord) -> RenderedEmail:
    settings = ctx.settings
    token = ctx.tokens.make("confirm", sub.id, sub.email)
    return render_confirmation(ConfirmationContent(sub.email, sub.topics, f"{settings.base_url}/confirm/{token}",
                                                   settings.pending_expiry_days))


def already_subscribed_email(ctx: WebContext, sub: SubscriberRecord) -> RenderedEmail:
    preferences_url, _ = subscriber_links(sub, ctx.tokens, ctx.settings.base_url)
    return render_already_subscribed(AlreadySubscribedContent(sub.email, sub.topics, preferences_url,
                                                              sub.status == "paused"))


def _send_account_email(ctx: WebContext, sub: SubscriberRecord, email: RenderedEmail) -> bool:
    """Sends a sign-up email at once (the visitor is waiting for it); False if SMTP failed."""
    settings = ctx.settings
    now = utcnow()
    message = build_message(email, sender=settings.sender, recipient=sub.email,
                            msg_id=message_id(sub.id, now.date(), f"account:{now.timestamp()}", sender_domain(settings.sender)),
                            date=now)
    transport: Transport = ctx.transport_factory()
    try:
        transport.send(message, settings.sender, wire_address(sub.email))
    except (TransientError, PermanentError) as exc:
        log.error("%r email to subscriber %d failed: %s", email.subject, sub.id, exc)
        return False
    finally:
        transport.close()
    return True


def _register_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        return _notice("Please try again", "The form expired or was sent from another page. Reload it and submit again.", 400)

    @app.errorhandler(404)
    def _not_found(exc: Exception) -> tuple[str, int]:
        return _notice("Page not found", "There is nothing at this address.", 404, link=("/", "Go to the subscribe page"))

    @app.errorhandler(413)
    def _too_large(exc: Exception) -> tuple[str, int]:
        return _notice("Too much data", "That form was larger than we accept.", 413)

    @app.errorhandler(OperationalError)
    def _database_down(exc: Exception) -> tuple[str, int]:
        log.error("database unavailable: %s", exc)
        return _notice("Temporarily unavailable", "We cannot reach our database right now. Nothing was changed; "
                       "please try again in a few minutes.", 503)

    @app.errorhandler(StorageError)
    def _storage(exc: Exception) -> tuple[str, int]:
        return _notice("That did not work", str(exc), 400)

    @app.errorhandler(500)
    def _server_error(exc: Exception) -> tuple[str, int]:
        return _notice("Something went wrong", "An error occurred on our side and has been logged.", 500)


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """The time zone suggestions; listing the tz database costs milliseconds, so once."""
    return tuple(sorted(zoneinfo.available_timezones()))
