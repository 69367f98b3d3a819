"""One typed settings object, read from ``DIGEST_*`` environment variables (and ``.env``).

Every process (CLI, Celery worker, web app) calls :func:`load_settings` once at start and
passes the result down; no other module reads the environment. A bad value stops the
process with a message that names the variable, instead of failing later mid-run.
"""

from __future__ import annotations

import datetime as dt
import os
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from digest.records import SubscriberDefaults
from digest.tokens import Tokens

ENV_PREFIX = "DIGEST_"
ANNOUNCE_TYPES = frozenset({"new", "cross", "replace", "replace-cross"})
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
MIN_SECRET_BYTES = 32
THIS_MACHINE = frozenset({"localhost", "127.0.0.1", "::1"})
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


def default_data_dir() -> Path:
    """Where the embedded defaults keep their state when DIGEST_DATA_DIR is not set: the
    user's data folder (XDG), the same whichever folder a command runs from."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "paper-digest"


def _dates(value: str) -> frozenset[dt.date]:
    """ISO dates separated by commas; a bad one is a ValueError naming it."""
    days = set()
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            days.add(dt.date.fromisoformat(part))
        except ValueError:
            raise ValueError(f"{part!r} is not a date like 2026-12-25") from None
    return frozenset(days)


class SettingsError(Exception):
    """Raised when the environment holds an invalid setting; the message names the variable."""


class Settings(BaseSettings):
    """All configuration of Paper Digest. See ``config/example.env`` for each variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(
        default_factory=lambda: default_data_dir(), description="Local state: SQLite file, outbox."
    )
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir.")
    redis_url: str = "redis://127.0.0.1:6379/0"

    smtp_host: str = Field(default="", description="Empty: write .eml files to the outbox.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a connection or a command's reply."
    )
    smtp_data_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds to wait for the reply to a message's data (RFC 5321 4.5.3.2.6).",
    )
    smtp_ca_file: str = Field(
        default="", description="CA bundle to verify the SMTP server with; empty: the system's."
    )
    sender: str = "Paper Digest <digest@localhost>"
    unsubscribe_mailto: str = Field(default="", description="mailto target for List-Unsubscribe.")
    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEV_SECRET_KEY
    trusted_proxies: int = Field(
        default=0, ge=0, le=5, description="Reverse proxies in front of `digest web`."
    )
    trusted_proxy_address: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="The address the nearest proxy connects from ('*': any); only its "
        "X-Forwarded-* headers are believed.",
    )
    web_connection_limit: int = Field(
        default=100, ge=1, description="Connections `digest web` holds open at once."
    )
    web_channel_timeout: int = Field(
        default=20, ge=1, description="Seconds before `digest web` drops an idle connection."
    )
    web_cleanup_interval: int = Field(
        default=5, ge=1, description="Seconds between `digest web`'s checks for idle connections."
    )
    web_max_header_bytes: int = Field(
        default=32 * 1024, ge=4096, description="Largest request head `digest web` reads."
    )
    web_max_body_bytes: int = Field(
        default=1024 * 1024, ge=16 * 1024, description="Largest request body `digest web` reads."
    )
    signup_mails_per_domain_per_hour: int = Field(
        default=100,
        ge=1,
        description="Sign-up emails to one mail domain (gmail.com...) per hour, all senders.",
    )
    signup_answer_seconds: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="The sign-up answer comes no sooner: it must not reveal if an address exists.",
    )
    db_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a database connection."
    )
    web_db_timeout: float = Field(
        default=5.0, gt=0, description="Longest database statement of a web request."
    )

    semantic: bool = Field(default=True, description="Add MiniLM similarity to word matching.")
    relevance_threshold: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description="Min topic score; unset: 0.50 with semantic, 0.30 without.",
    )
    send_hour: int = Field(default=7, ge=0, le=23, description="Default local hour to send.")
    max_papers: int = Field(default=5, ge=1, le=50)
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    batch_size: int = Field(default=200, ge=1, le=5000)
    send_group: int = Field(
        default=20,
        ge=1,
        le=500,
        description="Deliveries claimed, and recorded as sent, per database transaction.",
    )
    max_attempts: int = Field(default=6, ge=1, le=50)
    retry_base_seconds: float = Field(default=60.0, gt=0, description="First retry delay; doubles.")
    claim_lease_seconds: int = Field(
        default=600, ge=1, description="A 'sending' row older is stale."
    )
    enqueue_lease_seconds: int = Field(
        default=900, ge=1, description="Re-enqueue queued rows after."
    )
    tick_seconds: int = Field(default=300, ge=10, description="How often beat runs the daily job.")
    fetch_interval_minutes: int = Field(default=60, ge=1)
    bounce_limit: int = Field(default=3, ge=1, description="Hard bounces before 'bounced'.")
    pending_expiry_days: int = Field(default=7, ge=1)

    run_history_days: int = Field(default=90, ge=1, description="Run receipts kept this long.")
    admin_email: str = Field(default="", description="Alerts go here; empty: no alert mail.")
    alert_after_runs: int = Field(
        default=3, ge=1, description="Alert when a source failed this many runs in a row."
    )
    alert_retries_waiting: int = Field(
        default=100, ge=1, description="`status --check` complains at this many waiting retries."
    )
    metrics: bool = Field(default=True, description="Serve /metrics (Prometheus text format).")
    metrics_token: str = Field(default="", description="Bearer token /metrics asks for, if set.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line, for log collectors."
    )

    hf_api_url: str = "https://huggingface.co/api/daily_papers"
    arxiv_rss_url: str = "https://rss.arxiv.org/rss"
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_api_max_results: int = Field(default=200, ge=1, le=2000)
    arxiv_categories: str = "cs.LG+cs.AI+cs.CL+cs.CV+stat.ML"
    arxiv_announce_types: str = "new,cross"
    suggested_topics: str = Field(
        default=(
            "large language models, reinforcement learning, diffusion models, computer vision, "
            "graph neural networks, efficient attention, robotics, speech recognition"
        ),
        description="The topics the sign-up page suggests, comma-separated.",
    )
    suggest_min_followers: int = Field(
        default=5, ge=1, description="A followed topic is suggested once this many follow it."
    )
    new_paper_days: int = Field(
        default=3, ge=1, le=30, description="A paper is new for this many arXiv announcement days."
    )
    arxiv_holidays: str = Field(
        default="", description="Dates arXiv does not announce (YYYY-MM-DD, comma-separated)."
    )
    http_timeout: float = Field(default=20.0, gt=0)
    offline: bool = Field(default=False, description="Skip live fetching; use stored papers.")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _blank_data_dir_means_the_default(cls, value: object) -> object:
        return default_data_dir() if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Resolved once, at start: a later chdir, or a cron job run from another folder,
        must not quietly open a new, empty database."""
        return value.expanduser().resolve()

    @field_validator("relevance_threshold", mode="before")
    @classmethod
    def _blank_threshold_means_the_modes_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("base_url")
    @classmethod
    def _an_http_address(cls, value: str) -> str:
        """The scheme is written lower-case (``HTTPS://`` is https), so every check that
        reads it, HSTS and Secure cookies included, can compare it as written."""
        parts = urlsplit(value)  # lower-cases the scheme it reports
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) address, like https://digest.example.org"
            )
        return parts.geturl().rstrip("/")

    @field_validator("sender")
    @classmethod
    def _an_address(cls, value: str) -> str:
        _, address = parseaddr(value)
        local, _, domain = address.rpartition("@")
        # the embedded default sends from digest@localhost to the outbox: a local name is fine
        checked = f"{local}@example.org" if domain == "localhost" else address
        try:
            validate_email(checked, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(
                f"{value!r} has no valid address ({exc}); like: Paper Digest <digest@example.org>"
            ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _a_redis_address(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            raise ValueError(f"{value!r} is not a Redis URL, like redis://127.0.0.1:6379/0")
        return value

    @field_validator("arxiv_announce_types")
    @classmethod
    def _known_announce_types(cls, value: str) -> str:
        unknown = {t.strip() for t in value.split(",") if t.strip()} - ANNOUNCE_TYPES
        if unknown:
            raise ValueError(
                f"unknown: {', '.join(sorted(unknown))} (known: {', '.join(sorted(ANNOUNCE_TYPES))})"
            )
        return value

    @field_validator("arxiv_holidays")
    @classmethod
    def _holiday_dates(cls, value: str) -> str:
        _dates(value)
        return value

    @field_validator("secret_key")
    @classmethod
    def _blank_secret_means_dev_key(cls, value: str) -> str:
        return value or DEV_SECRET_KEY

    @model_validator(mode="after")
    def _a_real_secret_key_unless_on_this_machine(self) -> Self:
        """Whoever knows the key can forge every unsubscribe, preferences and confirmation
        link. The published development key, or a short one, is fine only while the links
        lead to this machine (the offline demo); whatever the scheme, another host is public."""
        if urlsplit(self.base_url).hostname in THIS_MACHINE:
            return self
        size = len(self.secret_key.encode("utf-8"))
        if self.uses_dev_secret or size < MIN_SECRET_BYTES:
            problem = "is not set" if self.uses_dev_secret else f"is {size} bytes long"
            raise ValueError(
                f"DIGEST_SECRET_KEY {problem}, and DIGEST_BASE_URL ({self.base_url}) is not this "
                f"machine: anyone could forge links. Set DIGEST_SECRET_KEY to at least "
                f"{MIN_SECRET_BYTES} bytes of random text, e.g. the output of {MAKE_A_KEY}"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file under ``data_dir`` when none is set."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'digest.db').resolve()}"

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def announce_types(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.arxiv_announce_types.split(",") if t.strip())

    @property
    def suggestion_list(self) -> list[str]:
        return [t.strip() for t in self.suggested_topics.split(",") if t.strip()]

    @property
    def holidays(self) -> frozenset[dt.date]:
        return _dates(self.arxiv_holidays)

    @property
    def category_list(self) -> list[str]:
        return [c.strip() for c in self.arxiv_categories.replace(",", "+").split("+") if c.strip()]

    @property
    def uses_dev_secret(self) -> bool:
        return self.secret_key == DEV_SECRET_KEY

    @property
    def tokens(self) -> Tokens:
        """The signer of every link in every email and page."""
        return Tokens(self.secret_key, self.pending_expiry_days)

    @property
    def subscriber_defaults(self) -> SubscriberDefaults:
        return SubscriberDefaults(send_hour=self.send_hour, max_papers=self.max_papers)


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; turn validation errors into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic checks them at run time
    except UnicodeDecodeError as exc:
        raise SettingsError(f".env is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            if err["loc"]
            else str(err["msg"]).removeprefix("Value error, ")  # names its variables itself
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
