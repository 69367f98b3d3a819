"""Lists on the web (#34): each public list's sign-up page, the home page that lists them (or
is the only one's page), sign-up and its mails per list, the preferences' cadence, and
unsubscribing from one list only. Over HTTP (Flask test client), real storage, a real SMTP
server."""

from __future__ import annotations

import datetime as dt
import re
from email.utils import parseaddr

import feedparser
import pytest
from conftest import record_sent_digest
from test_web import CSRF, confirm, confirmation_link, csrf_token, web  # noqa: F401 - the app

from digest.records import ListRecord, SubscriberDefaults, SubscriberRecord
from digest.storage import Storage
from digest.subscriptions import build_subscriber_input

WEEKLY_SENDER = "ML Weekly <ml-weekly@lab.example.org>"


def add_lists(store: Storage) -> tuple[ListRecord, ListRecord]:
    """Beside the default list: a public weekly list with its own sender and topics, and a
    private lab list."""
    weekly = store.lists.add(
        "ml-weekly",
        "ML Weekly",
        description="The week's best machine learning papers, every Monday.",
        cadence="weekly:mon",
        sender=WEEKLY_SENDER,
        suggested_topics=["sparse mixture of experts", "world models"],
    )
    lab = store.lists.add("lab", "Robotics Lab", cadence="weekdays", public=False)
    return weekly, lab


def subscribe_to(site: dict, slug: str | None, email: str = "ada@example.org", **extra: str):
    """What a visitor does on a list's page (``slug`` None: a form that names no list, as
    the pages did before there were lists)."""
    client = site["client"]
    form = {
        "email": email,
        "topics": "reinforcement learning",
        "timezone": "Europe/Paris",
        "send_hour": "8",
        "csrf_token": csrf_token(client, f"/l/{slug or 'daily'}"),
        **({"list": slug} if slug else {}),
        **extra,
    }
    return client.post("/subscribe", data=form)


def subscription(
    store: Storage, listed: ListRecord | None, email: str = "ada@example.org"
) -> SubscriberRecord:
    return store.subscribers.require(email, list_id=listed.id if listed else None)


def statuses(store: Storage, email: str = "ada@example.org") -> dict[int, str]:
    return {sub.list_id: sub.status for sub in store.subscribers.of_address(email)}


def shown(site: dict, path: str) -> str:
    """The page at ``path``, which must be there."""
    page = site["client"].get(path)
    assert page.status_code == 200, path
    return page.get_data(as_text=True)


def test_with_one_public_list_the_home_page_is_its_form(web: dict) -> None:  # noqa: F811
    web["store"].lists.add("lab", "Robotics Lab", public=False)  # private: not on the home page
    html = shown(web, "/")
    assert "<h1>The new papers on your topics, once a day</h1>" in html
    assert '<div class="brand">Paper Digest</div>' in html
    assert '<input type="hidden" name="list" value="daily">' in html
    assert "<strong>Daily</strong>, at the hour you choose" in html
    assert "Robotics Lab" not in html


def test_the_home_page_lists_the_public_lists(web: dict) -> None:  # noqa: F811
    add_lists(web["store"])
    html = shown(web, "/")
    assert "<h1>Choose your digests</h1>" in html
    cards = re.findall(
        r'<h2><a class="paper-title" href="(/l/[\w-]+)">([^<]+)</a></h2>\n+(?:<p>([^<]*)</p>\n)?'
        r'<p class="meta"><strong>([^<]+)</strong>',
        html,
    )
    assert cards == [
        ("/l/daily", "Paper Digest", "", "Daily"),
        (
            "/l/ml-weekly",
            "ML Weekly",
            "The week&#39;s best machine learning papers, every Monday.",
            "Weekly, on Mondays",
        ),
    ]
    assert "Robotics Lab" not in html and "/l/lab" not in html
    assert 'name="email"' not in html, "no form: each list has its own"


def test_with_no_public_list_the_home_page_says_sign_ups_are_by_invitation(web: dict) -> None:  # noqa: F811
    web["store"].lists.update("daily", public=False)
    html = shown(web, "/")
    assert "<h1>No digests to sign up to</h1>" in html and 'name="email"' not in html
    assert web["client"].get("/l/daily").status_code == 404


