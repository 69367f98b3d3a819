"""The shared text helper: cutting a text at a word, as the email and the reasons do."""

from __future__ import annotations

import pytest

from digest.text import snippet


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("exactly ten", 11, "exactly ten"),  # at the limit: whole, no ellipsis
        ("a  spaced\n text", 100, "a spaced text"),
        ("-a b, c d", 6, "-a b…"),  # punctuation left at the cut goes, at the start it stays
        ("wordX, more text", 7, "wordX…"),
        ("alpha beta gamma", 12, "alpha beta…"),
    ],
)
def test_a_snippet_ends_on_a_whole_word_without_dangling_punctuation(
    text: str, limit: int, expected: str
) -> None:
    assert snippet(text, limit) == expected
