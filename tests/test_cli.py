"""The admin CLI end to end on SQLite (the embedded default), driven through click's runner:
what every command shares (help, settings, errors, where the data lives, a fast start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import one_error_line

from digest.cli import cli
from digest.settings import Settings


def test_help_teaches_with_examples(run) -> None:
    top = run("--help").output
    assert "digest run --now" in top and "DIGEST_" in top
    assert "email, topics (separated by ';')" in run("subscribers", "import", "--help").output


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


HEAVY = (
    "numpy",
    "scipy",
    "sqlalchemy",
    "psycopg",
    "celery",
    "redis",
    "flask",
    "waitress",
    "premailer",
    "jinja2",
    "httpx",
    "feedparser",
    "pydantic",
    "email_validator",
    "aiosmtpd",
)


def packages_loaded_by(*args: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after `digest ARGS...`."""
    probe = (
        "import sys\n"
        "from digest.cli import main\n"
        f"sys.argv = ['digest', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines()[-1].split())


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["subscribers", "--help"]])
def test_help_and_version_load_no_heavy_package(args: list[str]) -> None:
    """They answer at once: only click and the command modules, no database, web or model."""
    assert packages_loaded_by(*args) & set(HEAVY) == set()


def test_the_probe_sees_a_heavy_package() -> None:
    """A command's own help lists its choices, which come from the modules that define them."""
    assert "sqlalchemy" in packages_loaded_by("deliveries", "--help")