def test_a_list_page_shows_its_title_description_topics_and_cadence(web: dict) -> None:  # noqa: F811
    add_lists(web["store"])
    html = shown(web, "/l/ml-weekly")
    assert "<title>Subscribe - ML Weekly</title>" in html
    assert '<div class="brand">ML Weekly</div>' in html
    assert "<h1>The new papers on your topics, once a week</h1>" in html
    assert "<p>The week&#39;s best machine learning papers, every Monday.</p>" in html
    assert "<strong>Weekly, on Mondays</strong>, at the hour you choose." in html
    assert '<input type="hidden" name="list" value="ml-weekly">' in html
    chips = re.findall(r'class="chip" data-topic="([^"]*)"', html)
    assert chips == ["sparse mixture of experts", "world models"], "the list's own suggestions"
    default = shown(web, "/l/daily")
    assert "reinforcement learning" in re.findall(r'class="chip" data-topic="([^"]*)"', default)


def test_a_list_page_suggests_what_its_own_readers_follow(web: dict) -> None:  # noqa: F811
    """A topic five readers of ML Weekly follow is suggested on ML Weekly's page, not on the
    daily list's, whose readers never chose it."""
    store = web["store"]
    weekly, _ = add_lists(store)
    for n in range(5):
        store.subscribers.add(
            build_subscriber_input(f"r{n}@example.org", ["protein folding"]),
            SubscriberDefaults(),
            list_id=weekly.id,
        )

    def chips(path: str) -> list[str]:
        return re.findall(r'class="chip" data-topic="([^"]*)"', shown(web, path))

    assert "protein folding" in chips("/l/ml-weekly")
    assert "protein folding" not in chips("/l/daily")


@pytest.mark.parametrize("slug", ["lab", "no-such-list", "ML-WEEKLY"])
def test_a_private_or_unknown_list_has_no_page_and_takes_no_sign_up(
    web: dict,  # noqa: F811
    slug: str,
) -> None:
    add_lists(web["store"])
    page = web["client"].get(f"/l/{slug}")
    assert page.status_code == 404 and "<h1>Page not found</h1>" in page.get_data(as_text=True)
    form = {"email": "eve@example.org", "topics": "rl", "list": slug}
    token = csrf_token(web["client"], "/l/daily")
    refused = web["client"].post("/subscribe", data=form | {"csrf_token": token})
    assert refused.status_code == 404
    assert web["store"].subscribers.of_address("eve@example.org") == []
    assert web["sink"].handler.received == []


def test_a_second_list_is_a_new_subscription_with_its_own_confirmation(web: dict) -> None:  # noqa: F811
    store = web["store"]
    weekly, _ = add_lists(store)
    subscribe_to(web, None)
    confirm(web, confirmation_link(web))
    default = subscription(store, None)
    assert default.status == "active"

    answer = subscribe_to(web, "ml-weekly")
    assert answer.status_code == 200
    assert "to start ML Weekly." in answer.get_data(as_text=True)
    mail = web["sink"].handler.received[-1].message()
    assert mail["Subject"] == "Confirm your ML Weekly subscription"
    assert parseaddr(mail["From"]) == parseaddr(WEEKLY_SENDER), "from the list's sender"
    assert "List-Id" not in mail, "account mail carries no list headers"
    text = mail.get_body(("plain",)).get_content()
    assert (
        "wants ML Weekly: a digest of new papers on reinforcement learning, weekly, on Mondays."
        in " ".join(text.split())
    )
    assert re.search(
        r'<div class="brand"[^>]*>ML Weekly</div>', mail.get_body(("html",)).get_content()
    )
    assert statuses(store) == {default.list_id: "active", weekly.id: "pending"}

    link = confirmation_link(web)
    page = web["client"].get(link).get_data(as_text=True)
    assert "<p>Send ML Weekly to ada@example.org: a digest of new papers on " in page
    assert "weekly, on Mondays?</p>" in page
    done = confirm(web, link).get_data(as_text=True)
    assert "You are subscribed" in done and "then every Monday" in done
    assert statuses(store) == {default.list_id: "active", weekly.id: "active"}
    assert subscription(store, None).id == default.id, "the first subscription is untouched"


