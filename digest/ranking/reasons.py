"""Why a paper was picked, in one line a person would write, naming at most one topic.

The evidence is what the paper really says: the topic found as a phrase ("Matches “state
space models” in the abstract"); else two or more words of a longer topic ("Shares words
with your topic “…”"); else its meaning ("Close to your topic “speech recognition”"); for a
"more like this paper" topic, that paper ("Similar to “…”"). A pick close to a paper the
reader voted up says that instead. Never a list of lone words: a word of a phrase on its
own ("state", "networks") is not why a paper is about the phrase.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from digest.ranking.authors import display_name
from digest.ranking.index import TopicIndex
from digest.ranking.picks import Feedback, PickTable, SubscriberRequest
from digest.ranking.words import subjects, topic_phrases
from digest.text import snippet

LIKED_TITLE_CHARS = 60  # a paper named in a reason (liked, or a topic): the start of its title
EXPLAIN_BLOCK = 4096  # table rows the Explainer reads into lists at once


PLACES = ("the title", "the abstract", "Hugging Face's keywords")


@dataclass(frozen=True)
class Evidence:
    """Why a paper matched a topic: the topic (or the subject of it the paper has, as the
    reader typed it) and where the paper has it; else that it is close in meaning; else the
    paper a "more like this paper" topic names."""

    topic: str
    quoted: str | None = None  # the topic, or one subject it lists, found as a phrase
    place: int | None = None  # where: an index into PLACES
    similar_to: str | None = None  # the title of the paper a "more like this paper" topic names
    shares_words: bool = False  # no phrase, but two or more of the topic's words
    author: str | None = None  # the followed person who wrote the paper, as a reason names them

    @property
    def matched(self) -> tuple[str, ...]:
        return (self.quoted,) if self.quoted else ()

    def sentence(self) -> str:
        """ "Matches “state space models” in the abstract", as a person would say it."""
        if self.author is not None:
            return f"By {self.author}, whom you follow"
        if self.similar_to is not None:
            return f"Similar to “{snippet(self.similar_to, LIKED_TITLE_CHARS)}”"
        if self.quoted is not None and self.place is not None:
            return f"Matches “{self.quoted}” in {PLACES[self.place]}"
        if self.shares_words:
            return f"Shares words with your topic “{self.topic}”"
        return f"Close to your topic “{self.topic}”"


def evidence_for(index: TopicIndex, topic: str, paper_index: int) -> Evidence:
    """The evidence for ``topic`` in a paper of ``index``: the first field (title, abstract,
    Hugging Face's keywords and summary) holding the topic, or a subject it lists, as a
    phrase (:mod:`digest.ranking.words`). A word of a phrase found on its own is no evidence."""
    if topic in index.topic_papers:
        return Evidence(topic, similar_to=index.topic_papers[topic].title)
    if topic in index.topic_authors:
        written = index.written_by(topic).get(paper_index)
        if written is None:  # not theirs: an author topic is no reason for any other paper
            return Evidence(topic)
        return Evidence(topic, author=display_name(index.topic_authors[topic], [written]))
    found = index.phrase_place(topic, paper_index)
    if found is None:
        shared = index.word_count(topic) >= 2 and index.shared_count(topic, paper_index) >= 2
        return Evidence(topic, shares_words=shared)
    place, phrase = found
    quoted = next((s for s in subjects(topic) if phrase in topic_phrases(s)), topic)
    return Evidence(topic, " ".join(quoted.split()), place)


@dataclass(frozen=True)
class Pick:
    arxiv_id: str
    score: float
    relevance: float
    topic: str
    reason: str
    matched: tuple[str, ...] = field(default=())
    also: tuple[str, ...] = field(default=())  # the subscriber's other topics this paper passes


Choice = tuple[int, int, str, tuple[str, ...], Evidence]  # paper, topic, reason, also, evidence


@dataclass(frozen=True)
class _Rows:
    """Rows ``start``.. of a :class:`PickTable` as plain lists: converting a block at once costs
    a few NumPy calls, where converting row by row cost a dozen per subscriber."""

    start: int
    papers: list[list[int]]
    topics: list[list[int]]
    scores: list[list[float]]
    relevance: list[list[float]]
    own: list[list[int]]
    # (row, pick slot): bit n set when the pick also passes the reader's n-th other topic
    also: list[list[int]]

    @classmethod
    def read(cls, table: PickTable, start: int, stop: int) -> _Rows:
        papers, topics = table.papers[start:stop], table.topics[start:stop]
        own = table.topic_rows[start:stop]
        passes = table.passing[own[:, :, None], papers[:, None, :]] > 0  # (row, own, slot)
        other = (own[:, :, None] >= 0) & (own[:, :, None] != topics[:, None, :])
        bits = (1 << np.arange(own.shape[1], dtype=np.int64))[None, :, None]
        return cls(
            start,
            papers.tolist(),
            topics.tolist(),
            table.scores[start:stop].tolist(),
            table.relevance[start:stop].tolist(),
            own.tolist(),
            ((passes & other) * bits).sum(axis=1).tolist(),
        )

    def __contains__(self, row: int) -> bool:
        return self.start <= row < self.start + len(self.papers)


class Explainer:
    """Turns rows of a :class:`PickTable` into picks with reasons.

    Evidence depends only on (topic, paper), and many subscribers share both, so it is
    computed once per pair. With ``feedback``, a pick close to a paper the reader liked
    says so first ("Like “…”, which you liked"). Rows are read in blocks, in order, as a
    daily run reads them.
    """

    def __init__(
        self,
        index: TopicIndex,
        topics: Sequence[str],
        table: PickTable,
        requests: Sequence[SubscriberRequest] = (),
        feedback: Feedback | None = None,
    ) -> None:
        self.index = index
        self.topics = topics
        self.table = table
        self.requests = requests
        self.feedback = feedback
        self._cache: dict[tuple[int, int], tuple[Evidence, str]] = {}
        self._rows = _Rows.read(table, 0, 0)

    def picks(self, row: int) -> list[Pick]:
        """Row ``row``'s picks, best first, with their scores and matched words."""
        rows, i = self._block(row)
        return [
            Pick(
                arxiv_id=self.index.ids[paper],
                score=round(rows.scores[i][slot], 6),
                relevance=round(rows.relevance[i][slot], 6),
                topic=self.topics[topic],
                reason=sentence,
                matched=evidence.matched,
                also=also,
            )
            for slot, (paper, topic, sentence, also, evidence) in enumerate(self.choices(row))
        ]

    def choices(self, row: int) -> list[Choice]:
        """Row ``row``'s picks, best first, as (paper, topic row, reason, also, evidence): all a
        digest keeps of a pick, without building a :class:`Pick` per subscriber."""
        rows, i = self._block(row)
        papers = rows.papers[i]
        count = papers.index(-1) if -1 in papers else len(papers)
        topics, own, also_bits = rows.topics[i], rows.own[i], rows.also[i]
        request = self.requests[row] if self.requests else None
        result = []
        for slot in range(count):
            paper, topic, bits = papers[slot], topics[slot], also_bits[slot]
            evidence, sentence = self._explained(topic, paper)
            also = tuple(self.topics[t] for n, t in enumerate(own) if bits >> n & 1) if bits else ()
            if request is not None and request.liked and evidence.author is None:
                sentence = self._with_liked(request, paper, sentence)  # who wrote it comes first
            result.append((paper, topic, sentence, also, evidence))
        return result

    def _block(self, row: int) -> tuple[_Rows, int]:
        if row not in self._rows:
            start = row - row % EXPLAIN_BLOCK
            self._rows = _Rows.read(self.table, start, start + EXPLAIN_BLOCK)
        return self._rows, row - self._rows.start

    def _with_liked(self, request: SubscriberRequest, paper: int, sentence: str) -> str:
        assert self.feedback is not None, "liked rows come from build_feedback, with feedback"
        liked = self.feedback.nearest_liked(request, paper)
        if liked is None:
            return sentence
        return f"Like “{snippet(liked, LIKED_TITLE_CHARS)}”, which you voted up"

    def _explained(self, topic: int, paper: int) -> tuple[Evidence, str]:
        """The evidence for (topic, paper) and its sentence, worked out once per pair."""
        found = self._cache.get((topic, paper))
        if found is None:
            evidence = evidence_for(self.index, self.topics[topic], paper)
            found = self._cache[(topic, paper)] = (evidence, evidence.sentence())
        return found
