"""How fast `digest` answers --help and --version: each command run N times in a fresh process,
median wall time, against the interpreter's bare start and `import click` in the same run; and
whether the 0.5 s target is met.

Run: .venv/bin/python -m bench.bench_startup [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET = 0.5  # seconds, for `digest --help` and `digest --version`
BASELINES = {
    "python (bare start)": [sys.executable, "-c", "pass"],
    'python -c "import click"': [sys.executable, "-c", "import click"],
}
COMMANDS = (["--help"], ["--version"], ["subscribers", "--help"])


def digest_command() -> list[str]:
    """The installed `digest` script beside this interpreter, else `python -m digest`."""
    script = Path(sys.executable).with_name("digest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "digest"]


def median_seconds(argv: list[str], runs: int) -> float:
    """Median wall time of ``argv`` in a fresh process, after one unmeasured warm-up run
    (so every run finds the bytecode cached and the files in the page cache)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    digest = digest_command()
    print(f"median of {args.runs} runs each, fresh process every time")
    for name, argv in BASELINES.items():
        print(f"{name:<28} {median_seconds(argv, args.runs):6.3f} s")
    missed = []
    for command in COMMANDS:
        seconds = median_seconds([*digest, *command], args.runs)
        print(f"{'digest ' + ' '.join(command):<28} {seconds:6.3f} s")
        if command[0] in ("--help", "--version") and seconds >= TARGET:
            missed.append(" ".join(command))
    if missed:
        print(f"target {TARGET} s NOT met by: digest {', digest '.join(missed)}")
    else:
        print(f"target met: digest --help and --version answer in under {TARGET} s")


if __name__ == "__main__":
    main()
