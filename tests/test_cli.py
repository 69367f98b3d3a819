"""The admin CLI end to end on SQLite (the embedded default), driven through click's runner."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from conftest import record_sent_digest

from digest.cli import cli
from digest.models import utcnow
from digest.settings import Settings
from digest.sources import PaperRecord
from digest.storage import Storage


@pytest.fixture
def run(settings: Settings):
    runner = CliRunner()
    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


def test_help_teaches_with_examples(run) -> None:
    top = run("--help").output
    assert "digest run --now" in top and "DIGEST_" in top
    assert "email, topics (separated by ';')" in run("subscribers", "import", "--help").output


def test_add_list_show_pause_resume_remove(run) -> None:
    run(
        "subscribers",
        "add",
        "Ada@Example.org",
        "-t",
        "Graph Neural Networks",
        "-t",
        "RL",
        "--send-hour",
        "9",
    )
    listing = run("subscribers", "list", "--format", "json").output
    assert json.loads(listing) == [
        {
            "email": "ada@example.org",
            "topics": ["graph neural networks", "rl"],
            "timezone": "UTC",
            "send_hour": 9,
            "max_papers": 5,
            "status": "active",
        }
    ]
    assert "09:00 UTC" in run("subscribers", "show", "ada@example.org").output
    assert "paused" in run("subscribers", "pause", "ada@example.org").output
    assert "active" in run("subscribers", "resume", "ADA@example.org").output
    assert (
        "max papers: 8" in run("subscribers", "set", "ada@example.org", "--max-papers", "8").output
    )
    run("subscribers", "remove", "ada@example.org", "--yes")
    assert "0 subscriber(s)" in run("subscribers", "list").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["subscribers", "add", "not-an-email", "-t", "rl"], "Error: invalid email 'not-an-email'"),
        (["subscribers", "add", "a@example.org"], "Error: at least one topic is required"),
        (
            ["subscribers", "add", "a@example.org", "-t", "rl", "--timezone", "Mars/Base"],
            "Error: unknown time zone",
        ),
        (
            ["subscribers", "show", "nobody@example.org"],
            "Error: no subscriber with email nobody@example.org",
        ),
        (["topics", "rename", "rl", "rl"], "Error: the old and new topic are the same"),
    ],
)
def test_bad_input_is_one_clear_line_and_non_zero_exit(run, args: list[str], message: str) -> None:
    result = run(*args, code=1)
    assert message in result.output
    assert "Traceback" not in result.output


def test_invalid_setting_names_the_variable(settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "list"], env={"DIGEST_SMTP_PORT": "lots"})
    assert result.exit_code == 1
    assert "DIGEST_SMTP_PORT" in result.output and "Traceback" not in result.output


def test_unreachable_database_is_a_clear_error(settings: Settings) -> None:
    result = CliRunner().invoke(
        cli,
        ["--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none", "subscribers", "list"],
    )
    assert result.exit_code == 1
    assert "cannot reach the database" in result.output


def make_big_csv(path: Path, good: int = 10_000) -> dict[str, int]:
    """10,000 valid rows plus every kind of bad row, with a BOM and CRLF line endings."""
    lines = ["email,topics,timezone,send_hour,max_papers"]
    expected = {"bad_syntax": 0, "duplicate": 0, "too_many_topics": 0, "empty": 0}
    for i in range(good):
        lines.append(f"user{i}@example.org,topic {i % 300};graph neural networks,UTC,{i % 24},5")
        if i % 100 == 1:
            lines.append(f"user{i}@@example.org,rl,,,")
            expected["bad_syntax"] += 1
        if i % 100 == 2:
            lines.append(f"USER{i}@example.org,rl,,,")
            expected["duplicate"] += 1
        if i % 100 == 3:
            lines.append(f"many{i}@example.org,t1;t2;t3;t4;t5;t6,,,")
            expected["too_many_topics"] += 1
        if i % 100 == 4:
            lines.append("")
            expected["empty"] += 1
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    return expected


def test_import_10k_rows_reports_every_rejection_and_reimport_changes_nothing(
    run, tmp_path: Path
) -> None:
    csv_path = tmp_path / "people.csv"
    expected = make_big_csv(csv_path)
    rejected = expected["bad_syntax"] + expected["duplicate"] + expected["too_many_topics"]

    dry = run("subscribers", "import", str(csv_path), "--dry-run", code=1)
    assert f"would have created 10000, updated 0, unchanged 0, rejected {rejected}" in dry.output
    assert "0 subscriber(s)" in run("subscribers", "list").output

    report = tmp_path / "rejected.txt"
    first = run("subscribers", "import", str(csv_path), "--report", str(report), code=1)
    assert f"created 10000, updated 0, unchanged 0, rejected {rejected}" in first.output
    assert sum(": rejected: " in line for line in first.stderr.splitlines()) == 20
    rejection_lines = report.read_text(encoding="utf-8").splitlines()
    assert len(rejection_lines) == rejected
    assert sum("duplicate of line" in line for line in rejection_lines) == expected["duplicate"]
    assert (
        sum("more than 5 topics given" in line for line in rejection_lines)
        == expected["too_many_topics"]
    )
    assert sum("invalid email" in line for line in rejection_lines) == expected["bad_syntax"]
    # line numbers are the file's: header is line 1, user0 line 2, user1 line 3, its bad twin line 4
    assert rejection_lines[0].startswith("line 4: rejected: invalid email 'user1@@example.org'")

    second = run("subscribers", "import", str(csv_path), code=1)
    assert f"created 0, updated 0, unchanged 10000, rejected {rejected}" in second.output
    topics = run("topics").output
    assert "graph neural networks  10000" in topics


def test_export_then_import_round_trip(run, tmp_path: Path) -> None:
    run("subscribers", "add", "a@example.org", "-t", "rl", "--timezone", "Asia/Tokyo")
    run("subscribers", "add", "b@example.org", "-t", "nlp", "-t", "speech")
    out = tmp_path / "export.csv"
    run("subscribers", "export", "-o", str(out))
    assert "unchanged 2, rejected 0" in run("subscribers", "import", str(out)).output


def test_import_rejects_non_utf8_file(run, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,topics\nj\xe9r\xf4me@example.org,rl\n".encode("latin-1"))
    assert "is not UTF-8 text" in run("subscribers", "import", str(path), code=1).output


def test_web_refuses_to_serve_a_public_site_with_the_development_key(settings: Settings) -> None:
    result = CliRunner().invoke(
        cli,
        ["web", "--port", "8765"],
        env={
            "DIGEST_DATA_DIR": str(settings.data_dir),
            "DIGEST_BASE_URL": "https://digest.example.org",
        },
    )
    assert result.exit_code == 1 and "serving on" not in result.output
    assert result.output.startswith("Error: DIGEST_SECRET_KEY is not set")


def test_a_restored_backup_keeps_everyones_consent(run, tmp_path: Path) -> None:
    for email in ("a@example.org", "p@example.org", "u@example.org", "b@example.org"):
        run("subscribers", "add", email, "-t", "rl")
    run("subscribers", "pause", "p@example.org")
    from digest.models import Subscriber

    backup = tmp_path / "backup.csv"
    store = _store(tmp_path)
    store.subscribers.set_status("u@example.org", "unsubscribed")
    with store.db.session() as session:
        session.query(Subscriber).filter_by(email="b@example.org").update({"status": "bounced"})
    run("subscribers", "export", "-o", str(backup))
    fresh = {"DIGEST_DATA_DIR": str(tmp_path / "fresh")}
    CliRunner().invoke(
        cli, ["subscribers", "import", str(backup)], env=fresh, catch_exceptions=False
    )
    restored = {
        s["email"]: s["status"]
        for s in json.loads(
            CliRunner().invoke(cli, ["subscribers", "list", "--format", "json"], env=fresh).output
        )
    }
    assert restored == {
        "a@example.org": "active",
        "p@example.org": "paused",
        "u@example.org": "unsubscribed",
        "b@example.org": "bounced",
    }


def test_an_import_never_reactivates_an_opt_out(run, tmp_path: Path) -> None:
    run("subscribers", "add", "u@example.org", "-t", "rl")
    _store(tmp_path).subscribers.set_status("u@example.org", "unsubscribed")
    file = tmp_path / "people.csv"
    file.write_text(
        "email,topics,status\nu@example.org,spam,active\nn@example.org,rl,\n", encoding="utf-8"
    )
    output = run("subscribers", "import", str(file)).output
    assert "created 1" in output and "kept 1 (unsubscribed or bounced" in output
    sub = _store(tmp_path).subscribers.get("u@example.org")
    assert (sub.status, sub.topics) == ("unsubscribed", ("rl",))
    refused = run("subscribers", "resume", "u@example.org", code=1).output
    assert "--force" in refused and "unsubscribed" in refused
    assert "is active" in run("subscribers", "resume", "u@example.org", "--force").output


def _store(tmp_path: Path):
    from digest.storage import Storage

    return Storage.from_url(f"sqlite:///{tmp_path / 'var' / 'digest.db'}")


def test_a_utf16_file_gets_a_hint(run, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("email,topics\na@example.org,rl\n".encode("utf-16"))
    output = run("subscribers", "import", str(path), code=1).output
    assert "UTF-16" in output and "UTF-8" in output and "Traceback" not in output


def test_rejections_are_listed_up_to_20_and_all_go_to_the_report(run, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("email,topics\n" + "".join(f"bad{i},rl\n" for i in range(30)), encoding="utf-8")
    report = tmp_path / "rejected.txt"
    output = run("subscribers", "import", str(path), "--report", str(report), code=1).output
    assert output.count(": rejected:") == 20 and "and 10 more" in output
    assert len(report.read_text(encoding="utf-8").splitlines()) == 30


@pytest.mark.parametrize(
    "args",
    [
        ["subscribers", "export", "-o", "no/such/folder/backup.csv"],
        ["preview", "ada@example.org", "--out", "no/such/folder/d.html"],
        ["preview", "ada@example.org", "--eml", "no/such/folder/d.eml"],
    ],
)
def test_writing_into_a_missing_folder_is_one_clear_line(run, args: list[str]) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "rl")
    output = run(*args, code=1).output
    assert "Error: cannot write no/such/folder/" in output and "No such file or directory" in output
    assert "Traceback" not in output


def one_error_line(result: Result) -> str:
    """The command failed as expected: exit 1, one 'Error:' line, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"DIGEST_DATABASE_URL": "nonsense"}, ["subscribers", "list"], "DIGEST_DATABASE_URL"),
        (
            {"DIGEST_DATABASE_URL": "foo://bar"},
            ["subscribers", "list"],
            "like postgresql+psycopg://user@host/db, or empty for SQLite in DIGEST_DATA_DIR",
        ),
        (
            {"DIGEST_DATABASE_URL": "mysql://u@h/db"},
            ["subscribers", "list"],
            "driver that is not installed (MySQLdb); Paper Digest supports PostgreSQL",
        ),
        (
            {"DIGEST_SENDER": "Paper Digest <not an address>"},
            ["subscribers", "list"],
            "DIGEST_SENDER",
        ),
        (
            {"DIGEST_BASE_URL": "ftp://digest.example.org"},
            ["subscribers", "list"],
            "DIGEST_BASE_URL",
        ),
        ({"DIGEST_REDIS_URL": "nonsense"}, ["subscribers", "list"], "DIGEST_REDIS_URL"),
        ({"DIGEST_ARXIV_ANNOUNCE_TYPES": "new,bogus"}, ["subscribers", "list"], "bogus"),
        ({}, ["deliveries", "--limit", "-1"], "--limit"),
        ({}, ["papers", "--limit", "-5"], "--limit"),
        ({}, ["web", "--port", "99999"], "--port"),
        ({}, ["smtp-sink", "--port", "99999"], "--port"),
    ],
)
def test_every_expected_failure_is_one_clear_line(
    settings: Settings, env: dict[str, str], args: list[str], says: str
) -> None:
    result = CliRunner().invoke(cli, args, env={"DIGEST_DATA_DIR": str(settings.data_dir), **env})
    assert says in one_error_line(result)


