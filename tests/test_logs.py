"""Log lines: text for people, one JSON object per line for collectors (DIGEST_LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from conftest import FEEDS

from digest.logs import JsonFormatter, formatter


def _record(message: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("digest.test", logging.ERROR, __file__, 1, message, (), exc_info)


def test_a_json_line_carries_time_level_logger_message_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        line = JsonFormatter().format(_record("fetch “hf” failed", sys.exc_info()))
    parsed = json.loads(line)
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "ERROR",
        "digest.test",
        "fetch “hf” failed",
    )
    assert parsed["time"].endswith("+00:00") and "ValueError: boom" in parsed["exception"]
    assert "\n" not in line, "one object per line, whatever the traceback holds"


def test_the_setting_picks_the_format() -> None:
    assert isinstance(formatter("json"), JsonFormatter)
    assert isinstance(formatter(" JSON "), JsonFormatter)
    assert not isinstance(formatter("text"), JsonFormatter)


def test_the_cli_logs_json_lines_when_asked(tmp_path: Path) -> None:
    """A real `digest -v fetch --from-file` in its own process: every stderr line parses, and
    the source's outcome is among them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env |= {"DIGEST_DATA_DIR": str(tmp_path), "DIGEST_LOG_FORMAT": "json"}
    feed = FEEDS / "hf_daily_papers_2026-07-13.json"
    done = subprocess.run(
        [sys.executable, "-m", "digest", "-v", "fetch", "--from-file", str(feed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines, "-v logs at INFO"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
