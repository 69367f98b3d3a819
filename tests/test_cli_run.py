"""`digest preview` and the files commands write, end to end on SQLite, through click's runner."""

from __future__ import annotations

from pathlib import Path

import pytest


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


def test_run_now_shows_its_embedding_progress_on_a_terminal(tmp_path: Path) -> None:
    """The first run on a fresh folder embeds what it fetched: on a terminal a progress bar
    says so on stderr, rather than a silence that looks hung."""
    import os
    import pty
    import subprocess
    import sys

    parent, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "digest", "run", "--now", "--offline"],
        env={**env, "DIGEST_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=child,
        timeout=300,
        check=False,
    )
    os.close(child)
    shown = b""
    while chunk := _read_ready(parent):
        shown += chunk
    os.close(parent)
    assert done.returncode == 0, done.stdout
    assert b"embedding candidate papers" in shown
    assert b"embedding" not in done.stdout


def _read_ready(fd: int) -> bytes:
    """What a pty holds now; b"" once it is drained (or its other end closed)."""
    import os
    import select

    if not select.select([fd], [], [], 0.5)[0]:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end is closed and nothing is left
        return b""


HF_DAY = "hf_daily_papers_2026-07-13.json"


def preview_order(run, email: str = "ada@example.org") -> list[str]:
    """The next digest's papers as `digest preview` lists them: (title start, reason) lines."""
    import re

    numbered = re.compile(r"^ +\d+\. ")
    lines = run("preview", email).output.splitlines()
    return [
        f"{numbered.sub('', title)[:40]} | {reason.strip()}"
        for title, reason in zip(lines, lines[1:], strict=False)
        if numbered.match(title)
    ]


AGENTS = [
    "UniClawBench: A Universal Benchmark for  | Matches “agents” in the title",
    "Remember When It Matters: Proactive Memo | Matches “agents” in the title",
    "Long-Horizon-Terminal-Bench: Testing the | Matches “agents” in the title",
    "Flow-ERD: Agent-type Aware Flow Matching | Matches “agents” in the title",
    "VaseMuseum: Digital Intelligent Museum f | Matches “agents” in the abstract",
]


def test_an_exclusion_set_from_the_cli_keeps_its_papers_out_of_the_next_digest(run) -> None:
    from conftest import FEEDS

    run("fetch", "--from-file", str(FEEDS / HF_DAY))
    run("subscribers", "add", "ada@example.org", "-t", "agents")
    assert preview_order(run) == AGENTS
    shown = run("subscribers", "set", "ada@example.org", "-t", "agents", "-t", "-benchmarks")
    assert "topics:     agents; not: benchmarks" in shown.output
    # "Benchmark" in its title: out; "Terminal-Bench" is no benchmark by word or meaning
    assert preview_order(run) == AGENTS[1:]


def test_a_followed_author_leads_the_next_digest_with_an_honest_reason(run) -> None:
    from conftest import FEEDS

    run("fetch", "--from-file", str(FEEDS / HF_DAY))
    # "Antonio Rodà" on Hugging Face: typed surname first, an initial, no accent
    run("subscribers", "add", "ada@example.org", "-t", "agents", "-t", "author: Roda, A.")
    assert preview_order(run) == [
        "A Quantized Native Runtime for On-Device | By Antonio Rodà, whom you follow",
        *AGENTS[:4],
    ]
    run("subscribers", "set", "ada@example.org", "-t", "agents", "-t", "author: Yann LeCun")
    assert preview_order(run) == AGENTS, "no paper of theirs today: no reason names them"
