"""A real browser (Debian's chromium, driven by Selenium through chromedriver) subscribes,
confirms from the email, receives a digest and unsubscribes through its footer link."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import fakeredis
import pytest
from conftest import FEEDS

from digest.delivery import send_deliveries
from digest.ingestion import ingest_bytes
from digest.models import utcnow
from digest.pipeline import run_tick
from digest.records import SubscriberDefaults
from digest.settings import Settings, load_settings
from digest.storage import Storage
from digest.subscriptions import build_subscriber_input
from digest.transports import SmtpTransport
from digest.web import create_app

PREVIEW_WAIT_SECONDS = 120
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


@contextmanager
def serving(store: Storage, settings: Settings, sink) -> Iterator[dict]:
    """The app on a real server (waitress) on a free port, mailing through ``sink``."""
    from waitress.server import create_server

    config = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "offline": True,
            "signup_answer_seconds": 0,
        }
    )
    server = create_server(
        create_app(config, store, fakeredis.FakeRedis()), host="127.0.0.1", port=0
    )
    base = f"http://127.0.0.1:{server.effective_port}"
    config = config.model_copy(update={"base_url": base})
    server.application = create_app(config, store, fakeredis.FakeRedis())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield {"base": base, "store": store, "sink": sink, "settings": config}
    finally:
        server.close()


@pytest.fixture
def served(sqlite_url: str, settings: Settings, smtp_sink) -> Iterator[dict]:
    store = Storage.from_url(sqlite_url)
    store.db.upgrade()
    with serving(store, settings, smtp_sink) as site:
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium for the whole module, the size of a phone's screen (375 px wide)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=375,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 375, "height": 900, "deviceScaleFactor": 1, "mobile": True},
    )
    yield driver
    driver.quit()


def heading_says(browser, text: str) -> None:
    """Wait for the next page's <h1> to say `text`.

    Right after a click the old page may still be showing, or be torn down between finding
    the <h1> and reading it (Chromium then answers "Node with given id does not belong to the
    document"). So the heading is read in one script call, in whichever document is current,
    and a read that races with the navigation is simply tried again until the deadline.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def heading(driver) -> bool:
        found = driver.execute_script("return document.querySelector('h1')?.textContent;")
        return bool(found) and text in found

    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(
        heading, message=f"no page with an <h1> saying {text!r}"
    )


def preview_items(browser) -> list:
    """The live preview's papers, once shown. The first preview a process serves loads
    MiniLM and embeds the day's papers: about 2 s on an idle machine, but 48 s was measured
    on two cores shared by several test runs, hence the long wait."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, PREVIEW_WAIT_SECONDS).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#preview-list li")
    )


def link_in(text: str, pattern: str) -> str:
    return re.search(pattern, text).group(0)


def test_subscribe_confirm_receive_and_unsubscribe_in_a_real_browser(served: dict, browser) -> None:
    from selenium.webdriver.common.by import By

    base, store, sink = served["base"], served["store"], served["sink"]
    ingest_bytes(
        store.papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    browser.get(base + "/")
    browser.find_element(By.ID, "email").send_keys("ada@example.org")
    browser.find_element(By.ID, "topics").send_keys("reinforcement learning")
    browser.find_element(By.CSS_SELECTOR, '.chip[data-topic="large language models"]').click()
    assert browser.find_element(By.ID, "topics").get_attribute("value") == (
        "reinforcement learning\nlarge language models"
    ), "tapping a suggestion adds it as a new line"
    assert browser.find_element(By.ID, "timezone").get_attribute("value"), (
        "pre-filled from the browser"
    )
    previews = preview_items(browser)
    assert re.search(r"\n(Matches “|Close to your topic)", previews[0].text), (
        "the live preview lists today's papers with their reasons"
    )
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    heading_says(browser, "Check your inbox")
    assert store.subscribers.get("ada@example.org").status == "pending"

    confirmation = sink.handler.received[-1].message().get_body(("plain",)).get_content()
    browser.get(link_in(confirmation, re.escape(base) + r"/confirm/\S+"))
    heading_says(browser, "Confirm your subscription")
    assert store.subscribers.get("ada@example.org").status == "pending", (
        "opening the link is not consent"
    )
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    heading_says(browser, "You are subscribed")
    assert store.subscribers.get("ada@example.org").status == "active"
    assert "Your first digest on reinforcement learning, large language models arrives " in (
        browser.find_element(By.TAG_NAME, "main").text
    )

    batches: list[list[int]] = []
    run_tick(
        store,
        served["settings"],
        utcnow(),
        batches.append,
        fetch_every=TICK_NEVER_FETCHES,
        everyone=True,
    )
    transport = SmtpTransport(served["settings"])
    send_deliveries(store.deliveries, store.papers, served["settings"], batches[0], transport)
    transport.close()
    digest = sink.handler.received[-1].message()
    assert "new paper" in digest["Subject"]
    footer_link = link_in(
        digest.get_body(("html",)).get_content(), re.escape(base) + r'/unsubscribe/[^"]+'
    )

    browser.get(footer_link)
    heading_says(browser, "Unsubscribe?")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    heading_says(browser, "You are unsubscribed")
    assert store.subscribers.get("ada@example.org").status == "unsubscribed"


WEEKLY_DESCRIPTION = "The week's best machine learning papers, every Monday."


def add_weekly_list(store: Storage):
    """A second public list, with its own sender and suggested topics."""
    return store.lists.add(
        "ml-weekly",
        "ML Weekly",
        description=WEEKLY_DESCRIPTION,
        cadence="weekly:mon",
        sender="ML Weekly <ml-weekly@example.org>",
        suggested_topics=["world models", "reinforcement learning"],
    )


def test_choose_a_list_on_the_home_page_and_sign_up_to_it(served: dict, browser) -> None:
    """With two public lists the home page lists them; a reader picks one, signs up on its
    page and confirms from the mail its sender sent."""
    from selenium.webdriver.common.by import By

    base, store, sink = served["base"], served["store"], served["sink"]
    weekly = add_weekly_list(store)
    browser.get(base + "/")
    heading_says(browser, "Choose your digests")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "ML Weekly" in main and WEEKLY_DESCRIPTION in main and "Weekly, on Mondays" in main
    browser.find_element(By.LINK_TEXT, "Sign up to ML Weekly").click()
    heading_says(browser, "The new papers on your topics, once a week")
    assert browser.current_url == base + "/l/ml-weekly"
    browser.find_element(By.ID, "email").send_keys("ada@example.org")
    browser.find_element(By.CSS_SELECTOR, '.chip[data-topic="world models"]').click()
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    heading_says(browser, "Check your inbox")
    mail = sink.handler.received[-1].message()
    assert mail["Subject"] == "Confirm your ML Weekly subscription"
    assert mail["From"] == "ML Weekly <ml-weekly@example.org>"
    browser.get(link_in(mail.get_body(("plain",)).get_content(), re.escape(base) + r"/confirm/\S+"))
    heading_says(browser, "Confirm your subscription")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    heading_says(browser, "You are subscribed")
    sub = store.subscribers.require("ada@example.org", list_id=weekly.id)
    assert (sub.status, sub.topics) == ("active", ("world models",))
    assert store.subscribers.get("ada@example.org") is None, "nothing on the default list"
    browser.get(base + "/l/private-or-not-there")
    heading_says(browser, "Page not found")


def test_the_preferences_preview_follows_the_how_often_choice(served: dict, browser) -> None:
    """The papers came four days ago: not today's news for a daily reader, but the week's.
    Choosing "weekly" on the preferences page previews what that digest would pick."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    from sqlalchemy import text

    base, store, settings = served["base"], served["store"], served["settings"]
    recorded = (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()
    ingest_bytes(store.papers, recorded, "hf", frozenset({"new"}))
    with store.db.engine.begin() as conn:
        four_days = utcnow() - dt.timedelta(days=4)
        conn.execute(text("UPDATE papers SET first_seen_at = :t"), {"t": four_days})
    sub = store.subscribers.add(
        build_subscriber_input("ada@example.org", ["reinforcement learning"]),
        SubscriberDefaults(),
    )
    browser.get(f"{base}/preferences/{settings.tokens.make('preferences', sub.id, sub.email)}")
    heading_says(browser, "Your digest")
    Select(browser.find_element(By.ID, "cadence")).select_by_value("weekly:mon")
    assert preview_items(browser), "the week's papers, shown without typing anything"
    box = browser.find_element(By.ID, "preview")
    assert box.is_displayed()
    assert box.text.startswith("This week these topics would get you:")


# Readable everywhere (#31): every page a reader sees, light and dark, at phone width.

CONTRAST_JS = (Path(__file__).parent / "contrast.js").read_text(encoding="utf-8")
SCHEMES = ("light", "dark")
TICK_NEVER_FETCHES = dt.timedelta(days=999)  # the papers are the recorded day's, ingested
ADA_TOPICS = ("reinforcement learning", "large language models", "lattice quantum chromodynamics")


def emulate(browser, scheme: str) -> None:
    """prefers-color-scheme as a phone set to light or dark reports it; applies at once."""
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )


def unreadable(browser) -> dict[str, list[dict]]:
    """What contrast.js finds on the current page, per colour scheme."""
    found = {}
    for scheme in SCHEMES:
        emulate(browser, scheme)
        found[scheme] = browser.execute_script(CONTRAST_JS)
    emulate(browser, "light")
    return found


def contrast_report(page: str, found: dict[str, list[dict]]) -> str:
    lines = [f"{page}: below WCAG AA contrast"]
    for scheme, offenders in found.items():
        lines += [
            f"  {scheme}: {o['what']} {o['selector']} {o['text']!r}: {o['colour']} on "
            f"{o['background']} = {o['ratio']}:1 (needs {o['needed']}:1)"
            for o in offenders
        ]
    return "\n".join(lines)


def sign_up(browser, base: str, email: str, topics: Iterable[str], path: str = "/l/daily") -> None:
    """Signs up on a list's page (the default list's: the home page lists every list)."""
    from selenium.webdriver.common.by import By

    browser.get(base + path)
    browser.find_element(By.ID, "email").send_keys(email)
    browser.find_element(By.ID, "topics").send_keys("\n".join(topics))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    heading_says(browser, "Check your inbox")


def mail_to(sink, address: str) -> list:
    """The messages the sink accepted for ``address``, oldest first."""
    messages = [r.message() for r in sink.handler.received]
    return [m for m in messages if m["To"] == address]


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def shows(browser, css: str) -> None:
    """Wait for the next page to hold an element matching ``css`` (read as heading_says
    reads, so a read that races with the navigation is tried again)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15, ignored_exceptions=(WebDriverException,)).until(
        lambda b: b.execute_script("return !!document.querySelector(arguments[0]);", css),
        message=f"no page showing {css!r}",
    )


def visit(browser, url: str, heading: str | None = None) -> Callable[[], None]:
    """Opens ``url`` (and waits for its heading) when called."""

    def open_page() -> None:
        browser.get(url)
        if heading:
            heading_says(browser, heading)

    return open_page


def submit(
    browser, open_page: Callable[[], None], button: str, wait: Callable[[], None]
) -> Callable[[], None]:
    """Opens a page, presses ``button`` on it and waits for the answer, when called."""
    from selenium.webdriver.common.by import By

    def press() -> None:
        open_page()
        browser.find_element(By.CSS_SELECTOR, button).click()
        wait()

    return press


@pytest.fixture(scope="module")
def pages(browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Every page a reader can see, reached as a reader reaches it: two readers sign up in
    the browser and confirm from their mail, a day's digests go out through SMTP (one with
    picks, upvotes, a quiet topic and Trending today; one where nothing matched), and every
    link is taken from the mail as sent. Each value opens its page in ``browser``."""
    from digest.smtp_sink import SmtpSink

    folder = tmp_path_factory.mktemp("readable")
    sink = SmtpSink().start()
    store = Storage.from_url(f"sqlite:///{folder / 'digest.db'}")
    store.db.upgrade()
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("DIGEST_")]:
            env.delenv(key)
        settings = load_settings(data_dir=folder / "var")
    with serving(store, settings, sink) as site:
        yield _reader_pages(browser, site, folder)
    sink.stop()
    store.dispose()


