"""The web app over HTTP (Flask test client), with a real SMTP server for the confirmation mail."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
import time
from collections.abc import Iterator
from email.message import Message

import fakeredis
import feedparser
import pytest
from conftest import (
    FEEDS,
    poisoned,
    poisoned_paper,
    record_sent_digest,
    run_at_once,
    unreachable_redis,
)
from itsdangerous import TimestampSigner
from sqlalchemy.exc import OperationalError

from digest.delivery import send_deliveries
from digest.pipeline import run_tick
from digest.records import SubscriberDefaults
from digest.settings import Settings, load_settings
from digest.sources import PaperRecord, parse_response
from digest.storage import Storage, Subscribers
from digest.subscriptions import build_subscriber_input
from digest.tokens import INVALID_LINK, Tokens
from digest.transports import SmtpTransport
from digest.web import MAILS_PER_ADDRESS, create_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def web(store: Storage, settings: Settings, smtp_sink) -> Iterator[dict]:
    config = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_sink.port,
            "base_url": "https://digest.example.org",
            "secret_key": "web-test-secret",
            "signup_answer_seconds": 0,
        }
    )
    app = create_app(config, store, fakeredis.FakeRedis())
    app.config["TESTING"] = True
    yield {
        "client": app.test_client(),
        "store": store,
        "sink": smtp_sink,
        "tokens": Tokens("web-test-secret"),
        "app": app,
    }


def csrf_token(client, path: str = "/") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def subscribe(
    web: dict,
    email: str = "ada@example.org",
    topics: str = "Graph Neural Networks\nefficient attention",
    **extra: str,
):
    client = web["client"]
    form = {
        "email": email,
        "topics": topics,
        "timezone": "Europe/Paris",
        "send_hour": "8",
        "csrf_token": csrf_token(client),
        **extra,
    }
    return client.post("/subscribe", data=form)


def confirmation_link(web: dict, index: int = -1) -> str:
    text = web["sink"].handler.received[index].message().get_body(("plain",)).get_content()
    return re.search(r"https://digest\.example\.org(/confirm/\S+)", text).group(1)


def confirm(web: dict, link: str):
    """What a person does: open the link, press the one button."""
    client = web["client"]
    page = client.get(link)
    assert page.status_code == 200 and "Yes, start my digest" in page.get_data(as_text=True)
    return client.post(link, data={"csrf_token": CSRF.search(page.get_data(as_text=True)).group(1)})


def active(store: Storage, email: str = "ada@example.org") -> str | None:
    sub = store.subscribers.get(email)
    return sub.status if sub else None


def follow(web: dict, topics: list[str], people: int, name: str = "x") -> None:
    for n in range(people):
        web["store"].subscribers.add(
            build_subscriber_input(f"{name}{n}@example.org", topics), SubscriberDefaults()
        )


def test_suggestions_never_show_one_persons_topic_or_a_paper_id(web: dict) -> None:
    """The sign-up page is public: it suggests the curated list and topics at least
    DIGEST_SUGGEST_MIN_FOLLOWERS people follow, never a few people's own text or papers (#31)."""
    web["store"].papers.upsert([PaperRecord("2611.00042", "Sparse attention for documents")])
    follow(web, ["my ex's name", "arxiv:2611.00042"], 4, "few")
    follow(web, ["quantum computing", "arxiv:2611.00042"], 5, "many")
    sub = web["store"].subscribers.get("many0@example.org")
    pages = {
        "sign-up": web["client"].get("/"),
        "preferences": web["client"].get(
            f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
        ),
    }
    for name, page in pages.items():
        chips = re.findall(r'class="chip" data-topic="([^"]*)"', page.get_data(as_text=True))
        assert "quantum computing" in chips and "reinforcement learning" in chips, name
        assert not [c for c in chips if "ex&#39;s" in c or "arxiv" in c or "2611" in c], name


def test_form_page_is_accessible_and_suggests_topics(web: dict) -> None:
    follow(web, ["quantum computing"], 5)
    page = web["client"].get("/").get_data(as_text=True)
    for field in ("email", "topics", "timezone", "send_hour"):
        assert f'<label for="{field}"' in page and f'id="{field}"' in page
    for topic in ("quantum computing", "reinforcement learning"):
        assert f'<button type="button" class="chip" data-topic="{topic}">+ {topic}</button>' in page
    assert 'name="csrf_token"' in page


def test_double_opt_in_end_to_end(web: dict) -> None:
    response = subscribe(web)
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    assert active(web["store"]) == "pending"
    (mail,) = web["sink"].handler.received
    assert (
        mail.recipient == "ada@example.org"
        and mail.message()["Subject"] == "Confirm your Paper Digest subscription"
    )
    page = confirm(web, confirmation_link(web))
    assert page.status_code == 200 and "You are subscribed" in page.get_data(as_text=True)
    assert re.search(
        r"Your first digest on graph neural networks, efficient attention arrives "
        r"(today|within minutes).*at 08:00 Europe/Paris",
        page.get_data(as_text=True),
    ), "says when the first digest comes"
    sub = web["store"].subscribers.get("ada@example.org")
    assert (sub.status, sub.topics, sub.timezone, sub.send_hour) == (
        "active",
        ("graph neural networks", "efficient attention"),
        "Europe/Paris",
        8,
    )
    assert confirm(web, confirmation_link(web)).status_code == 200, (
        "using the link twice is harmless"
    )


def test_an_existing_subscriber_gets_the_same_answer_and_a_way_to_their_preferences(
    web: dict,
) -> None:
    web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    new = subscribe(web, email="new@example.org").get_data(as_text=True)
    existing = subscribe(web).get_data(as_text=True)
    assert new.replace("new@example.org", "X") == existing.replace("ada@example.org", "X")
    assert [m.recipient for m in web["sink"].handler.received] == [
        "new@example.org",
        "ada@example.org",
    ]
    mail = web["sink"].handler.received[-1].message()
    assert mail["Subject"] == "You already have a Paper Digest subscription"
    text = mail.get_body(("plain",)).get_content()
    assert "already gets a digest on: rl" in text and "paused" not in text
    link = re.search(r"https://digest\.example\.org(/preferences/\S+)", text).group(1)
    page = web["client"].get(link)
    assert page.status_code == 200 and ">rl</textarea>" in page.get_data(as_text=True)
    assert web["store"].subscribers.get("ada@example.org").topics == ("rl",), (
        "an active subscription is untouched"
    )
    assert active(web["store"]) == "active"


def test_a_paused_subscriber_is_told_how_to_resume_and_stays_paused(web: dict) -> None:
    web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    web["store"].subscribers.set_status("ada@example.org", "paused")
    assert subscribe(web).status_code == 200
    text = web["sink"].handler.received[-1].message().get_body(("plain",)).get_content()
    assert "(paused at the moment)" in text and "or to resume" in text
    assert active(web["store"]) == "paused"


def test_resubmitting_does_not_burst_confirmation_mails(web: dict) -> None:
    for _ in range(MAILS_PER_ADDRESS.count + 3):
        assert subscribe(web).status_code == 200
    assert len(web["sink"].handler.received) == MAILS_PER_ADDRESS.count


