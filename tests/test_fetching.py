"""The HTTP fetcher against a real local server: retries, Retry-After, 304, timeouts, pacing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from conftest import run_at_once
from feed_server import FeedServer, Reply

from digest.fetching import Fetcher, FetchError, retry_after_seconds


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer()
    yield srv
    srv.close()


class Sleeps(list):
    """Records the waits instead of sleeping, so retry tests run instantly."""

    def __call__(self, seconds: float) -> None:
        self.append(round(seconds, 2))


def test_plain_get_sends_user_agent_and_returns_validators(server: FeedServer) -> None:
    server.script(
        "/feed",
        Reply(200, b"<rss/>", {"ETag": '"v1"', "Last-Modified": "Mon, 23 Nov 2026 00:00:00 GMT"}),
    )
    with Fetcher(timeout=5) as fetcher:
        result = fetcher.get(server.url + "/feed")
    assert (result.status, result.body, result.etag) == (200, b"<rss/>", '"v1"')
    assert result.last_modified == "Mon, 23 Nov 2026 00:00:00 GMT"
    assert server.requests["/feed"][0]["User-Agent"].startswith("PaperDigest/")


def test_conditional_get_sends_validators_and_understands_304(server: FeedServer) -> None:
    server.script("/feed", Reply(304))
    with Fetcher(timeout=5) as fetcher:
        result = fetcher.get(
            server.url + "/feed", etag='"v1"', last_modified="Mon, 23 Nov 2026 00:00:00 GMT"
        )
    assert result.not_modified
    sent = server.requests["/feed"][0]
    assert sent["If-None-Match"] == '"v1"' and sent["If-Modified-Since"].startswith("Mon, 23 Nov")


def test_429_and_503_are_retried_honouring_retry_after(server: FeedServer) -> None:
    server.script("/feed", Reply(429, headers={"Retry-After": "7"}), Reply(503), Reply(200, b"ok"))
    sleeps = Sleeps()
    with Fetcher(timeout=5, backoff=1.5, sleep=sleeps, host_intervals={}) as fetcher:
        assert fetcher.get(server.url + "/feed").body == b"ok"
    assert sleeps == [7.0, 3.0]  # Retry-After, then exponential backoff (1.5 * 2)
    assert len(server.requests["/feed"]) == 3


def test_persistent_5xx_gives_up_with_the_reason(server: FeedServer) -> None:
    server.script("/feed", Reply(502))
    with Fetcher(timeout=5, retries=2, sleep=Sleeps(), host_intervals={}) as fetcher:
        with pytest.raises(FetchError, match="HTTP 502 after 3 attempts"):
            fetcher.get(server.url + "/feed")


def test_retry_after_longer_than_allowed_fails_fast(server: FeedServer) -> None:
    server.script("/feed", Reply(503, headers={"Retry-After": "3600"}))
    with Fetcher(timeout=5, max_wait=60, sleep=Sleeps(), host_intervals={}) as fetcher:
        with pytest.raises(FetchError, match="wait 3600s"):
            fetcher.get(server.url + "/feed")
    assert len(server.requests["/feed"]) == 1


def test_slow_response_times_out_and_is_retried(server: FeedServer) -> None:
    server.script("/feed", Reply(200, b"late", delay=2.0), Reply(200, b"fast"))
    sleeps = Sleeps()
    with Fetcher(timeout=0.5, sleep=sleeps, host_intervals={}) as fetcher:
        assert fetcher.get(server.url + "/feed").body == b"fast"
    assert len(sleeps) == 1


def test_client_errors_are_returned_not_retried(server: FeedServer) -> None:
    server.script("/feed", Reply(400, b"<feed/>"))
    with Fetcher(timeout=5, sleep=Sleeps(), host_intervals={}) as fetcher:
        assert fetcher.get(server.url + "/feed").status == 400
    assert len(server.requests["/feed"]) == 1


def test_unresolvable_host_fails_at_once() -> None:
    with Fetcher(timeout=5, sleep=Sleeps()) as fetcher:
        with pytest.raises(FetchError, match="cannot resolve"):
            fetcher.get("http://no-such-host.invalid/feed")


def test_requests_to_one_host_are_paced(server: FeedServer) -> None:
    server.script("/feed", Reply(200, b"ok"))
    sleeps = Sleeps()
    with Fetcher(timeout=5, sleep=sleeps, host_intervals={"127.0.0.1": 3.0}) as fetcher:
        fetcher.get(server.url + "/feed")
        fetcher.get(server.url + "/feed")
    assert len(sleeps) == 1 and 2.5 < sleeps[0] <= 3.0


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2026 07:28:00 GMT", now=1792567670.0) == 10.0
    assert retry_after_seconds("soon") is None


def test_parallel_callers_share_the_spacing_and_a_long_queue_fails_fast(
    server: FeedServer,
) -> None:
    """One client per process for web look-ups: parallel requests keep the host's spacing
    between them (arXiv asks for 3 s), none waits while holding the others up, and one
    whose turn is further off than ``max_queue`` is refused at once instead of holding a
    request thread."""
    server.script("/api", Reply(200, b"ok"))

    def ask(_: int) -> float:
        fetcher.get(server.url + "/api")
        return time.monotonic()

    with Fetcher(timeout=5, retries=0, host_intervals={"127.0.0.1": 0.5}, max_queue=1.2) as fetcher:
        started = time.monotonic()
        answered, errors = run_at_once(ask, count=4)
    assert len(answered) == 3 and len(errors) == 1 and isinstance(errors[0], FetchError)
    assert "busy" in str(errors[0])
    times = sorted(answered)
    assert all(later - earlier >= 0.4 for earlier, later in zip(times, times[1:], strict=False))
    assert times[-1] - started < 1.0 + 0.4, "nobody waited longer than their turn"