def test_signing_up_again_to_a_list_mails_that_subscriptions_preferences(web: dict) -> None:  # noqa: F811
    store = web["store"]
    weekly, _ = add_lists(store)
    store.subscribers.add(build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults())
    store.subscribers.add(
        build_subscriber_input("ada@example.org", ["world models"]),
        SubscriberDefaults(),
        list_id=weekly.id,
    )
    subscribe_to(web, "ml-weekly")
    mail = web["sink"].handler.received[-1].message()
    assert mail["Subject"] == "You already have a ML Weekly subscription"
    assert parseaddr(mail["From"]) == parseaddr(WEEKLY_SENDER)
    text = mail.get_body(("plain",)).get_content()
    assert "already gets a digest on: world models" in text
    prefs = re.search(r"https://digest\.example\.org(/preferences/\S+)", text).group(1)
    page = web["client"].get(prefs).get_data(as_text=True)
    assert "<p>ML Weekly &middot; ada@example.org &middot; active</p>" in page


def test_unsubscribing_from_one_list_leaves_the_others(web: dict) -> None:  # noqa: F811
    store = web["store"]
    weekly, lab = add_lists(store)
    subs = [
        store.subscribers.add(
            build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults(), list_id=lid
        )
        for lid in (None, weekly.id, lab.id)
    ]
    default, on_weekly, on_lab = subs
    client = web["client"]
    path = f"/unsubscribe/{web['tokens'].make('unsubscribe', on_weekly.id, on_weekly.email)}"
    page = client.get(path).get_data(as_text=True)
    assert "<p>Stop sending ML Weekly to ada@example.org." in page
    one_click = client.post(
        path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert one_click.status_code == 200 and one_click.mimetype == "text/plain"
    assert statuses(store) == {
        default.list_id: "active",
        weekly.id: "unsubscribed",
        lab.id: "active",
    }

    path = f"/unsubscribe/{web['tokens'].make('unsubscribe', on_lab.id, on_lab.email)}"
    done = client.post(path, data={"List-Unsubscribe": "One-Click", "from_page": "1"})
    html = done.get_data(as_text=True)
    assert "ada@example.org will get no more of Robotics Lab." in html
    assert '<a class="button" href="/">Subscribe again</a>' in html, "a private list: home"
    assert statuses(store) == {
        default.list_id: "active",
        weekly.id: "unsubscribed",
        lab.id: "unsubscribed",
    }
    prefs = f"/preferences/{web['tokens'].make('preferences', on_weekly.id, on_weekly.email)}"
    assert '<a href="/l/ml-weekly">Subscribe again</a>' in client.get(prefs).get_data(as_text=True)


def preferences_form(site: dict, path: str, **fields: str) -> dict[str, str]:
    token = CSRF.search(site["client"].get(path).get_data(as_text=True)).group(1)
    form = {"csrf_token": token, "action": "save", "topics": "rl", "timezone": "UTC"}
    return form | {"send_hour": "7", "max_papers": "5"} | fields


def selected_cadence(html: str) -> str:
    select = re.search(r'<select id="cadence" name="cadence"[^>]*>(.*?)</select>', html, re.S)
    return re.search(r'<option value="([^"]*)" selected>', select.group(1)).group(1)


def test_the_preferences_override_the_lists_cadence(web: dict) -> None:  # noqa: F811
    store = web["store"]
    weekly, _ = add_lists(store)
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults(), list_id=weekly.id
    )
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    html = web["client"].get(path).get_data(as_text=True)
    assert "<title>Preferences - ML Weekly</title>" in html
    assert '<option value="" selected>As the list sends: Weekly, on Mondays</option>' in html
    assert '<option value="weekly:fri">Weekly, on Fridays</option>' in html
    assert '<option value="weekdays">Every weekday</option>' in html

    saved = web["client"].post(path, data=preferences_form(web, path, cadence="weekly:fri"))
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    assert subscription(store, weekly).cadence == "weekly:fri"
    assert selected_cadence(saved.get_data(as_text=True)) == "weekly:fri"

    bad = web["client"].post(path, data=preferences_form(web, path, cadence="fortnightly"))
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and 'id="cadence-error"' in html
    assert subscription(store, weekly).cadence == "weekly:fri", "a refused form changes nothing"

    web["client"].post(path, data=preferences_form(web, path, cadence="daily"))
    assert subscription(store, weekly).cadence == "daily"
    web["client"].post(path, data=preferences_form(web, path, cadence=""))
    assert subscription(store, weekly).cadence is None, "back to the list's"
    assert subscription(store, weekly).topics == ("rl",)


def test_a_form_without_the_cadence_field_keeps_the_override(web: dict) -> None:  # noqa: F811
    store = web["store"]
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults(), cadence="weekdays"
    )
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    form = preferences_form(web, path)
    assert web["client"].post(path, data=form).status_code == 200
    assert subscription(store, None).cadence == "weekdays"