def test_one_client_is_rate_limited(web: dict) -> None:
    statuses = [subscribe(web, email=f"u{i}@example.org").status_code for i in range(22)]
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429, 429]


def test_invalid_input_is_shown_on_the_form(web: dict) -> None:
    response = subscribe(web, email="not-an-email")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert (
        '<div class="field-error" id="email-error">'
        "Please enter a full email address, like ada@example.org.</div>"
    ) in page, "plain words, beside the field"
    assert 'aria-invalid="true" aria-describedby="email-error"' in page
    assert "invalid email" not in page and "not-an-email" in page, (
        "kept in the field, not in the message"
    )
    response = subscribe(web, email="", topics="t1\nt2\nt3\nt4\nt5\nt6")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "Please check the fields marked below." in page
    assert (
        '<div class="field-error" id="topics-error">Please keep to 5 topics at most.</div>' in page
    )
    assert (
        '<div class="field-error" id="email-error">Please enter your email address.</div>' in page
    )
    assert web["sink"].handler.received == []


def test_missing_or_forged_csrf_token_is_refused(web: dict) -> None:
    client = web["client"]
    response = client.post("/subscribe", data={"email": "ada@example.org", "topics": "rl"})
    assert response.status_code == 400 and "The form expired" in response.get_data(as_text=True)
    response = client.post(
        "/subscribe", data={"email": "ada@example.org", "topics": "rl", "csrf_token": "forged"}
    )
    assert response.status_code == 400
    assert active(web["store"]) is None


