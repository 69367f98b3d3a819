"""Limits shared by every process through Redis: the web's abuse throttle and the send rate.

Both count in fixed windows keyed by time. Both keep working when Redis does not answer, by
counting in this process alone (and saying so in the log): a limit that fails open turns a
cache outage into a mail bomb, and one that fails closed turns it into lost sign-ups. A
limit on the mail one address gets allows less while counted alone (:attr:`Limit.without_redis`).

Only commands Redis 6 knows are used (``SET NX EX`` starts a window, ``INCRBY`` counts in it,
both in one MULTI/EXEC), because ``EXPIRE ... NX`` needs Redis 7 and Debian 11 and Ubuntu
22.04 ship Redis 6.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from digest.settings import Settings

log = logging.getLogger(__name__)

LOCAL_KEYS = 100_000  # the in-process fallback forgets its oldest windows beyond this
REDIS_RETRY_AFTER = 30.0  # seconds of counting locally after Redis failed, before trying it again


def redis_client(settings: Settings) -> redis.Redis:
    """A client that fails fast: redis-py's default retries take seconds per call, and a
    limit consulted on every request or message must not stall while Redis is away."""
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )


class LocalCounters:
    """Window counters in this process: the stand-in while Redis is unreachable."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, key: str, amount: int) -> int:
        with self._lock:
            if key not in self._counts and len(self._counts) >= LOCAL_KEYS:
                del self._counts[next(iter(self._counts))]
            self._counts[key] = self._counts.get(key, 0) + amount
            return self._counts[key]


class Count(NamedTuple):
    """A window's total after an addition, and whether every process shares it (Redis)."""

    total: int
    shared: bool


class WindowCounters:
    """Counters that expire with their window, in Redis when it answers, else in this process.

    After a Redis error the process counts alone for :data:`REDIS_RETRY_AFTER` seconds
    instead of paying a failed connection on every call; then it tries Redis again.
    """

    def __init__(
        self, client: redis.Redis | None, clock: Callable[[], float], fallback_note: str
    ) -> None:
        self.client = client
        self.clock = clock
        self.fallback_note = fallback_note
        self.local = LocalCounters()
        self._redis_down_until = 0.0

    def add(self, key: str, amount: int, window_seconds: float) -> Count:
        """Adds ``amount`` to the window's counter and returns the new total."""
        if self.client is not None and self.clock() >= self._redis_down_until:
            try:
                return Count(self._add_in_redis(key, amount, window_seconds), shared=True)
            except redis.RedisError as exc:
                self._redis_down_until = self.clock() + REDIS_RETRY_AFTER
                log.warning(
                    "Redis unavailable (%s); %s for %.0f s",
                    exc,
                    self.fallback_note,
                    REDIS_RETRY_AFTER,
                )
        return Count(self.local.add(key, amount), shared=False)

    def _add_in_redis(self, key: str, amount: int, window_seconds: float) -> int:
        pipe = self.client.pipeline(transaction=True)  # type: ignore[union-attr]  # add() checked it
        pipe.set(key, 0, ex=max(math.ceil(window_seconds), 1), nx=True)
        pipe.incrby(key, amount)
        return int(pipe.execute()[1])


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``seconds`` for one key (a client, an address, a mailbox).

    ``without_redis``: the most this process allows alone while Redis does not answer (None:
    ``count``). Counting alone, a process knows neither what the others sent nor what was
    sent before the outage, so a daily quota of mails to one address would start afresh
    with every outage and in every process. A small allowance bounds that (the quota plus
    the allowance per process and day: the local counts outlive an outage) and still mails
    someone who really signs up meanwhile; refusing all mail would lose their sign-up.
    """

    name: str
    count: int
    seconds: int
    without_redis: int | None = None

    def allows(self, count: Count) -> bool:
        if count.shared or self.without_redis is None:
            return count.total <= self.count
        return count.total <= self.without_redis


class Throttle:
    """Fixed-window counters for the public pages.

    :meth:`reserve` counts an event only if it fits under every limit given; :meth:`release`
    gives a reservation back (a confirmation mail that could not be sent does not count).
    """

    def __init__(self, client: redis.Redis | None, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.counters = WindowCounters(client, clock, "counting sign-ups in this process alone")

    def _key(self, limit: Limit, subject: str) -> str:
        window = int(self.clock() // limit.seconds)
        return f"digest:throttle:{limit.name}:{subject}:{window}"

    def _add(self, key: str, amount: int, seconds: int) -> Count:
        return self.counters.add(key, amount, seconds)

    def reserve(self, *checks: tuple[Limit, str]) -> bool:
        """Counts one event for each (limit, subject); if any is over its limit, none is counted."""
        taken: list[tuple[str, int]] = []
        for limit, subject in checks:
            key = self._key(limit, subject)
            taken.append((key, limit.seconds))
            if not limit.allows(self._add(key, 1, limit.seconds)):
                self._undo(taken)
                return False
        return True

    def release(self, *checks: tuple[Limit, str]) -> None:
        self._undo([(self._key(limit, subject), limit.seconds) for limit, subject in checks])

    def _undo(self, taken: list[tuple[str, int]]) -> None:
        for key, seconds in taken:
            self._add(key, -1, seconds)


class RateLimiter:
    """At most ``per_second`` messages per second across every worker, counted in Redis.

    Time is cut into windows of ``max(1, 1/per_second)`` seconds, each allowing
    ``floor(per_second * window)`` permits, so a rate below one per second is honoured
    (0.2/s: one message per 5-second window). Each worker reserves a few permits per round
    trip (INCRBY), up to a tenth of a window's allowance, and uses only those that fit
    under the limit, so no window ever grants more than its allowance. If Redis is
    unreachable the limiter counts this process alone (and says so) rather than stopping.
    """

    def __init__(
        self,
        per_second: float,
        client: redis.Redis | None,
        key: str = "digest:rate",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = key
        self.clock, self.sleep = clock, sleep
        self.window_seconds = max(1.0, 1.0 / per_second)
        self.per_window = max(1, math.floor(per_second * self.window_seconds + 1e-9))
        self.chunk = max(1, min(20, self.per_window // 10))
        self.counters = WindowCounters(client, clock, "pacing this worker alone")
        self._window = -1
        self._permits = 0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Returns when this process may send one message."""
        while True:
            with self._lock:
                now = self.clock()
                window = int(now // self.window_seconds)
                if window == self._window and self._permits > 0:
                    self._permits -= 1
                    return
                count = self.counters.add(
                    f"{self.key}:{window}", self.chunk, self.window_seconds + 1
                ).total
                granted = min(self.chunk, self.per_window - (count - self.chunk))
                if granted > 0:
                    self._window, self._permits = window, granted - 1
                    return
            self.sleep(max((window + 1) * self.window_seconds - now, 0.001))
