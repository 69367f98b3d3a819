"""Lists and cadence end to end (#34), through the `digest` command line and a real SMTP
server, on SQLite and PostgreSQL: one reader on the default list and on two weekly lists,
one due today and one tomorrow (a fixed clock), gets exactly two digests, each carrying its
list; a backup restores every subscription with its consent state into a fresh install;
unsubscribing from one list through its one-click link leaves the others."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import fakeredis
import pytest
from click.testing import CliRunner, Result

import digest.pipeline  # noqa: F401 - imported before the clock is fixed: its receipts keep real time
from digest.cli import cli
from digest.lists import DAYS
from digest.models import utcnow

ADA = "ada@example.org"
# the fixed clock: the first minute of the day the test runs (the bundled sample papers are
# first seen when they are loaded, and a daily edition picks from the last two days' only)
TODAY = dt.datetime.combine(utcnow().date(), dt.time(0, 1))
DUE_TODAY = f"weekly:{DAYS[TODAY.weekday()]}"
DUE_TOMORROW = f"weekly:{DAYS[(TODAY.weekday() + 1) % 7]}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A fresh install's database URL per name ("first", "second"), on each backend."""

    def make(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        return request.getfixturevalue("pg_url") if name == "first" else _second_pg(request)

    return make


def _second_pg(request: pytest.FixtureRequest) -> str:
    from conftest import PG_ADMIN_URL

    from digest.storage.database import scratch_database

    scratch = scratch_database(PG_ADMIN_URL, "digest_test")
    url = scratch.__enter__()
    request.addfinalizer(lambda: scratch.__exit__(None, None, None))
    return url


def install(settings, smtp_sink, url: str) -> Callable[..., Result]:
    """`digest ARGS...` against one install, sending to the test's SMTP server."""
    runner = CliRunner()
    env = {
        "DIGEST_DATA_DIR": str(settings.data_dir),
        "DIGEST_DATABASE_URL": url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp_sink.port),
    }

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    invoke("db", "upgrade")
    return invoke


