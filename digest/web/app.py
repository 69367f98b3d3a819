"""Building the app: its configuration, the context every page reads, the security headers
on every answer, and the error pages. The routes live in the page modules this imports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, Response, request
from flask_wtf.csrf import CSRFError
from jinja2 import FileSystemLoader
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.middleware.proxy_fix import ProxyFix

from digest.fetching import Fetcher
from digest.limits import RateLimiter, Throttle, redis_client
from digest.rendering import TEMPLATES_DIR, about
from digest.settings import Settings, SettingsError
from digest.storage import Storage, StorageError
from digest.transports import make_transport
from digest.web import account, reading, signup  # noqa: F401  (their routes join `pages`)
from digest.web.context import WebContext, csrf, notice, pages, web_context

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024
# a request thread waits for arXiv at most this long, and for its turn (arXiv asks for 3 s
# between requests, shared by every visitor of this process) at most this long
LOOKUP_TIMEOUT = 4.0
LOOKUP_QUEUE = 6.0
ACCOUNT_MAIL_TIMEOUT = 10.0  # seconds a sign-up waits on SMTP, whatever DIGEST_SMTP_*TIMEOUT say
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


def create_app(
    settings: Settings,
    store: Storage | None = None,
    redis_conn: redis.Redis | None = None,
    transport_factory: Callable[[], Any] | None = None,
) -> Flask:
    """Build the app; tests pass their own store, Redis and transport."""
    refuse_insecure_production(settings)
    app = Flask(
        "digest.web", static_folder=str(TEMPLATES_DIR / "static"), static_url_path="/static"
    )
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
    app.extensions["digest"] = _context(settings, store, redis_conn, transport_factory)
    csrf.init_app(app)
    app.register_blueprint(pages)
    if settings.metrics:
        from digest.metrics import metrics

        app.register_blueprint(metrics)
    _register_errors(app)
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.after_request(_security_headers(https))
    return app


def _context(
    settings: Settings,
    store: Storage | None,
    redis_conn: redis.Redis | None,
    transport_factory: Callable[[], Any] | None,
) -> WebContext:
    """The app's context: the given store, Redis and transport, or the settings' own.
    Account mail waits on SMTP less than the digests do: a visitor is watching."""
    client = redis_conn if redis_conn is not None else redis_client(settings)
    account_settings = settings.model_copy(
        update={
            "smtp_timeout": min(settings.smtp_timeout, ACCOUNT_MAIL_TIMEOUT),
            "smtp_data_timeout": min(settings.smtp_data_timeout, ACCOUNT_MAIL_TIMEOUT),
        }
    )
    return WebContext(
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


def _security_headers(https: bool) -> Callable[[Response], Response]:
    """The headers every answer carries; pages reached by a token are never cached."""

    def add(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if https:
            response.headers["Strict-Transport-Security"] = HSTS
        if request.path.startswith(PRIVATE_PAGES):
            response.headers["Cache-Control"] = "no-store"
        return response

    return add


def refuse_insecure_production(settings: Settings) -> None:
    """A public (https) site signed with the published development key would let anyone
    forge unsubscribe and preferences links: refuse to serve it at all."""
    if settings.uses_dev_secret and settings.base_url.startswith("https://"):
        raise SettingsError(
            f"DIGEST_SECRET_KEY is not set, and DIGEST_BASE_URL ({settings.base_url}) is public: anyone could forge "
            "links with the development key. Set DIGEST_SECRET_KEY, e.g. to the output of "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


@pages.get("/healthz")
def healthz() -> Response:
    """For a load balancer: the answer needs the database."""
    web_context().store.papers.count()
    return Response("ok\n", mimetype="text/plain")


def _register_errors(app: Flask) -> None:
    """Every error a visitor can meet, as a page in plain words; nothing internal shown."""

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[str, int]:
        log.info("CSRF check failed: %s", exc.description)
        return notice(
            "Please try again",
            "The form expired or was sent from another page. Reload it and submit again.",
            400,
        )

    @app.errorhandler(404)
    def _not_found(exc: Exception) -> tuple[str, int]:
        return notice(
            "Page not found",
            "There is nothing at this address.",
            404,
            link=("/", "Go to the subscribe page"),
        )

    @app.errorhandler(413)
    def _too_large(exc: Exception) -> tuple[str, int]:
        return notice("Too much data", "That form was larger than we accept.", 413)

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def _database_down(exc: Exception) -> tuple[str, int]:
        log.error("database unavailable: %s", exc)
        return notice(
            "Temporarily unavailable",
            "We cannot reach our database right now. Nothing was changed; "
            "please try again in a few minutes.",
            503,
        )

    @app.errorhandler(StorageError)
    def _storage(exc: Exception) -> tuple[str, int]:
        return notice("That did not work", str(exc), 400)

    @app.errorhandler(500)
    def _server_error(exc: Exception) -> tuple[str, int]:
        return notice(
            "Something went wrong", "An error occurred on our side and has been logged.", 500
        )
