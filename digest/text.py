"""Plain-text helpers shared by the email and ranking's reasons. Pure."""

from __future__ import annotations

SNIPPET_CHARS = 320


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of a text (an abstract, a title in a reason), cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:.-")
    return cut + "…"
