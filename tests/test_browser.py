"""A real browser (Debian's chromium, driven by Selenium through chromedriver) subscribes,
confirms from the email, receives a digest and unsubscribes through its footer link."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import threading
from collections.abc import Iterator

import fakeredis
import pytest
from conftest import FEEDS

from digest.delivery import send_deliveries
from digest.ingestion import ingest_bytes
from digest.models import utcnow
from digest.pipeline import run_tick
from digest.settings import Settings
from digest.storage import Storage
from digest.transports import SmtpTransport
from digest.web import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


@pytest.fixture
def served(sqlite_url: str, settings: Settings, smtp_sink) -> Iterator[dict]:
    from waitress.server import create_server

    store = Storage.from_url(sqlite_url)
    store.db.upgrade()
    config = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_sink.port,
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
    yield {"base": base, "store": store, "sink": smtp_sink, "settings": config}
    server.close()


@pytest.fixture
def browser() -> Iterator[object]:
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


def link_in(text: str, pattern: str) -> str:
    return re.search(pattern, text).group(0)


def test_subscribe_confirm_receive_and_unsubscribe_in_a_real_browser(served: dict, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

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
    previews = WebDriverWait(browser, 15).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#preview-list li")
    )
    assert re.search(r"\n(Title mentions|Abstract: |Close in meaning)", previews[0].text), (
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
        fetch_every=dt.timedelta(days=999),
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
