"""How commands read and write the user's files and show results: tables, progress, errors
that name the file."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click


def progress_bar(iterable: Any = None, label: str = "", **options: Any) -> Any:
    """A progress bar on stderr when it is a terminal; in a log or a pipe, nothing at all
    (click would still print the label there: a stray line in every cron mail)."""
    if sys.stderr.isatty():
        return click.progressbar(iterable, label=label, file=sys.stderr, **options)
    return contextlib.nullcontext(_Silent(iterable))


class _Silent:
    """What a progress bar offers its user (iteration, update), showing nothing."""

    def __init__(self, iterable: Any) -> None:
        self.iterable = iterable if iterable is not None else ()

    def __iter__(self) -> Any:
        return iter(self.iterable)

    def update(self, _steps: int) -> None:
        pass


def read_utf8_text(path: Path) -> str:
    """A text file that must be UTF-8, with a hint for what spreadsheet programs save instead."""
    from digest.subscriptions import InvalidInput

    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:200].count(b"\x00") > 10:
            raise InvalidInput(
                f"{path} is UTF-16 text (what 'Unicode Text' exports save): save it as "
                "'CSV UTF-8' instead"
            ) from None
        raise InvalidInput(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as 'CSV UTF-8'"
        ) from None


def write_output(path: Path, content: str | bytes) -> None:
    """Write a file the user named, or say in one line why it cannot be written."""
    from digest.subscriptions import InvalidInput

    try:
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table; wide cells are cut so each row stays on one line."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: object, limit: int = 60) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
