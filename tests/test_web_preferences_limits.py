"""Preference saves are bounded like sign-ups: a save can make the server ask arXiv about a
paper (seconds), so a burst of them must neither hold the request threads nor go unlimited.
8 parallel saves naming unknown papers once held the server 43 s, and another visitor's
/healthz waited 38 s."""

from __future__ import annotations

import time

from feed_server import FeedServer, Reply
from test_web import CSRF, web  # noqa: F401 - the web app fixture

from digest.records import SubscriberDefaults
from digest.subscriptions import build_subscriber_input
from digest.web import PREFERENCE_SAVES_PER_CLIENT, PREFERENCE_SAVES_PER_SUBSCRIBER


def preferences_path(site: dict, email: str) -> str:
    sub = site["store"].subscribers.add(build_subscriber_input(email, ["rl"]), SubscriberDefaults())
    return f"/preferences/{site['tokens'].make('preferences', sub.id, sub.email)}"


def save(site: dict, path: str, topics: str = "rl") -> int:
    client = site["client"]
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    form = {"csrf_token": token, "action": "save", "topics": topics, "timezone": "UTC"}
    form |= {"send_hour": "7", "max_papers": "5"}
    return client.post(path, data=form).status_code


def test_saves_are_limited_per_subscriber(web: dict) -> None:  # noqa: F811
    path = preferences_path(web, "ada@example.org")
    codes = [save(web, path) for _ in range(PREFERENCE_SAVES_PER_SUBSCRIBER.count + 1)]
    assert 429 not in codes[:-1] and codes[-1] == 429


def test_saves_are_limited_per_client_across_subscribers(web: dict) -> None:  # noqa: F811
    per_client = PREFERENCE_SAVES_PER_CLIENT.count
    paths = [preferences_path(web, f"u{i}@example.org") for i in range(3)]
    codes = [save(web, paths[i % 3]) for i in range(per_client + 1)]
    assert 429 not in codes[:-1] and codes[-1] == 429


def test_a_paper_looked_up_from_the_web_waits_seconds_not_twenty(web: dict) -> None:  # noqa: F811
    """arXiv answering slowly costs a save a few seconds, and its page says to try again."""
    server = FeedServer()
    server.script("/api/query", Reply(200, b"", delay=30))
    ctx = web["app"].extensions["digest"]
    ctx.settings = ctx.settings.model_copy(
        update={"arxiv_api_url": server.url + "/api/query", "offline": False}
    )
    path = preferences_path(web, "ada@example.org")
    started = time.monotonic()
    assert save(web, path, topics="rl\narxiv:2607.07953") == 400
    assert time.monotonic() - started < 8
    server.close()
