"""`digest doctor` against real Redis, SMTP and PostgreSQL servers."""

from __future__ import annotations

from click.testing import CliRunner

from digest.cli import cli
from digest.settings import Settings


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


def test_doctor_counts_a_fetch_from_a_file_as_a_fetch(settings: Settings) -> None:
    from conftest import FEEDS

    env = {"DIGEST_DATA_DIR": str(settings.data_dir)}
    day = FEEDS / "hf_daily_papers_2026-07-13.json"
    fetched = CliRunner().invoke(cli, ["fetch", "--from-file", str(day)], env=env)
    assert fetched.exit_code == 0, fetched.output
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    assert "never fetched" not in result.output and "last fetch: " in result.output
