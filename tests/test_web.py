"""The web app over HTTP (Flask test client), with a real SMTP server for the confirmation mail."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import fakeredis
import pytest
from itsdangerous import TimestampSigner
from sqlalchemy.exc import OperationalError

from digest.settings import Settings
from digest.storage import Store, SubscriberDefaults
from digest.subscriptions import build_subscriber_input
from digest.tokens import Tokens
from digest.web import PER_ADDRESS_PER_DAY, create_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web(store: Store, settings: Settings, smtp_sink) -> Iterator[dict]:
    config = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp_sink.port,
                                         "base_url": "https://digest.example.org", "secret_key": "web-test-secret"})
    app = create_app(config, store, fakeredis.FakeRedis())
    app.config["TESTING"] = True
    yield {"client": app.test_client(), "store": store, "sink": smtp_sink, "tokens": Tokens("web-test-secret"),
           "app": app}


def csrf_token(client, path: str = "/") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def subscribe(web: dict, email: str = "ada@example.org", topics: str = "Graph Neural Networks\nefficient attention",
              **extra: str):
    client = web["client"]
    form = {"email": email, "topics": topics, "timezone": "Europe/Paris", "send_hour": "8",
            "csrf_token": csrf_token(client), **extra}
    return client.post("/subscribe", data=form)


def confirmation_link(web: dict, index: int = -1) -> str:
    text = web["sink"].handler.received[index].message().get_body(("plain",)).get_content()
    return re.search(r"https://digest\.example\.org(/confirm/\S+)", text).group(1)


def active(store: Store, email: str = "ada@example.org") -> str | None:
    sub = store.get_subscriber(email)
    return sub.status if sub else None


def test_form_page_is_accessible_and_suggests_topics(web: dict) -> None:
    web["store"].add_subscriber(build_subscriber_input("x@example.org", ["quantum computing"]), SubscriberDefaults())
    page = web["client"].get("/").get_data(as_text=True)
    for field in ("email", "topics", "timezone", "send_hour"):
        assert f'<label for="{field}"' in page and f'id="{field}"' in page
    assert "<li>quantum computing</li>" in page and "<li>reinforcement learning</li>" in page
    assert 'name="csrf_token"' in page


def test_double_opt_in_end_to_end(web: dict) -> None:
    response = subscribe(web)
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    assert active(web["store"]) == "pending"
    (mail,) = web["sink"].handler.received
    assert mail.recipient == "ada@example.org" and mail.message()["Subject"] == "Confirm your Paper Digest subscription"
    page = web["client"].get(confirmation_link(web))
    assert page.status_code == 200 and "You are subscribed" in page.get_data(as_text=True)
    sub = web["store"].get_subscriber("ada@example.org")
    assert (sub.status, sub.topics, sub.timezone, sub.send_hour) == (
        "active", ("graph neural networks", "efficient attention"), "Europe/Paris", 8)
    assert web["client"].get(confirmation_link(web)).status_code == 200, "opening the link twice is harmless"


def test_an_existing_subscriber_gets_the_same_answer_and_a_way_to_their_preferences(web: dict) -> None:
    web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    new = subscribe(web, email="new@example.org").get_data(as_text=True)
    existing = subscribe(web).get_data(as_text=True)
    assert new.replace("new@example.org", "X") == existing.replace("ada@example.org", "X")
    assert [m.recipient for m in web["sink"].handler.received] == ["new@example.org", "ada@example.org"]
    mail = web["sink"].handler.received[-1].message()
    assert mail["Subject"] == "You already have a Paper Digest subscription"
    text = mail.get_body(("plain",)).get_content()
    assert "already gets a digest on: rl" in text and "paused" not in text
    link = re.search(r"https://digest\.example\.org(/preferences/\S+)", text).group(1)
    page = web["client"].get(link)
    assert page.status_code == 200 and ">rl</textarea>" in page.get_data(as_text=True)
    assert web["store"].get_subscriber("ada@example.org").topics == ("rl",), "an active subscription is untouched"
    assert active(web["store"]) == "active"


def test_a_paused_subscriber_is_told_how_to_resume_and_stays_paused(web: dict) -> None:
    web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    web["store"].set_status("ada@example.org", "paused")
    assert subscribe(web).status_code == 200
    text = web["sink"].handler.received[-1].message().get_body(("plain",)).get_content()
    assert "(paused at the moment)" in text and "or to resume" in text
    assert active(web["store"]) == "paused"


def test_resubmitting_does_not_burst_confirmation_mails(web: dict) -> None:
    for _ in range(PER_ADDRESS_PER_DAY + 3):
        assert subscribe(web).status_code == 200
    assert len(web["sink"].handler.received) == PER_ADDRESS_PER_DAY


def test_one_client_is_rate_limited(web: dict) -> None:
    statuses = [subscribe(web, email=f"u{i}@example.org").status_code for i in range(22)]
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]


def test_invalid_input_is_shown_on_the_form(web: dict) -> None:
    response = subscribe(web, email="not-an-email")
    assert response.status_code == 400 and "invalid email" in response.get_data(as_text=True)
    response = subscribe(web, topics="t1\nt2\nt3\nt4\nt5\nt6")
    assert response.status_code == 400 and "6 topics given, at most 5" in response.get_data(as_text=True)
    assert web["sink"].handler.received == []


def test_missing_or_forged_csrf_token_is_refused(web: dict) -> None:
    client = web["client"]
    response = client.post("/subscribe", data={"email": "ada@example.org", "topics": "rl"})
    assert response.status_code == 400 and "The form expired" in response.get_data(as_text=True)
    response = client.post("/subscribe", data={"email": "ada@example.org", "topics": "rl", "csrf_token": "forged"})
    assert response.status_code == 400
    assert active(web["store"]) is None


def test_expired_and_tampered_confirmation_links(web: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    subscribe(web)
    link = confirmation_link(web)
    tampered = web["client"].get(link[:-3] + "xyz")
    assert tampered.status_code == 400 and "not valid" in tampered.get_data(as_text=True)
    later = int(time.time()) + 8 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    expired = web["client"].get(link)
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)
    assert active(web["store"]) == "pending"


def test_a_token_for_another_purpose_or_person_is_refused(web: dict) -> None:
    sub = web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    tokens = web["tokens"]
    assert web["client"].get(f"/confirm/{tokens.make('unsubscribe', sub.id, sub.email)}").status_code == 400
    other = tokens.make("unsubscribe", sub.id, "eve@example.org")
    response = web["client"].post(f"/unsubscribe/{other}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400 and active(web["store"]) == "active"


def test_unsubscribe_get_confirms_and_post_acts(web: dict) -> None:
    sub = web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    path = f"/unsubscribe/{web['tokens'].make('unsubscribe', sub.id, sub.email)}"
    page = web["client"].get(path)
    assert page.status_code == 200 and "Unsubscribe?" in page.get_data(as_text=True)
    assert active(web["store"]) == "active", "a GET (link scanner) changes nothing"
    done = web["client"].post(path, data={"List-Unsubscribe": "One-Click", "from_page": "1"})
    assert "You are unsubscribed" in done.get_data(as_text=True) and active(web["store"]) == "unsubscribed"


def test_rfc8058_one_click_post_unsubscribes_without_a_page(web: dict) -> None:
    sub = web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    path = f"/unsubscribe/{web['tokens'].make('unsubscribe', sub.id, sub.email)}"
    response = web["client"].post(path, data="List-Unsubscribe=One-Click",
                                  content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert active(web["store"]) == "unsubscribed"
    again = web["client"].post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200, "a provider retrying the POST gets the same answer"


def test_preferences_change_topics_hour_pause_and_resume(web: dict) -> None:
    sub = web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    client = web["client"]
    page = client.get(path).get_data(as_text=True)
    assert ">rl</textarea>" in page and "Unsubscribe" in page
    token = CSRF.search(page).group(1)
    saved = client.post(path, data={"csrf_token": token, "topics": "Speech Recognition\nrl", "timezone": "Asia/Tokyo",
                                    "send_hour": "6", "max_papers": "8", "action": "save"})
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    updated = web["store"].get_subscriber("ada@example.org")
    assert (updated.topics, updated.timezone, updated.send_hour, updated.max_papers) == (
        ("speech recognition", "rl"), "Asia/Tokyo", 6, 8)
    client.post(path, data={"csrf_token": token, "action": "pause"})
    assert active(web["store"]) == "paused"
    client.post(path, data={"csrf_token": token, "action": "resume"})
    assert active(web["store"]) == "active"
    bad = client.post(path, data={"csrf_token": token, "topics": "rl", "timezone": "Mars/Base", "send_hour": "6",
                                  "max_papers": "8"})
    assert bad.status_code == 400 and "unknown time zone" in bad.get_data(as_text=True)
    assert client.post(path, data={"topics": "x", "action": "save"}).status_code == 400, "CSRF required"


def test_security_headers_and_no_stack_traces(web: dict) -> None:
    response = web["client"].get("/preferences/garbage")
    assert response.status_code == 400
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer" and response.headers["Cache-Control"] == "no-store"
    missing = web["client"].get("/nope")
    assert missing.status_code == 404 and "Traceback" not in missing.get_data(as_text=True)
    huge = web["client"].post("/subscribe", data={"email": "a@example.org", "topics": "x" * 20000})
    assert huge.status_code == 413


def test_database_outage_is_a_clear_503(web: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    monkeypatch.setattr(Store, "request_subscription", down)
    response = subscribe(web)
    assert response.status_code == 503 and "cannot reach our database" in response.get_data(as_text=True)


def test_smtp_failure_on_confirmation_says_try_again(web: dict) -> None:
    web["sink"].handler.rcpt_reply = lambda _: "451 4.3.0 try later"
    response = subscribe(web)
    assert response.status_code == 503 and "submit the form again" in response.get_data(as_text=True)


def test_pending_subscriptions_expire(web: dict) -> None:
    import datetime as dt

    subscribe(web)
    store = web["store"]
    assert store.delete_expired_pending(dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=7)) == 0
    assert store.delete_expired_pending(dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)) == 1
    assert active(store) is None


def test_preview_shows_what_typed_topics_would_get_today(web: dict) -> None:
    from conftest import FEEDS
    from digest.ingestion import ingest_bytes

    ingest_bytes(web["store"], (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(), "hf", frozenset({"new"}))
    data = web["client"].get("/preview?topics=reinforcement%20learning").get_json()
    assert 0 < len(data["papers"]) <= 5
    assert all(p["url"].startswith("https://") and "reinforcement learning" in p["reason"] for p in data["papers"])
    bad = web["client"].get("/preview?topics=" + "x" * 100)
    assert bad.status_code == 400 and "longer than" in bad.get_json()["error"]
    assert web["client"].get("/preview?topics=medieval%20poetry").get_json() == {"papers": []}


def test_an_old_confirmation_link_cannot_claim_a_cancelled_subscription_is_active(web: dict) -> None:
    subscribe(web)
    link = confirmation_link(web)
    web["client"].get(link)
    web["store"].set_status("ada@example.org", "unsubscribed")
    response = web["client"].get(link)
    assert response.status_code == 400 and "cancelled after the link was sent" in response.get_data(as_text=True)
    assert active(web["store"]) == "unsubscribed"


def test_preferences_of_an_unsubscribed_address_offer_to_subscribe_again(web: dict) -> None:
    sub = web["store"].add_subscriber(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    web["store"].set_status("ada@example.org", "unsubscribed")
    page = web["client"].get(f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}").get_data(as_text=True)
    assert "Subscribe again" in page and 'value="pause"' not in page and 'value="resume"' not in page
