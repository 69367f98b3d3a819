"""What every page of the web app shares: the blueprint its routes hang on, the context the
app is built with (settings, store, tokens, limits), and the few ways a page answers (a
page, a notice, "this link does not work"). Kept apart from :mod:`digest.web.app` so the
page modules can import it without importing the app that imports them."""

from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask_wtf.csrf import CSRFProtect

from digest.fetching import Fetcher
from digest.limits import RateLimiter, Throttle
from digest.lists import DEFAULT_LIST
from digest.records import ListRecord, SubscriberDefaults, SubscriberRecord
from digest.settings import Settings
from digest.storage import Storage
from digest.subscriptions import suggested_topics
from digest.tokens import INVALID_LINK, TokenError, Tokens

log = logging.getLogger(__name__)

# purposes whose tokens must name the day's digest they were made for
BOUND_PURPOSES = ("digest",)

pages = Blueprint("pages", __name__)
csrf = CSRFProtect()
View = TypeVar("View", bound=Callable[..., Any])


def csrf_exempt(view: View) -> View:
    """Flask-WTF's ``csrf.exempt``, typed: the library ships no types, and its decorator would
    make every view it wraps untyped to mypy. For the POSTs a signed token authorises."""
    return cast(View, csrf.exempt(view))


@dataclass
class WebContext:
    """Everything a request needs beyond Flask, built once per app: tests build it with
    their own store, Redis and transport."""

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


def web_context() -> WebContext:
    """The context of the app serving the current request."""
    return cast(WebContext, current_app.extensions["digest"])


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    """A page of templates/web/; every page may show the time zone picker."""
    return render_template(f"web/{template}", timezones=timezone_names(), **context), status


def notice(
    title: str,
    message: str,
    status: int = 200,
    link: tuple[str, str] | None = None,
    brand: str | None = None,
) -> tuple[str, int]:
    """A page with one message (and at most one link onward), under the title of the list
    it is about (``brand``), if any."""
    return page("notice.html", status, title=title, message=message, link=link, brand=brand)


def invalid_link(reason: str) -> tuple[str, int]:
    """The one answer to every bad link, whatever was wrong with it: the reason is logged,
    never shown, so a forger learns nothing from the page."""
    log.info("refused a link: %s", reason)
    return notice(
        "This link does not work",
        f"Sorry, {INVALID_LINK}.",
        400,
        link=(url_for("pages.subscribe_form"), "Go to the subscribe page"),
    )


def with_subscriber(
    purpose: str, refused: Callable[[str], Any] = invalid_link
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A view whose URL carries a ``purpose`` token gets the subscriber it names (and the
    token's data); any bad link gets ``refused``: by default the one "this link does not
    work" page, whatever was wrong with it. Tokens that must be bound (to a day's digest)
    are refused without it."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(token: str, **rest: str) -> Any:
            ctx = web_context()
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


def client_address() -> str:
    """The client's address: behind DIGEST_TRUSTED_PROXIES proxies, the one they forwarded."""
    return request.remote_addr or "unknown"


def suggestions(ctx: WebContext, listed: ListRecord) -> list[str]:
    """The topics the forms suggest: the list's own (or the configured ones), and topics
    enough of the list's readers follow (another list's readers may want other things)."""
    settings = ctx.settings
    curated = list(listed.suggested_topics) or settings.suggestion_list
    followed = ctx.store.topics.counts(listed.id or None)  # DEFAULT_LIST's 0: everyone's
    return suggested_topics(curated, followed, settings.suggest_min_followers)


def list_of(ctx: WebContext, sub: SubscriberRecord) -> ListRecord:
    """The list a subscription belongs to (the row cascades away with its list, so it is
    there; the stand-in only covers a list removed mid-request)."""
    return ctx.store.lists.get_by_id(sub.list_id) or DEFAULT_LIST


def public_list(ctx: WebContext, slug: str | None) -> ListRecord:
    """The public list named ``slug`` (None: the default list); anything else, private or
    unknown alike, is the "page not found" page: a private list's name is not told."""
    listed = ctx.store.lists.get(slug) if slug else ctx.store.lists.default()
    if listed is None or not listed.public:
        abort(404)
    return listed


def signup_url(listed: ListRecord) -> str:
    """Where to sign up to ``listed`` again: its page, or the home page for a private one."""
    if listed.public:
        return url_for("pages.list_page", slug=listed.slug)
    return url_for("pages.subscribe_form")


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """The time zone suggestions; listing the tz database costs milliseconds, so once."""
    return tuple(sorted(zoneinfo.available_timezones()))