def test_the_archive_and_the_feed_name_the_list(web: dict) -> None:  # noqa: F811
    store = web["store"]
    weekly, _ = add_lists(store)
    tokens = web["tokens"]
    today = dt.date.today()
    for listed in (None, weekly):
        sub = store.subscribers.add(
            build_subscriber_input("ada@example.org", ["rl"]),
            SubscriberDefaults(),
            list_id=listed.id if listed else None,
        )
        record_sent_digest(store, sub.id, today, [])
    for sub in store.subscribers.of_address("ada@example.org"):
        name = "ML Weekly" if sub.list_id == weekly.id else "Paper Digest"
        archive = f"/digest/{tokens.make('digest', sub.id, sub.email, bound=today.isoformat())}"
        html = web["client"].get(archive).get_data(as_text=True)
        assert f"<title>Your digest of {today.isoformat()} - {name}</title>" in html
        assert f'<div class="brand">{name}</div>' in html
        feed_path = f"/feed/{tokens.make('feed', sub.id, sub.email)}"
        feed = feedparser.parse(web["client"].get(feed_path).data)
        assert feed.feed.title == f"{name}: rl"
        assert feed.feed.author == name


def test_the_preview_picks_from_the_public_lists_sources(web: dict) -> None:  # noqa: F811
    """A list's page previews what that list would send: its sources only. A private or
    unknown list's name previews as the default list does, telling nothing."""
    from conftest import FEEDS

    from digest.ingestion import ingest_bytes

    store = web["store"]
    ingest_bytes(
        store.papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    for slug, public in (("planets", True), ("hidden-planets", False)):
        store.lists.add(slug, slug.title(), sources=["arxiv:astro-ph.EP"], public=public)
    assert 'data-preview-url="/preview?list=planets"' in shown(web, "/l/planets")

    def previewed(**extra: str) -> list[str]:
        query = {"topics": "reinforcement learning", **extra}
        return [
            p["title"] for p in web["client"].get("/preview", query_string=query).json["papers"]
        ]

    everything = previewed()
    assert everything, "the recorded day has reinforcement learning papers"
    assert previewed(list="daily") == everything
    assert previewed(list="planets") == [], "none of them is in astro-ph.EP"
    assert previewed(list="hidden-planets") == everything
    assert previewed(list="no-such-list") == everything


def test_a_readers_own_cadence_previews_its_window(web: dict) -> None:  # noqa: F811
    """A reader on a daily list who chose "weekly" previews the week's papers on their
    preferences page, as their digest will pick them: the page's preview follows the "How
    often" choice (``cadence=``), and a cadence that is none is refused, saying why."""
    from conftest import FEEDS
    from sqlalchemy import text

    from digest.ingestion import ingest_bytes

    store, client = web["store"], web["client"]
    ingest_bytes(
        store.papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    with store.db.engine.begin() as conn:  # the papers came four days ago: this week's news
        four_days = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(days=4)
        conn.execute(text("UPDATE papers SET first_seen_at = :t"), {"t": four_days})

    def previewed(**extra: str) -> list[str]:
        query = {"topics": "reinforcement learning", "list": "daily", **extra}
        return [p["title"] for p in client.get("/preview", query_string=query).json["papers"]]

    assert previewed() == [], "not today's news"
    assert previewed(cadence="weekly:mon"), "the week's"
    query = {"topics": "rl", "list": "daily"}
    heading = client.get("/preview", query_string=query).json["heading"]
    assert heading == "Today these topics would get you:"
    heading = client.get("/preview", query_string={**query, "cadence": "weekly:mon"}).json
    assert heading["heading"] == "This week these topics would get you:", "not 'Today'"
    assert previewed(cadence="") == [], "empty: the list's own cadence"
    refused = client.get("/preview", query_string={"topics": "rl", "cadence": "hourly"})
    assert refused.status_code == 400
    assert refused.json["error"].startswith("'hourly' is not a cadence")
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["rl"]), SubscriberDefaults()
    )
    path = f"/preferences/{web['tokens'].make('preferences', sub.id, sub.email)}"
    page = client.get(path).get_data(as_text=True)
    assert 'data-preview-url="/preview?list=daily"' in page
    assert '<select id="cadence" name="cadence" data-previews>' in page, "subscribe.js sends it"
