"""`digest doctor`: is this installation fit to send? Each check says what it found and, when
something is wrong, what to do. A thin shell: it talks to the database, Redis and SMTP."""

from __future__ import annotations

import datetime as dt
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis
from sqlalchemy import func, select

from digest import semantic
from digest.limits import redis_client
from digest.models import Delivery, utcnow
from digest.settings import Settings
from digest.storage import Storage, StorageError
from digest.transports import SmtpTransport, TransientError

SECRET_SETTINGS = ("secret_key", "smtp_password")
STALE_FETCH = dt.timedelta(days=2)


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # "ok", "warn" (works, but look), "FAIL" (an operator must fix it)
    detail: str


def masked_settings(settings: Settings) -> dict[str, str]:
    """Every setting in force, secrets and URL passwords replaced by stars."""
    shown = {}
    for name, value in settings.model_dump().items():
        text = str(value)
        if name in SECRET_SETTINGS and text:
            text = "********"
        elif name.endswith("_url") and text:
            text = _without_password(text)
        shown[name] = text
    return shown


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@")
    return urlunsplit(parts._replace(netloc=netloc))


def examine(settings: Settings) -> Iterator[Finding]:
    """Every check, in the order an operator would fix things."""
    checks: list[Callable[[Settings], Finding]] = [
        _data_dir,
        _secret,
        _database,
        _redis,
        _smtp,
        _model,
        _last_runs,
    ]
    for check in checks:
        try:
            yield check(settings)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is itself a finding
            yield Finding(
                check.__name__.strip("_").replace("_", " "), "FAIL", f"{type(exc).__name__}: {exc}"
            )


def _data_dir(settings: Settings) -> Finding:
    folder = settings.data_dir
    if folder.exists() and not folder.is_dir():
        return Finding(
            "data folder", "FAIL", f"{folder} is a file: set DIGEST_DATA_DIR to a folder"
        )
    return Finding("data folder", "ok", f"{folder} (outbox: {settings.outbox_dir})")


def _secret(settings: Settings) -> Finding:
    if not settings.uses_dev_secret:
        return Finding("secret key", "ok", "set")
    level = "FAIL" if settings.base_url.startswith("https://") else "warn"
    return Finding(
        "secret key",
        level,
        "DIGEST_SECRET_KEY is the development key: anyone can forge links; "
        "set it before going public",
    )


def _database(settings: Settings) -> Finding:
    store = Storage.from_url(settings.resolved_database_url, settings.db_connect_timeout)
    try:
        current, head = store.db.schema_revision(), store.db.head_revision()
    except StorageError as exc:
        return Finding("database", "FAIL", str(exc))
    except Exception as exc:  # noqa: BLE001 - any connection failure
        return Finding("database", "FAIL", f"cannot reach {store.db.engine.url!r}: {exc}")
    finally:
        store.db.engine.dispose()
    if current != head and settings.resolved_database_url.startswith("sqlite"):
        detail = f"embedded SQLite at {current or 'empty'}: the next command brings it to {head}"
        return Finding("database", "ok", detail)
    if current != head:
        return Finding(
            "database",
            "FAIL",
            f"schema at {current or 'empty'}, this version needs {head}: run `digest db upgrade`",
        )
    return Finding("database", "ok", f"{store.db.engine.url!r} reachable, schema at {head}")


def _redis(settings: Settings) -> Finding:
    try:
        redis_client(settings).ping()
    except redis.RedisError as exc:
        return Finding(
            "redis",
            "FAIL",
            f"{_without_password(settings.redis_url)}: {exc}; Celery workers and "
            "the shared limits need it (`digest run --now` does not)",
        )
    return Finding("redis", "ok", f"{_without_password(settings.redis_url)} answers")


def _smtp(settings: Settings) -> Finding:
    if not settings.smtp_host:
        return Finding(
            "smtp",
            "warn",
            f"DIGEST_SMTP_HOST is not set: digests go to {settings.outbox_dir}, not to people",
        )
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        smtp = SmtpTransport(settings).connect()  # TLS, certificate checks and login as configured
        code, _ = smtp.ehlo()
        smtp.quit()
    except (TransientError, OSError, smtplib.SMTPException) as exc:
        return Finding("smtp", "FAIL", f"{where} ({settings.smtp_tls}): {exc}")
    login = f", logged in as {settings.smtp_user}" if settings.smtp_user else ""
    return Finding("smtp", "ok", f"{where} answered EHLO ({code}), TLS: {settings.smtp_tls}{login}")


def _model(settings: Settings) -> Finding:
    if not settings.semantic:
        return Finding("ranking model", "ok", "off (DIGEST_SEMANTIC=false): ranking by words alone")
    if reason := semantic.unavailable_reason():
        return Finding("ranking model", "warn", f"{reason}; ranking falls back to words alone")
    return Finding("ranking model", "ok", "all-MiniLM-L6-v2 weights installed")


def _last_runs(settings: Settings) -> Finding:
    store = Storage.from_url(settings.resolved_database_url, settings.db_connect_timeout)
    try:
        # the live feeds' last answer, or a fetch from a file or the sample, whichever is later
        times = [t for t in (store.papers.last_fetched_at(), store.papers.last_stored_at()) if t]
        fetched = max(times, default=None)
        with store.db.session() as session:
            planned = session.scalar(select(func.max(Delivery.created_at)))
    except Exception:  # noqa: BLE001 - the database check has said why
        return Finding("last runs", "warn", "unknown: the database cannot be read")
    finally:
        store.db.engine.dispose()
    detail = (f"last fetch: {fetched:%Y-%m-%d %H:%M} UTC" if fetched else "never fetched") + (
        f"; last tick that planned digests: {planned:%Y-%m-%d %H:%M} UTC"
        if planned
        else "; no digest planned yet"
    )
    stale = fetched is None or utcnow() - fetched > STALE_FETCH
    return Finding(
        "last runs",
        "warn" if stale else "ok",
        detail + ("; is Celery beat running?" if stale else ""),
    )
