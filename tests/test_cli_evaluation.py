"""`digest-eval`, the ranking evaluation command: its failures are one clear line too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import one_error_line

from digest.cli.evaluation import cli
from digest.settings import Settings


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


def test_python_m_digest_evaluation_is_digest_eval() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "digest.evaluation", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "digest-eval rank-eval --papers" in done.stdout
    assert {"rank", "rank-eval"} == set(cli.commands)
