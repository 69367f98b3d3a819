"""Reading the forms' fields: every field checked at once, so a form shows all its problems
together, each beside its field, in plain words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from digest.ingestion import require_topic_papers
from digest.subscriptions import InvalidInput, names_an_author, normalize_topics
from digest.web.context import WebContext


def topic_lines(raw: str) -> list[str]:
    """The topics field: one per line, commas also accepted, except in a followed author's
    line ("author: LeCun, Yann" is one name); blank lines ignored."""
    topics = []
    for line in raw.splitlines():
        topics += [line] if names_an_author(line) else line.split(",")
    return [t for t in topics if t.strip()]


def validated(**checks: Callable[[], Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every field's check, so a form shows all its problems at once: the valid values, and
    per field the problem in plain words, to show beside it."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, check in checks.items():
        try:
            values[name] = check()
        except InvalidInput as exc:
            errors[exc.field or name] = exc.plain
    return values, errors


def known_topics(ctx: WebContext, raw: str) -> tuple[str, ...]:
    """The topics field, normalised; a paper it names by id or link is looked up on arXiv
    when it is not stored yet."""
    topics = normalize_topics(topic_lines(raw))
    require_topic_papers(ctx.store.papers, ctx.settings, topics, ctx.lookups)
    return topics


def optional(check: Callable[[str], Any], raw: str | None) -> Callable[[], Any]:
    """A check for a field that may be left blank (then: the default)."""
    return lambda: check(raw) if raw else None