def test_a_data_dir_that_is_a_file_or_cannot_be_made(settings: Settings, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    for data_dir in (blocker, blocker / "below"):
        result = CliRunner().invoke(
            cli, ["subscribers", "list"], env={"DIGEST_DATA_DIR": str(data_dir)}
        )
        assert "DIGEST_DATA_DIR" in one_error_line(result)


def test_a_binary_env_file_is_one_clear_line(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"\xff\xfe\x00\x01binary")
    assert ".env" in one_error_line(CliRunner().invoke(cli, ["subscribers", "list"]))


def test_rank_eval_on_a_binary_qrels_file(settings: Settings, tmp_path: Path) -> None:
    papers, profiles, qrels = tmp_path / "p.json", tmp_path / "t.json", tmp_path / "q.bin"
    papers.write_text('[{"id": "1", "title": "t"}]', encoding="utf-8")
    profiles.write_text('[{"qid": "a", "topics": ["rl"]}]', encoding="utf-8")
    qrels.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    args = [
        "rank-eval",
        "--no-semantic",
        "--papers",
        str(papers),
        "--profiles",
        str(profiles),
        "--qrels",
        str(qrels),
    ]
    assert "q.bin" in one_error_line(CliRunner().invoke(cli, args))


@pytest.mark.parametrize("command", ["web", "smtp-sink"])
def test_a_busy_port_is_one_clear_line_before_anything_says_serving(
    settings: Settings, command: str
) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, [command, "--port", str(port)], env={"DIGEST_DATA_DIR": str(settings.data_dir)}
        )
    assert str(port) in one_error_line(result) and "serving on" not in result.output