def test_one_reader_on_three_lists_gets_todays_two_and_keeps_them_apart(
    settings, smtp_sink, database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("digest.models.utcnow", lambda: TODAY)  # what `run --now` plans for
    digest = install(settings, smtp_sink, database("first"))
    digest("lists", "add", "ml-weekly", "--title", "ML Weekly", "--cadence", DUE_TODAY)
    digest(
        "lists", "add", "bots", "--title", "Robots", "--cadence", DUE_TOMORROW,
        "--sender", "Robots <robots@example.org>", "--private",
    )  # fmt: skip
    for slug in ("daily", "ml-weekly", "bots"):
        digest("subscribers", "add", ADA, "--list", slug, "-t", "agents", "-t", "robotics")

    shown = digest("lists").output
    assert "ml-weekly  ML Weekly" in shown and DUE_TOMORROW in shown and "1 active" in shown

    digest("run", "--now", "--offline")

    sent = [received.message() for received in smtp_sink.handler.received]
    assert sorted(m["List-Id"] for m in sent) == [
        "ML Weekly <ml-weekly.digest.localhost>",
        "Paper Digest <daily.digest.localhost>",
    ]
    weekly = next(m for m in sent if "ml-weekly" in m["List-Id"])
    assert weekly["Subject"].startswith("ML Weekly: ") and "ML Weekly" in _html(weekly)
    assert not next(m for m in sent if m is not weekly)["Subject"].startswith("Paper Digest")

    digest("run", "--now", "--offline")  # again the same day: nothing twice
    assert len(smtp_sink.handler.received) == 2

    # the figures, per list
    listing = digest("deliveries").output
    assert "  daily: sent 1" in listing and "  ml-weekly: sent 1" in listing
    assert "  bots: none" in listing
    assert "totals: sent 1" in digest("deliveries", "--list", "ml-weekly").output
    receipt = digest("runs", "show", "1").output
    assert "list daily: the digests it planned, now: sent 1" in receipt
    assert "list ml-weekly: the digests it planned, now: sent 1" in receipt
    assert "no votes on bots" in digest("feedback", "--list", "bots").output

    # a backup of every subscription, states included, into a fresh install
    digest("subscribers", "pause", ADA, "--list", "bots")
    backup = tmp_path / "backup.csv"
    digest("subscribers", "export", "-o", str(backup))
    fresh = install(settings, smtp_sink, database("second"))
    fresh("lists", "add", "ml-weekly", "--title", "ML Weekly", "--cadence", DUE_TODAY)
    fresh("lists", "add", "bots", "--title", "Robots", "--cadence", DUE_TOMORROW)
    assert "created 3" in fresh("subscribers", "import", str(backup)).output
    assert fresh("subscribers", "export").output == backup.read_text()
    assert "[paused]" in fresh("subscribers", "show", ADA, "--list", "bots").output

    # one click in the weekly digest's header unsubscribes from that list only
    _one_click(settings, database("first"), weekly["List-Unsubscribe"])
    shown = {slug: digest("subscribers", "show", ADA, "--list", slug).output for slug in
             ("daily", "ml-weekly", "bots")}  # fmt: skip
    assert "[active]" in shown["daily"] and "[unsubscribed]" in shown["ml-weekly"]
    assert "[paused]" in shown["bots"]


def test_unknown_lists_and_bad_cadences_are_one_clear_line(run, settings) -> None:
    from conftest import one_error_line

    run("subscribers", "add", ADA, "-t", "agents")
    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}
    assert "no list named 'nope'" in one_error_line(
        CliRunner().invoke(cli, ["subscribers", "show", ADA, "--list", "nope"], env=env)
    )
    for args, said in [
        (["lists", "add", "x", "--title", "X", "--cadence", "monthly"], "is not a cadence"),
        (["lists", "add", "x", "--title", "X", "--cadence", "weekly:someday"], "is not a cadence"),
        (["lists", "add", "X Y", "--title", "X"], "is not a list slug"),
        (["lists", "add", "x", "--title", "X", "--source", "rss"], "is not a source"),
        (["subscribers", "set", ADA, "--cadence", "hourly"], "is not a cadence"),
        (["run", "--now", "--list", "nope"], "no list named 'nope'"),
        (["preview", ADA, "--list", "nope"], "no list named 'nope'"),
        (["lists", "remove", "daily", "--yes"], "default list"),
    ]:
        assert said in one_error_line(CliRunner().invoke(cli, args, env=env)), args


def test_removing_a_list_with_readers_needs_yes_and_says_how_many(run) -> None:
    run("lists", "add", "bots", "--title", "Robots")
    run("subscribers", "add", ADA, "--list", "bots", "-t", "agents")
    refused = run("lists", "remove", "bots", code=1).output
    assert "bots has 1 reader(s)" in refused and "--yes" in refused
    assert (
        "removed list bots and 1 subscription(s)" in run("lists", "remove", "bots", "--yes").output
    )


def test_an_import_rejects_rows_on_unknown_lists_and_second_rows_of_one_subscription(
    run, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,topics,list\nada@example.org,agents,\nbo@example.org,agents,nope\n"
        "ada@example.org,robotics,daily\n"
    )
    output = run("subscribers", "import", str(people), code=1).output
    assert "bo@example.org: rejected: no list named 'nope'" in output
    assert "ada@example.org: rejected: a second row for the list daily" in output
    assert "created 1" in output


def _html(message) -> str:
    return message.get_body(("html",)).get_content()


def _one_click(settings, url: str, header: str) -> None:
    """What a mail provider does with RFC 8058's header: POST to its https link."""
    from digest.settings import load_settings
    from digest.storage import Storage
    from digest.web.app import create_app

    link = next(part.strip("<> ") for part in header.split(",") if "/unsubscribe/" in part)
    config = load_settings(data_dir=settings.data_dir, database_url=url)
    store = Storage.from_url(url)
    app = create_app(config, store, fakeredis.FakeRedis())
    path = "/" + link.split("/", 3)[3]
    answer = app.test_client().post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200, answer.text
    store.dispose()