def _reader_pages(browser, site: dict, folder: Path) -> dict[str, Callable[[], None]]:
    base, store, sink, settings = site["base"], site["store"], site["sink"], site["settings"]
    add_weekly_list(store)  # two public lists: the home page lists them
    ingest_bytes(
        store.papers,
        (FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes(),
        "hf",
        frozenset({"new"}),
    )
    subscribed = partial(heading_says, browser, "You are subscribed")
    for email, topics in (
        ("ada@example.org", ADA_TOPICS),
        ("eve@example.org", ["medieval poetry"]),
    ):
        sign_up(browser, base, email, topics)
        link = link_in(html_of(mail_to(sink, email)[-1]), re.escape(base) + r'/confirm/[^"]+')
        submit(browser, visit(browser, link), "button[type=submit]", subscribed)()
    confirmation = html_of(mail_to(sink, "ada@example.org")[0])
    batches: list[list[int]] = []
    run_tick(
        store, settings, utcnow(), batches.append, fetch_every=TICK_NEVER_FETCHES, everyone=True
    )
    transport = SmtpTransport(settings)
    send_deliveries(store.deliveries, store.papers, settings, batches[0], transport)
    transport.close()
    digest, nothing_matched = (
        html_of(mail_to(sink, a)[-1]) for a in ("ada@example.org", "eve@example.org")
    )
    sign_up(
        browser, base, "ada@example.org", ADA_TOPICS
    )  # she forgot: a reminder, not a new sign-up
    mails = {
        "digest": digest,
        "digest-nothing-matched": nothing_matched,
        "confirmation": confirmation,
        "already-subscribed": html_of(mail_to(sink, "ada@example.org")[-1]),
    }
    opened = {}
    for name, html in mails.items():
        path = folder / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        opened[f"{name} email"] = visit(browser, path.as_uri())
    links = {
        name: link_in(digest, re.escape(base) + pattern)
        for name, pattern in (
            ("archive", r'/digest/[^"/?]+(?=")'),
            ("vote", r'/digest/[^"]+/vote/[^"]+\?v=down'),
            ("preferences", r'/preferences/[^"]+'),
            ("unsubscribe", r'/unsubscribe/[^"]+'),
        )
    }
    confirm_link = link_in(confirmation, re.escape(base) + r'/confirm/[^"]+')
    eve_unsubscribe = link_in(nothing_matched, re.escape(base) + r'/unsubscribe/[^"]+')
    saved = partial(shows, browser, ".saved")
    refused = partial(shows, browser, ".errors")
    submit(browser, visit(browser, links["vote"]), ".vote-buttons button", saved)()  # a vote

    def subscribe_with_suggestion_and_preview() -> None:
        from selenium.webdriver.common.by import By

        browser.get(base + "/l/daily")
        browser.find_element(By.CSS_SELECTOR, ".chip").click()  # a pressed chip
        browser.find_element(By.ID, "topics").send_keys("\nreinforcement learning")
        preview_items(browser)

    preferences = visit(browser, links["preferences"], "Your digest")

    def no_papers_at_all() -> None:
        preferences()
        browser.execute_script("document.getElementById('max_papers').value = '0';")

    return {
        **opened,
        "subscribe": subscribe_with_suggestion_and_preview,
        "subscribe, refused": submit(
            browser, visit(browser, base + "/l/daily"), "button[type=submit]", refused
        ),
        "lists": visit(browser, base + "/", "Choose your digests"),
        "list page": visit(browser, base + "/l/ml-weekly", "once a week"),
        "check your inbox": partial(sign_up, browser, base, "cy@example.org", ["diffusion"]),
        "confirm": visit(browser, confirm_link, "Confirm your subscription"),
        "subscribed": submit(
            browser,
            visit(browser, confirm_link),
            "button[type=submit]",
            subscribed,
        ),
        "preferences": preferences,
        "preferences, saved": submit(browser, preferences, "button[value=save]", saved),
        "preferences, refused": submit(browser, no_papers_at_all, "button[value=save]", refused),
        "archive": visit(browser, links["archive"]),
        "vote": visit(browser, links["vote"], "More or less like this?"),
        "vote, saved": submit(
            browser, visit(browser, links["vote"]), ".vote-buttons button", saved
        ),
        "unsubscribe": visit(browser, links["unsubscribe"], "Unsubscribe?"),
        "unsubscribed": submit(
            browser,
            visit(browser, eve_unsubscribe),
            "button[type=submit]",
            partial(heading_says, browser, "You are unsubscribed"),
        ),
        "link that does not work": visit(
            browser, base + "/unsubscribe/nonsense", "This link does not work"
        ),
        "page not found": visit(browser, base + "/no-such-page"),
    }


READER_PAGES = [
    "digest email",
    "digest-nothing-matched email",
    "confirmation email",
    "already-subscribed email",
    "subscribe",
    "subscribe, refused",
    "lists",
    "list page",
    "check your inbox",
    "confirm",
    "subscribed",
    "preferences",
    "preferences, saved",
    "preferences, refused",
    "archive",
    "vote",
    "vote, saved",
    "unsubscribe",
    "unsubscribed",
    "link that does not work",
    "page not found",
]


@pytest.mark.parametrize("page", READER_PAGES)
def test_every_text_and_control_is_readable_in_light_and_dark(
    page: str, pages: dict, browser
) -> None:
    """WCAG AA at 375 px: text 4.5:1 against its effective background (3:1 when large),
    focus rings and control edges 3:1 (tests/contrast.js says how each is measured)."""
    pages[page]()
    assert browser.execute_script("return window.innerWidth") == 375
    found = unreadable(browser)
    assert not any(found.values()), contrast_report(page, found)


def test_the_list_of_reader_pages_is_the_fixtures(pages: dict) -> None:
    assert sorted(pages) == sorted(READER_PAGES)
