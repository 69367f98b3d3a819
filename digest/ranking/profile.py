"""A reader's profile as ranking reads it, and as the preferences page says it back.

A reader's topics are of three kinds (:mod:`digest.subscriptions` parses them): subjects they
want, people they follow ("author: Yann LeCun") and subjects they exclude ("not: surveys").
The first two are scored against the day's papers as rows of one matrix; exclusions only keep
papers out. Their votes move the profile too (:mod:`digest.ranking.picks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from digest.ranking.authors import display_name
from digest.ranking.index import TopicIndex
from digest.ranking.picks import interest_groups
from digest.records import VoteRecord
from digest.subscriptions import excluded_subject, followed_author, interest_topics


@dataclass
class DayTopics:
    """Every distinct topic of the day's readers, each scored once: ``ranked`` (subjects and
    authors, rows of the score matrix) and ``subjects`` (what readers exclude, rows of
    :meth:`TopicIndex.excluded`)."""

    ranked: list[str]
    subjects: list[str]
    authors: dict[str, str] = field(default_factory=dict)  # author topic -> name followed

    @classmethod
    def of(cls, profiles: Sequence[Sequence[str]]) -> DayTopics:
        distinct = sorted({t for topics in profiles for t in topics})
        subjects = sorted({s for t in distinct if (s := excluded_subject(t)) is not None})
        authors = {t: name for t in distinct if (name := followed_author(t)) is not None}
        ranked = [t for t in distinct if excluded_subject(t) is None]
        return cls(ranked, subjects, authors)

    def __post_init__(self) -> None:
        self._row = {t: n for n, t in enumerate(self.ranked)}
        self._subject_row = {s: n for n, s in enumerate(self.subjects)}

    def rows(self, topics: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A reader's (ranked topic rows, excluded subject rows)."""
        ranked = tuple(self._row[t] for t in topics if t in self._row)
        subjects = (excluded_subject(t) for t in topics)
        return ranked, tuple(self._subject_row[s] for s in subjects if s is not None)


def interests(index: TopicIndex, topics: Sequence[str], max_papers: int) -> tuple[int, ...]:
    """The interest of each of a reader's ranked topics (:func:`interest_groups`), when it can
    matter: with more topics than papers, each interest gets a slot before any gets two.
    () (each topic its own interest, every one covered) otherwise, or without the model."""
    if len(topics) <= max_papers or index.vectors is None:
        return ()
    return interest_groups(index.topic_vectors(topics))


VOTE_TOPICS_SHOWN = 2  # "you voted up 4 papers close to “rl” and “agents”"


def describe_profile(topics: Sequence[str], votes: Sequence[VoteRecord]) -> str:
    """The profile in words, as the preferences page shows it back: "You follow: rl, agents;
    you voted up 4 papers close to “rl”; you exclude: surveys; authors: Yann LeCun." Votes are
    named by the topics the voted papers were sent for, as those are the reader's words."""
    parts = []
    followed = interest_topics(topics)
    if followed:
        parts.append(f"You follow: {', '.join(followed)}")
    for value, verb in ((1, "up"), (-1, "down")):
        said = [v for v in votes if v.value == value]
        if said:
            parts.append(f"you voted {verb} {_papers(len(said))}{_close_to(said)}")
    excluded = [s for t in topics if (s := excluded_subject(t)) is not None]
    if excluded:
        parts.append(f"you exclude: {', '.join(excluded)}")
    authors = [display_name(a) for t in topics if (a := followed_author(t)) is not None]
    if authors:
        parts.append(f"authors: {', '.join(authors)}")
    text = "; ".join(parts)
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def _papers(count: int) -> str:
    return f"{count} paper{'s' if count != 1 else ''}"


def _close_to(votes: Sequence[VoteRecord]) -> str:
    common = Counter(v.topic for v in votes if v.topic).most_common(VOTE_TOPICS_SHOWN)
    if not common:
        return ""
    return " close to " + " and ".join(f"“{topic}”" for topic, _ in common)