def test_expired_and_tampered_confirmation_links(
    web: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe(web)
    link = confirmation_link(web)
    tampered = web["client"].get(link[:-3] + "xyz")
    assert tampered.status_code == 400 and INVALID_LINK in tampered.get_data(as_text=True)
    later = int(time.time()) + 8 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    expired = web["client"].get(link)
    assert expired.status_code == 400 and INVALID_LINK in expired.get_data(as_text=True)
    assert active(web["store"]) == "pending"


def test_a_token_for_another_purpose_or_person_is_refused(web: dict) -> None:
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    tokens = web["tokens"]
    assert (
        web["client"].get(f"/confirm/{tokens.make('unsubscribe', sub.id, sub.email)}").status_code
        == 400
    )
    other = tokens.make("unsubscribe", sub.id, "eve@example.org")
    response = web["client"].post(f"/unsubscribe/{other}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400 and active(web["store"]) == "active"


@pytest.mark.parametrize("subscriber_id", [2**31, 2**63, 10**30, 0, -1])
def test_a_signed_token_naming_an_impossible_id_is_an_invalid_link(
    web: dict, subscriber_id: int
) -> None:
    """An id past the database's integer once overflowed the query: a 500."""
    token = web["tokens"].make("preferences", subscriber_id, "ada@example.org")
    page = web["client"].get(f"/preferences/{token}")
    assert page.status_code == 400 and INVALID_LINK in page.get_data(as_text=True)


def test_unsubscribe_get_confirms_and_post_acts(web: dict) -> None:
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    path = f"/unsubscribe/{web['tokens'].make('unsubscribe', sub.id, sub.email)}"
    page = web["client"].get(path)
    assert page.status_code == 200 and "Unsubscribe?" in page.get_data(as_text=True)
    assert active(web["store"]) == "active", "a GET (link scanner) changes nothing"
    done = web["client"].post(path, data={"List-Unsubscribe": "One-Click", "from_page": "1"})
    assert (
        "You are unsubscribed" in done.get_data(as_text=True)
        and active(web["store"]) == "unsubscribed"
    )


def test_rfc8058_one_click_post_unsubscribes_without_a_page(web: dict) -> None:
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    path = f"/unsubscribe/{web['tokens'].make('unsubscribe', sub.id, sub.email)}"
    response = web["client"].post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert active(web["store"]) == "unsubscribed"
    again = web["client"].post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200, "a provider retrying the POST gets the same answer"


def test_preferences_change_topics_hour_pause_and_resume(web: dict) -> None:
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    client = web["client"]
    page = client.get(path).get_data(as_text=True)
    assert ">rl</textarea>" in page and "Unsubscribe" in page
    token = CSRF.search(page).group(1)
    saved = client.post(
        path,
        data={
            "csrf_token": token,
            "topics": "Speech Recognition\nrl",
            "timezone": "Asia/Tokyo",
            "send_hour": "6",
            "max_papers": "8",
            "action": "save",
        },
    )
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    updated = web["store"].subscribers.get("ada@example.org")
    assert (updated.topics, updated.timezone, updated.send_hour, updated.max_papers) == (
        ("speech recognition", "rl"),
        "Asia/Tokyo",
        6,
        8,
    )
    client.post(path, data={"csrf_token": token, "action": "pause"})
    assert active(web["store"]) == "paused"
    client.post(path, data={"csrf_token": token, "action": "resume"})
    assert active(web["store"]) == "active"
    bad = client.post(
        path,
        data={
            "csrf_token": token,
            "topics": "rl",
            "timezone": "Mars/Base",
            "send_hour": "6",
            "max_papers": "8",
        },
    )
    assert bad.status_code == 400 and "Please pick a time zone from the list" in bad.get_data(
        as_text=True
    )
    assert client.post(path, data={"topics": "x", "action": "save"}).status_code == 400, (
        "CSRF required"
    )


def test_security_headers_and_no_stack_traces(web: dict) -> None:
    response = web["client"].get("/preferences/garbage")
    assert response.status_code == 400
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    missing = web["client"].get("/nope")
    assert missing.status_code == 404 and "Traceback" not in missing.get_data(as_text=True)
    huge = web["client"].post("/subscribe", data={"email": "a@example.org", "topics": "x" * 20000})
    assert huge.status_code == 413


def test_database_outage_is_a_clear_503(web: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    monkeypatch.setattr(Subscribers, "request_subscription", down)
    response = subscribe(web)
    assert response.status_code == 503 and "cannot reach our database" in response.get_data(
        as_text=True
    )


def test_smtp_failure_on_confirmation_says_try_again(web: dict) -> None:
    web["sink"].handler.rcpt_reply = lambda _: "451 4.3.0 try later"
    response = subscribe(web)
    assert response.status_code == 503 and "submit the form again" in response.get_data(
        as_text=True
    )


def test_pending_subscriptions_expire(web: dict) -> None:
    import datetime as dt

    subscribe(web)
    store = web["store"]
    assert (
        store.subscribers.delete_expired_pending(
            dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=7)
        )
        == 0
    )
    assert (
        store.subscribers.delete_expired_pending(
            dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
        )
        == 1
    )
    assert active(store) is None


def test_preview_shows_what_typed_topics_would_get_today(web: dict) -> None:
    from conftest import FEEDS

    from digest.ingestion import ingest_bytes

    today = {"heading": "Today these topics would get you:", "papers": []}
    assert web["client"].get("/preview?topics=rl").get_json() == today, "no papers stored yet"
    ingest_bytes(
        web["store"].papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    data = web["client"].get("/preview?topics=reinforcement%20learning").get_json()
    assert 0 < len(data["papers"]) <= 5
    assert all(
        p["url"].startswith("https://") and "reinforcement learning" in p["reason"]
        for p in data["papers"]
    )
    bad = web["client"].get("/preview?topics=" + "x" * 100)
    assert bad.status_code == 400 and "longer than" in bad.get_json()["error"]
    assert web["client"].get("/preview?topics=medieval%20poetry").get_json() == today


def test_an_old_confirmation_link_cannot_claim_a_cancelled_subscription_is_active(
    web: dict,
) -> None:
    subscribe(web)
    link = confirmation_link(web)
    confirm(web, link)
    web["store"].subscribers.set_status("ada@example.org", "unsubscribed")
    response = confirm(web, link)
    assert response.status_code == 400 and "cancelled after the link was sent" in response.get_data(
        as_text=True
    )
    assert active(web["store"]) == "unsubscribed"


def test_preferences_of_an_unsubscribed_address_offer_to_subscribe_again(web: dict) -> None:
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    web["store"].subscribers.set_status("ada@example.org", "unsubscribed")
    page = (
        web["client"]
        .get(f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}")
        .get_data(as_text=True)
    )
    assert (
        "Subscribe again" in page and 'value="pause"' not in page and 'value="resume"' not in page
    )


# -- abuse: each of these reproduces a way the public pages could be misused -----------------


def make_app(web: dict, redis_conn=None, **overrides):
    """Another app over the same store and SMTP sink, with some settings changed."""
    config = web["app"].extensions["digest"].settings.model_copy(update=overrides)
    app = create_app(
        config, web["store"], redis_conn if redis_conn is not None else fakeredis.FakeRedis()
    )
    app.config["TESTING"] = True
    return app


def test_an_oversized_preview_is_refused_before_any_work(
    web: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.web import signup

    parsed = []
    monkeypatch.setattr(signup, "normalize_topics", lambda raw: parsed.append(raw) or ("x",))
    topics = "%0A".join(f"t{i}" for i in range(40_000))  # ~190 KB: a WSGI server accepts it
    response = web["client"].get(f"/preview?topics={topics}")
    assert response.status_code == 400 and parsed == [], "refused on its raw size, nothing parsed"


def test_previews_are_throttled_before_their_input_is_validated(web: dict) -> None:
    statuses = {web["client"].get("/preview?topics=" + "x" * 100).status_code for _ in range(30)}
    assert statuses == {400}
    assert web["client"].get("/preview?topics=rl").status_code == 429, "invalid previews count too"


def test_topics_typed_into_a_preview_store_nothing(web: dict, encoder) -> None:
    from conftest import FEEDS
    from sqlalchemy import func, select

    from digest.ingestion import ingest_bytes
    from digest.models import TextVector
    from digest.ranking import paper_passage
    from digest.semantic import StoredEncoder

    store = web["store"]
    ingest_bytes(
        store.papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    StoredEncoder(encoder, store.papers).encode(
        [paper_passage(p) for p in store.papers.find()]
    )  # as `digest fetch` does

    def stored_vectors() -> int:
        with store.db.session() as session:
            return session.scalar(select(func.count()).select_from(TextVector))

    before = stored_vectors()
    assert web["client"].get("/preview?topics=an%20unusual%20anonymous%20topic").status_code == 200
    assert stored_vectors() == before


def test_a_link_scanner_opening_the_confirmation_link_confirms_nothing(web: dict) -> None:
    subscribe(web)
    link = confirmation_link(web)
    for method in ("get", "head"):
        assert getattr(web["client"], method)(link).status_code == 200
    assert active(web["store"]) == "pending"
    assert "You are subscribed" in confirm(web, link).get_data(as_text=True)
    assert active(web["store"]) == "active"


def test_two_confirmations_at_once_both_end_well(web: dict) -> None:
    subscribe(web)
    link = confirmation_link(web)
    forms = []
    for _ in range(2):
        client = web["app"].test_client()
        page = client.get(link).get_data(as_text=True)
        forms.append((client, CSRF.search(page).group(1)))

    def press(i: int):  # noqa: ANN202
        client, token = forms[i]
        return client.post(link, data={"csrf_token": token})

    answers, errors = run_at_once(press)
    assert errors == [] and [a.status_code for a in answers] == [200, 200]
    assert all("You are subscribed" in a.get_data(as_text=True) for a in answers)
    assert active(web["store"]) == "active"


def test_sub_addresses_of_one_mailbox_share_its_mail_limit(web: dict) -> None:
    for n in range(1, 7):
        subscribe(web, email=f"Victim+{n}@example.org")
    assert len(web["sink"].handler.received) == 3


def test_gmail_spellings_of_one_mailbox_share_its_mail_limit(web: dict) -> None:
    """Gmail ignores dots and +tags, and googlemail.com is gmail.com: one inbox."""
    for email in (
        "ada@gmail.com",
        "a.da@gmail.com",
        "ad.a@gmail.com",
        "a.d.a@googlemail.com",
        "A.da+x@gmail.com",
        "a.d.a+y@googlemail.com",
    ):
        assert subscribe(web, email=email).status_code == 200
    assert len(web["sink"].handler.received) == 3


def test_sign_up_mail_to_one_domain_is_capped_per_hour(web: dict) -> None:
    web["client"] = make_app(web, signup_mails_per_domain_per_hour=2).test_client()
    for name in ("ada", "bob", "cy"):
        assert subscribe(web, email=f"{name}@example.org").status_code == 200
    assert subscribe(web, email="dee@example.net").status_code == 200
    assert sorted(m.recipient for m in web["sink"].handler.received) == [
        "ada@example.org",
        "bob@example.org",
        "dee@example.net",
    ]


@pytest.mark.parametrize(
    "redis_conn",
    [
        pytest.param(unreachable_redis, id="redis-down"),
        pytest.param(lambda: fakeredis.FakeRedis(version=(6,)), id="redis-6"),
    ],
)
def test_the_mail_limit_holds_when_redis_is_down_or_old(web: dict, redis_conn) -> None:
    """Without Redis the process cannot know what other processes, or it before an outage,
    already sent: it allows fewer."""
    conn = redis_conn()
    web["client"] = make_app(web, conn).test_client()
    for _ in range(6):
        assert subscribe(web).status_code == 200
    down = conn.connection_pool.connection_kwargs.get("port") == 1
    expected = MAILS_PER_ADDRESS.without_redis if down else MAILS_PER_ADDRESS.count
    assert len(web["sink"].handler.received) == expected


def test_sign_up_mails_take_permits_from_the_shared_send_rate(web: dict) -> None:
    server = fakeredis.FakeRedis()
    web["client"] = make_app(web, server).test_client()
    subscribe(web)
    assert sum(int(server.get(key)) for key in server.keys("digest:rate:*")) >= 1


def test_a_failed_send_does_not_use_up_the_address_quota(web: dict) -> None:
    web["sink"].handler.rcpt_reply = lambda _: "451 4.3.0 try later"
    for _ in range(MAILS_PER_ADDRESS.count):
        assert subscribe(web).status_code == 503
    web["sink"].handler.rcpt_reply = None
    assert subscribe(web).status_code == 200
    assert [m.recipient for m in web["sink"].handler.received] == ["ada@example.org"]


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(web: dict) -> None:
    def sign_ups(client, forwarded_for: str, count: int) -> list[int]:
        token = csrf_token(client)
        return [
            client.post(
                "/subscribe",
                data={"email": f"u{i}@example.org", "topics": "rl", "csrf_token": token},
                headers={"X-Forwarded-For": forwarded_for},
            ).status_code
            for i in range(count)
        ]

    proxied = make_app(web, trusted_proxies=1)
    assert sign_ups(proxied.test_client(), "198.51.100.1", 21)[-1] == 429
    assert sign_ups(proxied.test_client(), "198.51.100.2", 1) == [200], (
        "another client behind the same proxy"
    )
    direct = make_app(web).test_client()
    assert sign_ups(direct, "198.51.100.1", 21)[-1] == 429
    assert sign_ups(direct, "198.51.100.3", 1) == [429], (
        "without a trusted proxy the header is not believed"
    )


def referer_for(response, page_url: str) -> dict[str, str]:
    """The Referer a browser sends on a same-origin form POST under the page's policy."""
    policy = response.headers.get("Referrer-Policy", "strict-origin-when-cross-origin")
    if policy in ("no-referrer",):
        return {}
    if policy in ("origin", "strict-origin"):
        return {"Referer": page_url.split("/", 3)[0] + "//" + page_url.split("/", 3)[2] + "/"}
    return {"Referer": page_url}


def test_forms_work_over_https_and_the_site_asks_for_https_only(web: dict) -> None:
    app = make_app(web)
    client = app.test_client()
    base = "https://digest.example.org"
    page = client.get("/", base_url=base)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    token = CSRF.search(page.get_data(as_text=True)).group(1)
    answer = client.post(
        "/subscribe",
        base_url=base,
        headers=referer_for(page, base + "/"),
        data={"email": "ada@example.org", "topics": "rl", "csrf_token": token},
    )
    assert answer.status_code == 200 and "Check your inbox" in answer.get_data(as_text=True)
    assert (
        client.post(
            "/subscribe",
            base_url=base,
            data={"email": "ada@example.org", "topics": "rl", "csrf_token": token},
        ).status_code
        == 400
    ), "the strict referrer check is still on"
    plain = make_app(web, base_url="http://127.0.0.1:8000").test_client().get("/")
    assert "Strict-Transport-Security" not in plain.headers


def test_an_upper_case_https_base_url_still_gets_hsts_and_secure_cookies(
    web: dict, settings: Settings
) -> None:
    config = load_settings(
        data_dir=settings.data_dir, base_url="HTTPS://digest.example.org", secret_key="k" * 32
    )
    app = create_app(config, web["store"], fakeredis.FakeRedis())
    page = app.test_client().get("/", base_url="https://digest.example.org")
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in page.headers["Set-Cookie"]


class Blackhole:
    """A TCP server that accepts connections and never answers: a database that hangs."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def test_a_hanging_database_gets_a_503_within_seconds(settings: Settings) -> None:
    hole = Blackhole()
    try:
        config = settings.model_copy(
            update={
                "database_url": f"postgresql+psycopg://u@127.0.0.1:{hole.port}/db",
                "db_connect_timeout": 1.0,
            }
        )
        client = create_app(config, None, fakeredis.FakeRedis()).test_client()
        started = time.monotonic()
        assert client.get("/healthz").status_code == 503
        assert client.get("/").status_code == 503
        assert time.monotonic() - started < 20, "each request gave up after its connect timeout"
    finally:
        hole.close()


@pytest.mark.postgres
def test_a_statement_stuck_on_a_lock_gets_a_503(pg_url: str, settings: Settings) -> None:
    from sqlalchemy import text

    Storage.from_url(pg_url).db.upgrade()
    config = settings.model_copy(update={"database_url": pg_url, "web_db_timeout": 1.0})
    client = create_app(config, None, fakeredis.FakeRedis()).test_client()
    locker = Storage.from_url(pg_url).db.engine.connect()
    try:
        locker.execute(text("LOCK TABLE subscribers IN ACCESS EXCLUSIVE MODE"))
        assert client.get("/").status_code == 503
    finally:
        locker.rollback()
        locker.close()
    assert client.get("/").status_code == 200, "and the page is back once the lock is gone"


@pytest.mark.parametrize("status", ["unsubscribed", "bounced"])
def test_an_opt_out_survives_a_new_sign_up_until_its_owner_confirms(web: dict, status: str) -> None:
    import datetime as dt

    store = web["store"]
    store.subscribers.add(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    store.subscribers.set_status("ada@example.org", status)
    before = store.subscribers.get("ada@example.org")
    subscribe(web, topics="cheap pills")
    after = store.subscribers.get("ada@example.org")
    assert (after.status, after.topics) == (status, ("rl",)), "a sign-up by anyone changes nothing"
    far_future = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=365)
    store.subscribers.delete_expired_pending(far_future)
    assert store.subscribers.get("ada@example.org") == before, "the opt-out is kept, not expired"
    assert (
        "cheap pills"
        in web["sink"].handler.received[-1].message().get_body(("plain",)).get_content()
    )
    confirm(web, confirmation_link(web))
    renewed = store.subscribers.get("ada@example.org")
    assert (renewed.status, renewed.topics) == ("active", ("cheap pills",)), (
        "the owner's own consent"
    )


def test_bounce_history_survives_a_new_sign_up(web: dict) -> None:
    from digest.models import Subscriber

    store = web["store"]
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    with store.db.session() as session:
        row = session.get(Subscriber, sub.id)
        row.status, row.hard_bounces = "bounced", 3
    subscribe(web)
    with store.db.session() as session:
        assert session.get(Subscriber, sub.id).hard_bounces == 3


def test_the_development_key_is_refused_on_a_public_site(settings: Settings) -> None:
    from digest.settings import SettingsError

    with pytest.raises(SettingsError, match="DIGEST_SECRET_KEY"):
        create_app(
            settings.model_copy(update={"base_url": "https://digest.example.org"}),
            None,
            fakeredis.FakeRedis(),
        )
    create_app(settings, None, fakeredis.FakeRedis())  # a local http site may use it


def test_every_invalid_link_gets_the_same_page(web: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    store, tokens, client = web["store"], web["tokens"], web["client"]
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    good = tokens.make("preferences", sub.id, sub.email)
    pages = {
        "tampered": client.get(f"/preferences/{good[:-3]}xyz"),
        "another person": client.get(
            f"/preferences/{tokens.make('preferences', sub.id, 'eve@example.org')}"
        ),
        "no such id": client.get(
            f"/preferences/{tokens.make('preferences', 999, 'eve@example.org')}"
        ),
        "another purpose": client.get(
            f"/preferences/{tokens.make('unsubscribe', sub.id, sub.email)}"
        ),
    }
    later = int(time.time()) + 200 * 24 * 3600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    pages["expired"] = client.get(f"/preferences/{good}")
    bodies = {name: (page.status_code, page.get_data(as_text=True)) for name, page in pages.items()}
    assert len(set(bodies.values())) == 1, bodies.keys()


def test_the_sign_up_answer_takes_as_long_whether_or_not_the_address_exists(web: dict) -> None:
    """On a fake clock: the database and SMTP work of each path advance it differently."""
    ctx = web["app"].extensions["digest"]
    now = [0.0]
    ctx.clock, ctx.sleep = (lambda: now[0]), (lambda seconds: now.__setitem__(0, now[0] + seconds))
    ctx.settings = ctx.settings.model_copy(update={"signup_answer_seconds": 1.0})
    real = ctx.store.subscribers.request_subscription

    def costly(data, defaults, list_id=None):  # a new address writes rows; an existing one reads
        now[0] += 0.05 if ctx.store.subscribers.get(data.email, list_id) else 0.4
        return real(data, defaults, list_id)

    ctx.store.subscribers.request_subscription = costly
    web["store"].subscribers.add(
        build_subscriber_input("old@example.org", ["rl"]), SubscriberDefaults()
    )
    took = {}
    for email in ("new@example.org", "old@example.org"):
        now[0] = 0.0
        assert subscribe(web, email=email).status_code == 200
        took[email] = now[0]
    assert took["new@example.org"] == took["old@example.org"] == 1.0


def test_the_form_refuses_a_topic_with_the_csv_separator(web: dict) -> None:
    response = subscribe(web, topics="rl; cheap pills")
    assert response.status_code == 400 and "each topic on its own line" in response.get_data(
        as_text=True
    )
    assert web["sink"].handler.received == []


EVIL_TOPIC = "<b>graph & nets</b>"


def test_every_page_escapes_topics_errors_and_suggestions(web: dict) -> None:
    """Topics are typed by strangers and shown to others (the suggestions): stored XSS if
    any page printed them raw."""
    store, tokens, client = web["store"], web["tokens"], web["client"]
    follow(web, [EVIL_TOPIC], 5)  # enough people to be suggested on the sign-up page
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", [EVIL_TOPIC]), SubscriberDefaults()
    )
    escaped = "&lt;b&gt;graph &amp; nets&lt;/b&gt;"
    pages = {
        "subscribe form (suggestions)": client.get("/"),
        "preferences": client.get(f"/preferences/{tokens.make('preferences', sub.id, sub.email)}"),
        "confirm": client.get(
            f"/confirm/{tokens.make('confirm', sub.id, sub.email, {'t': [EVIL_TOPIC]})}"
        ),
        "form error": subscribe(web, email="<script>alert(1)</script>@x"),
    }
    for name, page in pages.items():
        html = page.get_data(as_text=True)
        assert "<b>graph" not in html and "<script>alert" not in html, name
    for name in ("subscribe form (suggestions)", "preferences", "confirm"):
        assert escaped in pages[name].get_data(as_text=True), name
    assert "&lt;script&gt;" in pages["form error"].get_data(as_text=True)


def test_the_confirmation_mail_escapes_topics(web: dict) -> None:
    subscribe(web, topics=EVIL_TOPIC)
    mail = web["sink"].handler.received[-1].message()
    html = mail.get_body(("html",)).get_content()
    assert "<b>graph" not in html and "&lt;b&gt;graph &amp; nets&lt;/b&gt;" in html
    assert EVIL_TOPIC in mail.get_body(("plain",)).get_content(), "plain text shows it as typed"


def test_preferences_offer_suggestions_a_preview_and_the_trending_switch(web: dict) -> None:
    store, client = web["store"], web["client"]
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    page = client.get(path).get_data(as_text=True)
    assert 'class="chip" data-topic="reinforcement learning"' in page
    assert 'data-preview-url="/preview?list=daily"' in page and "subscribe.js" in page
    assert '<input type="checkbox" name="show_trending" checked>' in page
    form = {"csrf_token": CSRF.search(page).group(1), "topics": "rl", "timezone": "UTC"}
    client.post(path, data={**form, "send_hour": "7", "max_papers": "5", "action": "save"})
    assert store.subscribers.get("ada@example.org").show_trending is False, "unticked: off"
    bad = client.post(path, data={**form, "send_hour": "7", "max_papers": "99", "action": "save"})
    html = bad.get_data(as_text=True)
    assert (
        bad.status_code == 400
        and ('<div class="field-error" id="max_papers-error">Please enter a whole number from 1 to')
        in html
    )
    assert 'value="99"' in html, "what was typed stays in the field"
    client.post(
        path,
        data={**form, "send_hour": "7", "max_papers": "5", "show_trending": "on", "action": "save"},
    )
    assert store.subscribers.get("ada@example.org").show_trending is True


# -- reader feedback, the archive and the feed --------------------------------------------------

DAY_ONE = [
    PaperRecord(
        "2611.00001",
        "Efficient attention with block sparse patterns for long documents",
        "Block sparse efficient attention reads long documents by attending within local windows.",
    ),
    PaperRecord(
        "2611.00002",
        "Efficient attention through random feature kernels",
        "Kernelised efficient attention approximates the softmax with random features in linear time.",
    ),
    PaperRecord(
        "2611.00003",
        "Efficient attention that is aware of GPU memory",
        "An efficient attention kernel tiles the computation to avoid reading GPU memory twice.",
    ),
]
DAY_TWO = [
    PaperRecord(
        "2611.00011",
        "Efficient attention with random feature maps for vision transformers",
        "Random feature maps approximate the softmax kernel, giving efficient attention in linear "
        "time for vision transformers.",
    ),
    PaperRecord(
        "2611.00012",
        "Efficient attention on long sequences with recurrent state",
        "A recurrent state makes efficient attention linear on long sequences.",
    ),
    PaperRecord(
        "2611.00013",
        "Local windows for efficient attention over long documents",
        "Block sparse patterns and local windows let attention read long documents cheaply.",
    ),
]
URL_PATH = re.compile(r"https://digest\.example\.org(/\S+)")


def send_day(
    web: dict, papers: list[PaperRecord], now: dt.datetime, semantic: bool = False
) -> dict[str, Message]:
    """Store the day's papers, plan everyone's digest and send it: each reader's email.
    Words alone unless ``semantic``: MiniLM costs seconds a test."""
    settings = (
        web["app"]
        .extensions["digest"]
        .settings.model_copy(update={"semantic": semantic, "offline": True})
    )
    web["store"].papers.upsert(papers)
    batches: list[list[int]] = []
    run_tick(web["store"], settings, now, batches.append, dt.timedelta(days=999), everyone=True)
    sent_before = len(web["sink"].handler.received)
    with SmtpTransport(settings) as transport:
        for batch in batches:
            send_deliveries(
                web["store"].deliveries,
                web["store"].papers,
                settings,
                batch,
                transport,
                clock=lambda: now,
            )
    return {r.recipient: r.message() for r in web["sink"].handler.received[sent_before:]}


def text_part(message: Message) -> str:
    return message.get_body(("plain",)).get_content()


def titles_in(text: str, papers: list[PaperRecord]) -> list[str]:
    return sorted(
        (p.arxiv_id for p in papers if p.title in text),
        key=lambda i: text.index(next(p.title for p in papers if p.arxiv_id == i)),
    )


def link_paths(text: str, label: str) -> list[str]:
    """The paths of the text part's links after ``label`` ("More or less like this:")."""
    return [URL_PATH.search(line).group(1) for line in text.splitlines() if label in line]


def test_a_vote_through_the_page_reorders_the_next_digest(web: dict) -> None:
    for email in ("ada@example.org", "bob@example.org"):
        web["store"].subscribers.add(
            build_subscriber_input(email, ["efficient attention"], max_papers=3),
            SubscriberDefaults(),
        )
    day_one = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    first = text_part(send_day(web, DAY_ONE, day_one)["ada@example.org"])
    votes = dict(
        zip(titles_in(first, DAY_ONE), link_paths(first, "More or less like this:"), strict=True)
    )
    ada = web["store"].subscribers.get("ada@example.org")

    page = web["client"].get(votes["2611.00001"] + "?v=up")
    assert page.status_code == 200 and "More like this" in page.get_data(as_text=True)
    assert web["store"].feedback.vote_of(ada.id, "2611.00001") is None, (
        "a GET (a link scanner) records nothing"
    )
    liked = web["client"].post(votes["2611.00001"], data={"vote": "up"})
    assert "Saved: more papers like this one" in liked.get_data(as_text=True)
    web["client"].post(votes["2611.00002"], data={"vote": "down"})  # one tap, no CSRF token

    second = send_day(web, DAY_TWO, day_one + dt.timedelta(days=1))
    ada_order = titles_in(text_part(second["ada@example.org"]), DAY_TWO)
    bob_order = titles_in(text_part(second["bob@example.org"]), DAY_TWO)
    assert bob_order == ["2611.00012", "2611.00011", "2611.00013"], "the premise: words alone"
    assert ada_order == ["2611.00013", "2611.00012", "2611.00011"]
    assert (
        "Why: Like “Efficient attention with block sparse patterns for long…”, which you voted up"
        in " ".join(text_part(second["ada@example.org"]).split())
    )


HF_DAY = parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers


def voted_ids(text: str) -> list[str]:
    """The papers of a digest's text part, in its order, by their vote links."""
    return [path.rsplit("/", 1)[1] for path in link_paths(text, "More or less like this:")]


def test_eight_votes_through_the_page_move_the_profile_of_the_next_digest(web: dict) -> None:
    """From a reader's 8th vote Rocchio moves her profile toward what she liked: not only the
    papers near a voted one move, but the whole day's order. Ada and Bob follow the same
    topics and got the same digest of the recorded day; Ada votes on all 8 of its papers,
    down on the three about agents, up on the five about images, video and vision."""
    topics = ["agents", "video generation", "language models", "panoramic"]
    for email in ("ada@example.org", "bob@example.org"):
        web["store"].subscribers.add(
            build_subscriber_input(email, topics, max_papers=8), SubscriberDefaults()
        )
    day = dt.datetime(2026, 7, 13, 8)
    first = {r: text_part(m) for r, m in send_day(web, HF_DAY, day, semantic=True).items()}
    assert voted_ids(first["ada@example.org"]) == voted_ids(first["bob@example.org"])
    agents = {"2607.08768", "2607.08716", "2607.08964"}
    links = link_paths(first["ada@example.org"], "More or less like this:")
    for path in links:
        vote = "down" if path.rsplit("/", 1)[1] in agents else "up"
        assert web["client"].post(path, data={"vote": vote}).status_code == 200
    ada = web["store"].subscribers.get("ada@example.org")
    assert len(web["store"].feedback.votes_of(ada.id)) == 8, "Rocchio's threshold"

    nxt = send_day(web, HF_DAY, day + dt.timedelta(days=1), semantic=True)
    without_votes = [
        "2607.06957",  # Flow-ERD: Agent-type Aware Flow Matching
        "2607.09415",  # Self-Guided Test-Time Training for Long-Context LLMs
        "2607.08393",  # Towards Mechanistically Understanding Why Memorized Knowledge
        "2607.09424",  # A Sovereign, Open-Source Foundation Model for German and English
        "2607.04690",  # PAST-TIDE: Prototype-Anchored Statement Tuning
        "2607.07964",  # KronQ: LLM Quantization via Kronecker-Factored Hessian
        "2607.07673",  # MedPMC: ... Medical Multimodal Data
    ]
    assert voted_ids(text_part(nxt["bob@example.org"])) == without_votes
    # the text-only German model sinks under the quantization paper and the multimodal one
    assert voted_ids(text_part(nxt["ada@example.org"])) == [
        *without_votes[:3],
        "2607.04690",
        "2607.07964",
        "2607.07673",
        "2607.09424",
    ]


def sent_day_one(web: dict, email: str = "ada@example.org"):
    """``email`` subscribed, and sent a digest of DAY_ONE's first two papers today."""
    sub = web["store"].subscribers.add(build_subscriber_input(email, ["rl"]), SubscriberDefaults())
    web["store"].papers.upsert(DAY_ONE)
    today = dt.date.today()
    picks = [{"arxiv_id": p.arxiv_id, "topic": "rl", "reason": "r"} for p in DAY_ONE[:2]]
    record_sent_digest(web["store"], sub.id, today, picks)
    return (
        sub,
        f"/digest/{web['tokens'].make('digest', sub.id, sub.email, bound=today.isoformat())}",
    )


def test_a_vote_can_be_changed_undone_and_removed_from_the_preferences(web: dict) -> None:
    sub, digest = sent_day_one(web)
    path = f"{digest}/vote/2611.00001"
    web["client"].post(path, data={"vote": "up"})
    web["client"].post(path, data={"vote": "down"})
    assert web["store"].feedback.vote_of(sub.id, "2611.00001") == -1
    assert "You said <b>less like this</b>" in web["client"].get(path).get_data(as_text=True)
    undone = web["client"].post(path, data={"vote": "none"})
    assert "Your vote is removed" in undone.get_data(as_text=True)
    assert web["store"].feedback.vote_of(sub.id, "2611.00001") is None
    assert web["client"].post(path, data={"vote": "sideways"}).status_code == 400

    web["client"].post(path, data={"vote": "up"})
    prefs = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    page = web["client"].get(prefs).get_data(as_text=True)
    assert DAY_ONE[0].title in page
    web["client"].post(
        prefs,
        data={
            "csrf_token": csrf_token(web["client"], prefs),
            "action": "unvote",
            "arxiv_id": "2611.00001",
        },
    )
    assert web["store"].feedback.vote_of(sub.id, "2611.00001") is None
    assert DAY_ONE[0].title not in web["client"].get(prefs).get_data(as_text=True)


def test_vote_links_of_another_reader_day_or_paper_are_refused(web: dict) -> None:
    """A digest's link votes on that digest's papers, for its reader, and nothing else."""
    tokens = web["tokens"]
    ada, digest = sent_day_one(web)
    bob, _ = sent_day_one(web, "bob@example.org")
    today = dt.date.today().isoformat()
    forged = [
        f"/digest/{tokens.make('digest', ada.id, 'eve@example.org', bound=today)}/vote/2611.00001",
        f"/digest/{tokens.make('preferences', ada.id, ada.email)}/vote/2611.00001",
        f"/digest/{tokens.make('digest', ada.id, ada.email)}/vote/2611.00001",  # no day
        f"/digest/{tokens.make('digest', ada.id, ada.email, bound='2001-01-01')}/vote/2611.00001",
        f"/digest/{Tokens('another').make('digest', ada.id, ada.email, bound=today)}/vote/2611.00001",
        f"{digest}/vote/2611.00003",  # a paper of the day that was not in her digest
        f"{digest}/vote/2699.99999",
    ]
    for path in forged:
        assert web["client"].post(path, data={"vote": "up"}).status_code == 400, path
        assert web["client"].get(path).status_code == 400, path
    # the day is inside the signature: the link cannot be moved to another day
    other_day = tokens.make("digest", ada.id, ada.email, bound="2001-01-01")
    token = digest.removeprefix("/digest/")
    spliced = other_day.partition(".")[0] + "." + token.partition(".")[2]
    assert (
        web["client"].post(f"/digest/{spliced}/vote/2611.00001", data={"vote": "up"}).status_code
        == 400
    )
    assert (
        web["store"].feedback.votes_of(ada.id) == []
        and web["store"].feedback.votes_of(bob.id) == []
    )
    assert web["client"].post(f"{digest}/vote/2611.00001", data={"vote": "up"}).status_code == 200
    assert [v.arxiv_id for v in web["store"].feedback.votes_of(ada.id)] == ["2611.00001"]


def test_the_archive_shows_exactly_what_was_sent_and_the_feed_lists_it(
    web: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # links are compared as text: signed in the same second, wherever a second ticks over
    signed_at = int(time.time()) - 10
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at)
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["efficient attention"], max_papers=2),
        SubscriberDefaults(),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    text = text_part(send_day(web, DAY_ONE, now)["ada@example.org"])
    sent_order = titles_in(text, DAY_ONE)
    assert len(sent_order) == 2
    (archive,) = link_paths(text, "View in browser:")
    page = web["client"].get(archive).get_data(as_text=True)
    assert titles_in(page, DAY_ONE) == sent_order, "the archive shows the picks as sent, in order"
    prefs = web["client"].get(
        f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    )
    assert archive in prefs.get_data(as_text=True), "the preferences page lists past digests"

    web["store"].papers.upsert(DAY_TWO)  # a new day's papers change nothing in a sent digest
    assert titles_in(web["client"].get(archive).get_data(as_text=True), DAY_ONE) == sent_order
    other_day = web["tokens"].make("digest", sub.id, sub.email, bound="2001-01-01")
    assert web["client"].get(f"/digest/{other_day}").status_code == 404

    feed_path = URL_PATH.search(
        re.search(r'id="feed_url"[^>]*value="([^"]+)"', prefs.get_data(as_text=True)).group(1)
    ).group(1)
    response = web["client"].get(feed_path)
    assert response.status_code == 200 and response.mimetype == "application/atom+xml"
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10" and parsed.feed.id and parsed.feed.updated
    assert [e.link for e in parsed.entries] == [
        f"https://arxiv.org/abs/{pid}" for pid in sent_order
    ]
    for entry in parsed.entries:
        assert entry.id and entry.title and entry.updated and entry.summary
    assert len({e.id for e in parsed.entries}) == len(parsed.entries)
    again = web["client"].get(feed_path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and not again.data
    since = web["client"].get(
        feed_path, headers={"If-Modified-Since": response.headers["Last-Modified"]}
    )
    assert since.status_code == 304


def test_every_card_the_archive_and_the_feed_date_the_paper(web: dict) -> None:
    """A reader can tell news from an old paper: the mail, the archive and the feed say
    when each paper came out (#31)."""
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["efficient attention"], max_papers=2),
        SubscriberDefaults(),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    out = now - dt.timedelta(hours=30)
    label = f"{out:%b} {out.day}"
    papers = [dataclasses.replace(p, published_at=out) for p in DAY_ONE]
    text = text_part(send_day(web, papers, now)["ada@example.org"])
    assert f"\n   {label}\r\n" in text
    (archive,) = link_paths(text, "View in browser:")
    assert f'<p class="meta">{label}</p>' in web["client"].get(archive).get_data(as_text=True)
    feed = web["client"].get(f"/feed/{web['tokens'].make('feed', sub.id, sub.email)}")
    entries = feedparser.parse(feed.data).entries
    assert entries and all(e.published.startswith(f"{out:%Y-%m-%d}") for e in entries)


def test_a_paper_named_on_the_form_must_exist(web: dict) -> None:
    web["app"].extensions["digest"].settings = (
        web["app"].extensions["digest"].settings.model_copy(update={"offline": True})
    )
    page = subscribe(web, "ada@example.org", "rl\nhttps://arxiv.org/abs/2611.00042")
    assert page.status_code == 400
    assert "We do not know paper 2611.00042 yet" in page.get_data(as_text=True)
    web["store"].papers.upsert([PaperRecord("2611.00042", "Sparse attention for long documents")])
    assert (
        subscribe(web, "ada@example.org", "rl\nhttps://arxiv.org/abs/2611.00042").status_code == 200
    )
    confirm(web, confirmation_link(web))
    assert web["store"].subscribers.get("ada@example.org").topics == ("rl", "arxiv:2611.00042")


# -- every place that implements a rule (#37) -----------------------------------------------------

CSRF_FORMS = ["subscribe", "confirm", "save preferences", "pause", "resume", "remove a vote"]


@pytest.mark.parametrize("form", CSRF_FORMS)
def test_every_form_refuses_a_post_without_its_csrf_token(web: dict, form: str) -> None:
    """Every form but the RFC 8058 unsubscribe and the vote carries a CSRF token. The same
    POST with the token then does what it says, so the refusal was the token's, not a
    field's (a form that is exempted and also invalid would pass the refusal alone)."""
    store, tokens, client = web["store"], web["tokens"], web["client"]
    ada, digest = sent_day_one(web)
    client.post(f"{digest}/vote/2611.00001", data={"vote": "up"})
    if form == "resume":
        store.subscribers.set_status(ada.email, "paused")
    bob, _ = store.subscribers.request_subscription(
        build_subscriber_input("bob@example.org", ["rl"]), SubscriberDefaults()
    )
    prefs = f"/preferences/{tokens.make('preferences', ada.id, ada.email)}"
    path, data = {
        "subscribe": ("/subscribe", {"email": "cy@example.org", "topics": "rl"}),
        "confirm": (f"/confirm/{tokens.make('confirm', bob.id, bob.email)}", {}),
        "save preferences": (
            prefs,
            {
                "topics": "speech recognition",
                "timezone": "UTC",
                "send_hour": "6",
                "max_papers": "4",
                "action": "save",
            },
        ),
        "pause": (prefs, {"action": "pause"}),
        "resume": (prefs, {"action": "resume"}),
        "remove a vote": (prefs, {"action": "unvote", "arxiv_id": "2611.00001"}),
    }[form]

    def state() -> tuple:
        return store.subscribers.find(), store.feedback.votes_of(ada.id)

    before = state()
    refused = client.post(path, data=data)
    assert refused.status_code == 400 and "The form expired" in refused.get_data(as_text=True)
    assert state() == before, "a refused form changes nothing"
    accepted = client.post(path, data={**data, "csrf_token": csrf_token(client)})
    assert accepted.status_code == 200 and state() != before, "with its token it acts"


@pytest.mark.parametrize(
    "button",
    [{"List-Unsubscribe": "One-Click"}, {"List-Unsubscribe": "One-Click", "from_page": "1"}],
    ids=["one-click", "page"],
)
def test_a_paused_reader_who_unsubscribes_is_unsubscribed_for_good(web: dict, button) -> None:
    """Unsubscribing acts whatever the reader's status. A paused reader left paused could be
    resumed later by a click, without a new sign-up and its confirmation."""
    store, tokens, client = web["store"], web["tokens"], web["client"]
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    store.subscribers.set_status(sub.email, "paused")
    unsubscribed = client.post(
        f"/unsubscribe/{tokens.make('unsubscribe', sub.id, sub.email)}", data=button
    )
    assert unsubscribed.status_code == 200 and active(store) == "unsubscribed"
    prefs = f"/preferences/{tokens.make('preferences', sub.id, sub.email)}"
    client.post(prefs, data={"csrf_token": csrf_token(client, prefs), "action": "resume"})
    assert active(store) == "unsubscribed", "only a confirmed new sign-up brings them back"


def test_every_page_showing_a_paper_escapes_every_field_of_it(web: dict) -> None:
    """The archive, the vote pages, the preferences (votes) and the feed each have their own
    template: markup in any field of a pick or a trending paper, with or without its AI
    summary, and in the topics, reasons and quiet topics, stays text on each of them."""
    store, tokens, client = web["store"], web["tokens"], web["client"]
    topic, quiet = poisoned("topic"), poisoned("quiet topic")
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", [topic, quiet]), SubscriberDefaults()
    )
    papers = [poisoned_paper(f"2611.0010{n}", summary=n % 2 == 0) for n in range(4)]
    store.papers.upsert(papers)
    picks = [
        {"arxiv_id": p.arxiv_id, "topic": topic, "reason": poisoned("reason"), "also": [quiet]}
        for p in papers[:2]
    ] + [{"arxiv_id": p.arxiv_id, "topic": None, "reason": None} for p in papers[2:]]
    today = dt.date.today()
    record_sent_digest(store, sub.id, today, picks, quiet_topics=(quiet,))
    for paper in papers:
        store.feedback.record_vote(sub.id, paper.arxiv_id, 1, dt.datetime.now())
    digest = f"/digest/{tokens.make('digest', sub.id, sub.email, bound=today.isoformat())}"
    pages = {
        "archive": client.get(digest),
        "preferences": client.get(f"/preferences/{tokens.make('preferences', sub.id, sub.email)}"),
        "feed": client.get(f"/feed/{tokens.make('feed', sub.id, sub.email)}"),
        **{f"vote {p.arxiv_id}": client.get(f"{digest}/vote/{p.arxiv_id}") for p in papers},
    }
    for name, page in pages.items():
        body = page.get_data(as_text=True)
        assert page.status_code == 200, name
        assert "<u class=" not in body and "&lt;u class=" in body, name
    archive = pages["archive"].get_data(as_text=True)
    for field in ("title", "abstract", "summary", "author", "organization", "topic", "reason"):
        assert f"{field} &amp; co" in archive, f"the archive shows the {field}"
    assert archive.count("quiet topic &amp; co") >= 2, "as a quiet topic and as 'also'"


PURPOSES = ("confirm", "unsubscribe", "preferences", "digest", "feed")
LINKED_ROUTES = [
    ("GET", "confirm", ""),
    ("POST", "confirm", ""),
    ("GET", "unsubscribe", ""),
    ("POST", "unsubscribe", ""),
    ("GET", "preferences", ""),
    ("POST", "preferences", ""),
    ("GET", "digest", ""),
    ("GET", "digest", "/vote/2611.00001"),
    ("POST", "digest", "/vote/2611.00001"),
    ("GET", "feed", ""),
]


@pytest.mark.parametrize(("method", "purpose", "rest"), LINKED_ROUTES)
def test_every_linked_page_takes_only_its_own_purposes_link_for_its_own_reader(
    web: dict, method: str, purpose: str, rest: str
) -> None:
    """Each page checks its own purpose: a link signed for another (an unsubscribe link
    opening the preferences, a feed link confirming), or for the same row of another
    address, gets the one 'this link does not work' answer and changes nothing."""
    store, tokens, client = web["store"], web["tokens"], web["client"]
    ada, _ = sent_day_one(web)
    store.subscribers.set_status(ada.email, "paused")  # a confirm or unsubscribe would change it
    day = dt.date.today().isoformat()
    links = [
        tokens.make(other, ada.id, ada.email, bound=day if other == "digest" else None)
        for other in PURPOSES
        if other != purpose
    ]
    links.append(tokens.make(purpose, ada.id, "eve@example.org", bound=day))
    form = {
        "csrf_token": csrf_token(client),
        "List-Unsubscribe": "One-Click",
        "action": "resume",
        "vote": "up",
    }
    before = (store.subscribers.find(), store.feedback.votes_of(ada.id))
    for token in links:
        path = f"/{purpose}/{token}{rest}"
        response = client.get(path) if method == "GET" else client.post(path, data=form)
        assert response.status_code == 400, path
        assert INVALID_LINK in response.get_data(as_text=True)
    assert (store.subscribers.find(), store.feedback.votes_of(ada.id)) == before
    own = tokens.make(purpose, ada.id, ada.email, bound=day if purpose == "digest" else None)
    path = f"/{purpose}/{own}{rest}"
    response = client.get(path) if method == "GET" else client.post(path, data=form)
    assert response.status_code == 200, "its own link works"


def test_preferences_take_exclusions_and_authors_and_say_the_profile_back(web: dict) -> None:
    sub = web["store"].subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    client = web["client"]
    token = CSRF.search(client.get(path).get_data(as_text=True)).group(1)
    form = {"csrf_token": token, "timezone": "UTC", "send_hour": "7", "max_papers": "5"}
    page = client.post(
        path, data={**form, "topics": "rl, agents\n-surveys\nauthor: LeCun, Yann"}
    ).get_data(as_text=True)
    assert web["store"].subscribers.get("ada@example.org").topics == (
        "rl",
        "agents",
        "not: surveys",
        "author: LeCun, Yann",
    )
    assert "You follow: rl, agents; you exclude: surveys; authors: Yann LeCun." in html.unescape(
        page
    )
