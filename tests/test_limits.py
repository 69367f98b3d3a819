"""The shared limits: the web throttle and the send rate, on fakeredis (Redis 6 and 7), on a
real Redis where one runs, and with Redis unreachable."""

from __future__ import annotations

import fakeredis
import pytest
import redis
from conftest import unreachable_redis

from digest import limits
from digest.limits import REDIS_RETRY_AFTER, Limit, RateLimiter, Throttle


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def granted_per_window(limiter: RateLimiter, clock: FakeTime, seconds: float) -> dict[int, int]:
    """Calls wait() until ``seconds`` of fake time have passed; permits granted per window."""
    end, used = clock.now + seconds, {}
    while clock.now < end:
        limiter.wait()
        window = int(clock.now // limiter.window_seconds)
        used[window] = used.get(window, 0) + 1
        clock.now += 0.001  # the send itself
    return used


@pytest.mark.parametrize("per_second, expected", [(0.5, 5), (0.2, 2), (3, 30)])
def test_rates_below_and_above_one_per_second_are_honoured(
    per_second: float, expected: int
) -> None:
    clock = FakeTime()
    limiter = RateLimiter(per_second, fakeredis.FakeRedis(), clock=clock.clock, sleep=clock.sleep)
    used = granted_per_window(limiter, clock, 10)
    assert expected <= sum(used.values()) <= expected + 1


@pytest.mark.parametrize("version", [(6,), (7,)])
def test_the_throttle_works_on_redis_6_and_7(version: tuple[int]) -> None:
    throttle = Throttle(fakeredis.FakeRedis(version=version))
    limit = Limit("t", 3, 60)
    assert [throttle.reserve((limit, "a")) for _ in range(5)] == [True, True, True, False, False]


def test_a_reservation_over_any_limit_counts_against_none() -> None:
    throttle = Throttle(fakeredis.FakeRedis())
    small, large = Limit("small", 1, 60), Limit("large", 5, 60)
    assert throttle.reserve((large, "x"), (small, "x"))
    assert not throttle.reserve((large, "x"), (small, "x"))
    assert [throttle.reserve((large, "x")) for _ in range(5)] == [True, True, True, True, False], (
        "the refused reservation gave back what it had taken"
    )


def test_a_released_reservation_can_be_used_again() -> None:
    throttle = Throttle(fakeredis.FakeRedis())
    limit = Limit("t", 1, 60)
    assert throttle.reserve((limit, "a"))
    throttle.release((limit, "a"))
    assert throttle.reserve((limit, "a")) and not throttle.reserve((limit, "a"))


def test_windows_start_afresh() -> None:
    clock = FakeTime()
    throttle = Throttle(fakeredis.FakeRedis(), clock=clock.clock)
    limit = Limit("t", 1, 60)
    assert throttle.reserve((limit, "a")) and not throttle.reserve((limit, "a"))
    clock.now += 60
    assert throttle.reserve((limit, "a"))


def test_the_throttle_counts_in_process_when_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = Throttle(unreachable_redis())
    limit = Limit("t", 2, 60)
    assert [throttle.reserve((limit, "a")) for _ in range(4)] == [True, True, False, False]
    assert "counting sign-ups in this process alone" in caplog.text
    assert caplog.text.count("Redis unavailable") == 1, "Redis is not asked again at every call"


def test_redis_is_tried_again_after_a_while() -> None:
    clock, server = FakeTime(), fakeredis.FakeRedis()
    throttle = Throttle(unreachable_redis(), clock=clock.clock)
    limit = Limit("t", 100, 3600)
    throttle.reserve((limit, "a"))
    throttle.counters.client = server  # Redis is back
    throttle.reserve((limit, "a"))
    assert server.keys("digest:throttle:*") == [], "still counting locally"
    clock.now += REDIS_RETRY_AFTER
    throttle.reserve((limit, "a"))
    assert len(server.keys("digest:throttle:*")) == 1


def test_the_throttle_on_a_real_redis(redis_url: str) -> None:
    import uuid

    throttle = Throttle(redis.Redis.from_url(redis_url))
    limit = Limit(f"test-{uuid.uuid4().hex}", 2, 5)
    assert [throttle.reserve((limit, "a")) for _ in range(3)] == [True, True, False]


def test_a_redis_outage_does_not_give_an_address_its_quota_again(redis_url: str) -> None:
    """3 mails counted in Redis, then Redis goes away: the process counting alone cannot
    know of them, so it allows one mail, not a fresh three."""
    import uuid

    limit = Limit(f"test-{uuid.uuid4().hex}", 3, 86400, without_redis=1)
    shared = Throttle(redis.Redis.from_url(redis_url))
    assert [shared.reserve((limit, "ada@example.org")) for _ in range(4)] == [True] * 3 + [False]
    alone = Throttle(unreachable_redis())
    assert [alone.reserve((limit, "ada@example.org")) for _ in range(3)] == [True, False, False]
    assert alone.reserve((limit, "bob@example.org")), "an address not mailed yet still gets one"


class MustWait(Exception):
    """Raised instead of sleeping: the worker has no permit left in this window."""


def test_workers_sharing_a_limit_never_exceed_it_together() -> None:
    """Three workers reserving permits in chunks of 10 under a limit that is no multiple of 10:
    in each window, every worker takes permits until it is told to wait."""
    now = [1_000_000.0]

    def wait_instead_of_sleeping(_seconds: float) -> None:
        raise MustWait

    server = fakeredis.FakeRedis()
    workers = [
        RateLimiter(105, server, clock=lambda: now[0], sleep=wait_instead_of_sleeping)
        for _ in range(3)
    ]
    for _ in range(3):
        sent, waiting = 0, set()
        while len(waiting) < len(workers):
            for n, limiter in enumerate(workers):
                if n in waiting:
                    continue
                try:
                    limiter.wait()
                    sent += 1
                except MustWait:
                    waiting.add(n)
        assert sent == 105, "the whole allowance is granted, and never one permit more"
        now[0] += 1


def test_without_redis_a_worker_paces_itself(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeTime()
    limiter = RateLimiter(50, unreachable_redis(), clock=clock.clock, sleep=clock.sleep)
    used = granted_per_window(limiter, clock, 3)
    assert max(used.values()) == 50 and sum(used.values()) >= 140, "the rate, no more, and no stop"
    assert "pacing this worker alone" in caplog.text


def test_a_full_window_sleeps_exactly_until_the_next_one() -> None:
    clock = FakeTime(start=1_000_000.25)
    limiter = RateLimiter(0.5, fakeredis.FakeRedis(), clock=clock.clock, sleep=clock.sleep)
    assert limiter.window_seconds == 2.0 and limiter.per_window == 1
    limiter.wait()  # the window [1_000_000, 1_000_002) grants its one permit
    limiter.wait()
    assert clock.slept == [pytest.approx(1.75)], "to the next window's start, not a fixed nap"


def test_window_counters_in_redis_expire_with_their_window() -> None:
    """A window's key must go away (SET NX EX), or Redis fills with dead counters."""
    client = fakeredis.FakeRedis()
    throttle = Throttle(client, clock=lambda: 3600.0 * 10)
    assert throttle.reserve((Limit("address", 3, 3600), "ada@example.org"))
    (key,) = client.keys("digest:throttle:*")
    assert 3590 < client.ttl(key) <= 3600
    limiter = RateLimiter(10, client, clock=lambda: 1_000_000.5, sleep=lambda s: None)
    limiter.wait()
    (rate,) = client.keys("digest:rate:*")
    assert client.ttl(rate) == 2, "a one-second window lives one second past its end"


def test_the_in_process_counters_forget_their_oldest_window_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(limits, "LOCAL_KEYS", 3)
    counters = limits.LocalCounters()
    for key in ("a", "b", "c"):
        counters.add(key, 1)
    assert counters.add("c", 1) == 2, "adding to a known window forgets nothing"
    assert counters.add("d", 5) == 5
    assert counters.add("a", 1) == 1, "the oldest window was forgotten to make room"
    assert counters.add("c", 1) == 3


@pytest.mark.parametrize(
    ("per_second", "window", "per_window", "chunk"),
    [(100, 1.0, 100, 10), (5, 1.0, 5, 1), (1000, 1.0, 1000, 20), (0.2, 5.0, 1, 1)],
)
def test_windows_allowances_and_reservations_follow_the_rate(
    per_second: float, window: float, per_window: int, chunk: int
) -> None:
    limiter = RateLimiter(per_second, None)
    assert (limiter.window_seconds, limiter.per_window, limiter.chunk) == (
        window,
        per_window,
        chunk,
    )
