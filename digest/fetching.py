"""HTTP GET for the sources: timeouts, retries with backoff, conditional GET, per-host pacing.

feedparser has no timeout of its own and a hung ``parse(url)`` hangs the daily job, so we
fetch bytes here with httpx and hand them to the parsers.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "PaperDigest/0.1 (+https://github.com/paper-digest; daily digest of research papers)"
# arXiv asks for at most one request every 3 seconds.
DEFAULT_HOST_INTERVALS = {"export.arxiv.org": 3.0, "rss.arxiv.org": 3.0}


class FetchError(Exception):
    """The source could not be reached or kept failing; the message says how."""


@dataclass
class FetchResult:
    url: str
    status: int
    body: bytes
    etag: str | None = None
    last_modified: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds, from either form the header may take (delta or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def is_name_resolution_failure(exc: BaseException) -> bool:
    """A DNS failure means "offline" or a wrong host: retrying within seconds cannot help."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Fetcher:
    """One HTTP client for a fetch run; remembers when it last hit each host."""

    def __init__(
        self,
        timeout: float = 20.0,
        retries: int = 3,
        backoff: float = 2.0,
        max_wait: float = 60.0,
        host_intervals: dict[str, float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_queue: float | None = None,
    ) -> None:
        self.retries = retries
        self.max_queue = max_queue
        self.backoff = backoff
        self.max_wait = max_wait
        self.host_intervals = DEFAULT_HOST_INTERVALS if host_intervals is None else host_intervals
        self._sleep = sleep
        self._last_request: dict[str, float] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            follow_redirects=True,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pace(self, url: str) -> None:
        """Waits for this request's turn at its host. Callers in parallel each reserve the
        next turn and wait outside the lock; with ``max_queue`` (the web's look-ups) one
        whose turn is further off is refused at once rather than holding its thread."""
        host = urlsplit(url).hostname or ""
        interval = self.host_intervals.get(host, 0.0)
        with self._lock:
            now = time.monotonic()
            turn = max(now, self._last_request.get(host, -interval) + interval)
            if self.max_queue is not None and turn - now > self.max_queue:
                raise FetchError(
                    f"{host} is busy: our requests to it are queued {turn - now:.0f} s ahead"
                )
            self._last_request[host] = turn
        if turn > now:
            self._sleep(turn - now)

    def get(
        self, url: str, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResult:
        """GET with retries on network errors, 429 and 5xx; returns any other status as is."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        problem = ""
        for attempt in range(1, self.retries + 2):
            self._pace(url)
            try:
                response = self._client.get(url, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if is_name_resolution_failure(exc):
                    raise FetchError(f"cannot resolve {urlsplit(url).hostname}: {exc}") from None
                wait = self.backoff * 2 ** (attempt - 1)
            else:
                if response.status_code not in RETRY_STATUSES:
                    return FetchResult(
                        url=url,
                        status=response.status_code,
                        body=response.content,
                        etag=response.headers.get("ETag"),
                        last_modified=response.headers.get("Last-Modified"),
                    )
                problem = f"HTTP {response.status_code}"
                hinted = retry_after_seconds(response.headers.get("Retry-After"))
                wait = hinted if hinted is not None else self.backoff * 2 ** (attempt - 1)
            if attempt > self.retries:
                break
            if wait > self.max_wait:
                raise FetchError(
                    f"{problem}; server asks to wait {wait:.0f}s, more than {self.max_wait:.0f}s"
                )
            log.info(
                "GET %s failed (%s); retry %d/%d in %.1fs",
                url,
                problem,
                attempt,
                self.retries,
                wait,
            )
            self._sleep(wait)
        raise FetchError(f"{problem} after {self.retries + 1} attempts")
