"""`digest subscribers` and `digest topics` end to end on SQLite, through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.settings import Settings
from digest.sources import PaperRecord
from digest.storage import Storage


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
            "list": "daily",
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


def test_progress_labels_stay_out_of_logs(run, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("email,topics\na@example.org,rl\n", encoding="utf-8")
    output = run("subscribers", "import", str(path)).output
    assert "importing" not in output and output.startswith("created 1")


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


@pytest.mark.parametrize("status", ["unsubscribed", "bounced"])
def test_adding_an_opted_out_address_says_so_and_how_to_resume(
    run, settings: Settings, status: str
) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "rl")
    store = Storage.from_url(settings.resolved_database_url)
    store.subscribers.set_status("ada@example.org", status)
    store.db.engine.dispose()
    out = run("subscribers", "add", "ada@example.org", "-t", "rl", code=1).output
    assert "already subscribed" not in out
    assert f"ada@example.org is {status}" in out
    assert "digest subscribers resume --force ada@example.org" in out
    run("subscribers", "resume", "ada@example.org", "--force")
    assert (
        "ada@example.org is already subscribed"
        in run("subscribers", "add", "ada@example.org", "-t", "rl", code=1).output
    )