def test_the_data_does_not_depend_on_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cron job run from $HOME must find the same list as the admin in the project folder."""
    import os

    for key in list(os.environ):
        if key.startswith("DIGEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert (
        CliRunner().invoke(cli, ["subscribers", "add", "a@example.org", "-t", "rl"]).exit_code == 0
    )
    monkeypatch.chdir(tmp_path / "elsewhere")
    listing = CliRunner().invoke(cli, ["subscribers", "list"]).output
    assert "a@example.org" in listing
    assert (
        not (tmp_path / "project" / "var").exists()
        and not (tmp_path / "elsewhere" / "var").exists()
    )
    assert (tmp_path / "home" / ".local" / "share" / "paper-digest" / "digest.db").exists()


def test_doctor_on_a_healthy_install(settings: Settings, smtp_sink, redis_url: str) -> None:
    env = {
        "DIGEST_DATA_DIR": str(settings.data_dir),
        "DIGEST_REDIS_URL": redis_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": str(smtp_sink.port),
        "DIGEST_SMTP_PASSWORD": "hunter2",
        "DIGEST_SECRET_KEY": "s3cret-key",
    }
    CliRunner().invoke(
        cli, ["subscribers", "list"], env=env
    )  # the embedded database migrates itself
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "s3cret-key" not in result.output
    assert "DIGEST_SMTP_PASSWORD=********" in result.output
    for check in ("database", "redis", "smtp", "ranking model", "last runs"):
        assert f"{check}" in result.output
    assert "FAIL" not in result.output and "answered EHLO" in result.output


def test_doctor_fails_on_what_an_operator_must_fix(settings: Settings, pg_url: str) -> None:
    env = {
        "DIGEST_DATA_DIR": str(settings.data_dir),
        "DIGEST_DATABASE_URL": pg_url,
        "DIGEST_SMTP_HOST": "127.0.0.1",
        "DIGEST_SMTP_PORT": "1",
    }
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(
        line.strip().startswith("FAIL  database") and "digest db upgrade" in line for line in lines
    )
    assert any(line.strip().startswith("FAIL  smtp") for line in lines)
    assert "check(s) failed" in result.output


def every_command(group: click.Group = cli, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))
        else:
            yield (*path, name), command


@pytest.mark.parametrize("path", [path for path, _ in every_command()], ids=" ".join)
def test_every_command_has_a_one_line_summary_and_a_runnable_example(path: tuple[str, ...]) -> None:
    output = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80).output
    command = dict(every_command())[path]
    assert not command.get_short_help_str(limit=100).endswith("..."), "the summary fits one line"
    lines = [line.strip() for line in output.splitlines()]
    heading = next(
        i for i, line in enumerate(lines) if line in ("Example:", "Examples:", "Start here:")
    )
    example = lines[heading + 1]
    assert example.startswith(("digest ", "DIGEST_")), output
    assert f"digest {' '.join(path)}".strip() in example, "the example runs this very command"


def test_progress_labels_stay_out_of_logs(run, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,topics\na@example.org,rl\n", encoding="utf-8")
    output = run("subscribers", "import", str(path)).output
    assert "importing" not in output and output.startswith("created 1")


def test_feedback_counts_votes_by_the_topic_each_paper_was_sent_for(
    run, settings: Settings
) -> None:
    assert "no votes in the last 7 days" in run("feedback").output
    run("subscribers", "add", "ada@example.org", "-t", "rl", "-t", "agents")
    run("subscribers", "add", "bob@example.org", "-t", "rl")
    store = Storage.open(settings.resolved_database_url)
    store.papers.upsert(
        [
            PaperRecord("2611.00001", "Policy gradients"),
            PaperRecord("2611.00002", "Tool agents"),
            PaperRecord("2611.00003", "Trending thing"),
        ]
    )
    today = utcnow().date()
    ada, bob = (store.subscribers.get(e) for e in ("ada@example.org", "bob@example.org"))
    picks = [
        {"arxiv_id": "2611.00001", "topic": "rl", "reason": "r"},
        {"arxiv_id": "2611.00002", "topic": "agents", "reason": "r"},
        {"arxiv_id": "2611.00003", "topic": None, "reason": None},
    ]
    record_sent_digest(store, ada.id, today, picks)
    record_sent_digest(store, bob.id, today, picks[:1])
    now = utcnow()
    store.feedback.record_vote(ada.id, "2611.00001", 1, now)
    store.feedback.record_vote(bob.id, "2611.00001", 1, now)
    store.feedback.record_vote(ada.id, "2611.00002", -1, now)
    store.feedback.record_vote(ada.id, "2611.00003", 1, now)
    store.feedback.record_vote(
        ada.id, "2611.00099", -1, now - dt.timedelta(days=30)
    )  # too old to count
    out = run("feedback").output
    lines = [line.split() for line in out.splitlines()]
    assert (
        ["rl", "2", "0"] in lines
        and ["agents", "0", "1"] in lines
        and ["(trending)", "1", "0"] in lines
    )
    assert out.index("2611.00001") < out.index("2611.00003"), "the most liked paper first"
    assert "2611.00002" not in out.split("Most liked papers:")[1], (
        "a paper nobody liked is not listed"
    )
    assert "2611.00099" not in out


def test_a_paper_link_is_a_topic_and_an_unknown_one_offline_is_a_clear_error(
    settings: Settings,
) -> None:
    runner = CliRunner()
    env = {"DIGEST_DATA_DIR": str(settings.data_dir), "DIGEST_OFFLINE": "true"}
    unknown = runner.invoke(
        cli,
        ["subscribers", "add", "ada@example.org", "-t", "https://arxiv.org/abs/2611.00042"],
        env=env,
    )
    assert unknown.exit_code == 1
    assert "Error: paper 2611.00042 is not stored here and DIGEST_OFFLINE" in unknown.output
    assert "ada@example.org" not in runner.invoke(cli, ["subscribers", "list"], env=env).output
    Storage.open(settings.resolved_database_url).papers.upsert(
        [PaperRecord("2611.00042", "Sparse attention for long documents")]
    )
    added = runner.invoke(
        cli,
        [
            "subscribers",
            "add",
            "ada@example.org",
            "-t",
            "rl",
            "-t",
            "https://huggingface.co/papers/2611.00042",
        ],
        env=env,
    )
    assert added.exit_code == 0 and "rl; arxiv:2611.00042" in added.output


def test_preview_lists_the_picks_and_counts_the_candidates(run, tmp_path: Path) -> None:
    import re

    from conftest import FEEDS

    from digest.sources import parse_response

    day = FEEDS / "hf_daily_papers_2026-07-13.json"
    run("fetch", "--from-file", str(day))
    run("subscribers", "add", "ada@example.org", "-t", "agents", "-t", "reinforcement learning")
    eml = tmp_path / "d.eml"
    output = run("preview", "ada@example.org", "--eml", str(eml)).output
    matched, candidates = map(
        int, re.search(r"(\d+) matched .* from (\d+) candidate", output).groups()
    )
    assert candidates == len({p.arxiv_id for p in parse_response(day.read_bytes()).papers})
    assert matched >= 2 and re.findall(r"\n  (\d+)\. ", output) == [
        str(n + 1) for n in range(matched)
    ]
    assert b"Subject: " in eml.read_bytes() and output.startswith("Subject: ")
