"""The day's papers as a BM25F index, and every distinct topic scored against it once.

Scores are (topics x papers): the fraction of an ideal word match (0..1), plus the MiniLM
cosine of topic and paper (0..1) when an :class:`Encoder` is given. What the threshold is
applied to (:meth:`TopicIndex.threshold_scores`) lets a paper pass on its words when it has
the topic as a phrase (:mod:`digest.ranking.words`), or two or more words of a longer topic;
never on one shared word of a longer topic, nor on a stem ("computational" for
"computability"); meaning can still carry the paper.
A "more like this paper" topic is scored by meaning alone when there is an encoder: its
words are a title, and a title's words ("attention", "efficient") are everybody's.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from digest.ranking.authors import AuthorIndex
from digest.ranking.words import (
    Phrase,
    defined_acronyms,
    expand_acronyms,
    found_in,
    joined_variants,
    phrase_terms,
    stems,
    topic_phrases,
)

TITLE_WEIGHT = 2.0
EXTRA_WEIGHT = 1.0  # HF AI keywords/summary, when present
K1 = 1.2
B = 0.75
# Dev set, best topic of the profile: words only, 0.30 keeps 85 % of the papers judged squarely
# on topic and drops 95.5 % of the irrelevant ones; words + cosine, 0.50 keeps 90 % and drops 95.6 %.
LEXICAL_THRESHOLD = 0.30
SEMANTIC_THRESHOLD = 0.50
SEMANTIC_WEIGHT = (
    1.0  # cosine added as is: 0.7-1.5 all measured 0.851-0.864, 1.0 is the plain choice
)
# MiniLM cosine of two passages about different things in the same field: the median over one
# recorded day of Hugging Face papers is 0.41, its 25th percentile 0.34
PASSAGE_FLOOR = 0.35
# A followed author's paper scores this for its author topic: above any sum of topic scores
# (at most 5 topics x (1 + 1)), so the people a reader follows lead their digest
AUTHOR_SCORE = 100.0
# An exclusion ("not: surveys") keeps out a paper whose title has the subject as a phrase, or
# whose MiniLM cosine with it reaches the bar a paper passes a topic at by meaning alone. On the
# dev set 87 % of the papers at or above 0.50 for one of their profile's topics are judged
# squarely about it, 13 % not at all; at 0.45 only 70 % are (docs/ranking.md)
EXCLUSION_MEANING = 0.50


class Encoder(Protocol):
    """Turns texts into unit-length vectors whose dot product is their similarity."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class PaperText(Protocol):
    """What ranking reads from a paper (a PaperRecord or anything shaped like it)."""

    arxiv_id: str
    title: str
    abstract: str


class TopicIndex:
    """BM25F index of one day's papers, scoring any number of topics at once.

    ``title_weight`` and ``analyzer`` exist so the evaluation can build the plain BM25
    baseline (title = abstract, no stemming) from the very same code. With an ``encoder``,
    each paper's title and abstract are embedded once here, each topic once per index.
    """

    def __init__(
        self,
        papers: Sequence[PaperText],
        title_weight: float = TITLE_WEIGHT,
        analyzer: Callable[[str], list[str]] = stems,
        expand: Callable[[str], str] = expand_acronyms,
        encoder: Encoder | None = None,
        topic_papers: Mapping[str, PaperText] | None = None,
        topic_authors: Mapping[str, str] | None = None,
    ) -> None:
        # "more like this paper" topics: the topic's words are the paper's title, and its
        # meaning the paper's own passage vector
        self.topic_papers = dict(topic_papers or {})
        # "author: ..." topics: the name followed; matched on the papers' author lists only
        self.topic_authors = dict(topic_authors or {})
        self._written_by: dict[str, dict[int, str]] = {}
        self.title_weight = title_weight
        self.analyze = analyzer
        self.expand = expand
        self.encoder = encoder
        self.papers = list(papers)
        self.ids = [p.arxiv_id for p in self.papers]
        self.vocab: dict[str, int] = {}
        # per paper: title, abstract and extra text as the sequences phrases are found in
        self.phrase_fields: list[tuple[list[str], ...]] = []
        self._topic_phrases: dict[str, list[Phrase]] = {}
        self.weights, self.idf = self._build()
        self.vectors = (
            encoder.encode([paper_passage(p) for p in self.papers])
            if encoder and self.papers
            else None
        )
        self._topic_vectors: dict[str, np.ndarray] = {}  # each topic encoded once per index

    def _build(self) -> tuple[sp.csr_matrix, np.ndarray]:
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        lengths = []
        for row, paper in enumerate(self.papers):
            counts: defaultdict[str, float] = defaultdict(float)
            title, abstract = self.analyze(paper.title), self.analyze(paper.abstract)
            extra = self.analyze(_extra_text(paper))
            self._add_phrase_fields(paper)
            for stem in title:
                counts[stem] += self.title_weight
            for stem in abstract:
                counts[stem] += 1.0
            for stem in extra:
                counts[stem] += EXTRA_WEIGHT
            lengths.append(sum(counts.values()))
            for stem, count in counts.items():
                rows.append(row)
                cols.append(self.vocab.setdefault(stem, len(self.vocab)))
                values.append(count)
        n_docs, n_terms = len(self.papers), max(len(self.vocab), 1)
        tf = sp.coo_matrix(
            (np.asarray(values), (np.asarray(rows), np.asarray(cols))), shape=(n_docs, n_terms)
        )
        df = np.bincount(tf.col, minlength=n_terms)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        length = np.asarray(lengths, dtype=float)
        avg = length.mean() if n_docs else 1.0
        norm = K1 * (1 - B + B * length[tf.row] / avg) if n_docs else np.zeros(0)
        data = tf.data * (K1 + 1) / (tf.data + norm) * idf[tf.col]
        return sp.csr_matrix((data, (tf.row, tf.col)), shape=(n_docs, n_terms)), idf

    def _add_phrase_fields(self, paper: PaperText) -> None:
        acronyms = defined_acronyms(f"{paper.title}. {paper.abstract}")
        fields = tuple(
            phrase_terms(text, acronyms)
            for text in (paper.title, paper.abstract, _extra_text(paper))
        )
        self.phrase_fields.append(fields)

    def phrases_of(self, topic: str) -> list[Phrase]:
        """The phrases a topic is found by (:func:`topic_phrases`), worked out once per topic."""
        found = self._topic_phrases.get(topic)
        if found is None:
            found = self._topic_phrases[topic] = topic_phrases(topic)
        return found

    def phrase_place(self, topic: str, paper_index: int) -> tuple[int, Phrase] | None:
        """(field, phrase) of the first field holding one of the topic's phrases: 0 title,
        1 abstract, 2 Hugging Face's keywords and summary; None when none does."""
        phrases = self.phrases_of(topic)
        for place, sequence in enumerate(self.phrase_fields[paper_index]):
            phrase = found_in(sequence, phrases)
            if phrase is not None:
                return place, phrase
        return None

    def _query_matrix(self, topics: Sequence[str]) -> sp.csr_matrix:
        rows, cols, values = [], [], []
        for row, topic in enumerate(topics):
            for stem, count in Counter(self._topic_stems(topic)).items():
                col = self.vocab.get(stem)
                if col is not None:
                    rows.append(row)
                    cols.append(col)
                    values.append(float(count))
        return sp.csr_matrix((values, (rows, cols)), shape=(len(topics), max(len(self.vocab), 1)))

    def _ideal_scores(self, topics: Sequence[str]) -> np.ndarray:
        """The score a topic would reach if every one of its terms were saturated in a paper.

        Terms unseen in today's papers count with the highest possible idf, so a topic
        that mostly misses today scores low instead of being inflated by its one common word.
        """
        unseen_idf = math.log1p((len(self.papers) + 0.5) / 0.5)
        ideal = np.empty(len(topics))
        for row, topic in enumerate(topics):
            total = 0.0
            for stem, count in Counter(self._topic_stems(topic)).items():
                col = self.vocab.get(stem)
                total += count * (self.idf[col] if col is not None else unseen_idf)
            ideal[row] = total * (K1 + 1)
        return ideal

    def score_topics(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) relevance: the fraction of an ideal word match (0..1), plus the
        topic-paper cosine (0..1) when the index has an encoder."""
        if not self.papers or not topics:
            return np.zeros((len(topics), len(self.papers)), dtype=np.float32)
        ratio = self._word_scores(topics)
        if self.vectors is not None:
            ratio[self._paper_topics(topics)] = 0.0  # a title's words are not its subject
            ratio += SEMANTIC_WEIGHT * self._meaning(topics)
        return self._with_authors(topics, ratio).astype(np.float32)

    def _with_authors(self, topics: Sequence[str], values: np.ndarray) -> np.ndarray:
        """``values`` with each author topic's row replaced: AUTHOR_SCORE on that person's
        papers, 0 elsewhere (a name's words and meaning say nothing about a paper)."""
        for row, topic in enumerate(topics):
            if topic in self.topic_authors:
                values[row] = 0.0
                values[row, list(self.written_by(topic))] = AUTHOR_SCORE
        return values

    def written_by(self, topic: str) -> dict[int, str]:
        """{paper: the name as it writes it} for the papers by an author topic's person."""
        found = self._written_by.get(topic)
        if found is None:
            found = self._written_by[topic] = self._author_index.papers_by(
                self.topic_authors[topic]
            )
        return found

    @cached_property
    def _author_index(self) -> AuthorIndex:
        return AuthorIndex([getattr(p, "authors", None) or [] for p in self.papers])

    def excluded(self, subjects: Sequence[str]) -> np.ndarray:
        """(subjects x papers) True where a paper is about a subject a reader excludes: the
        subject as a phrase in its title (plural or singular, as topics are found), or a MiniLM
        cosine of EXCLUSION_MEANING or more with its passage."""
        out = np.zeros((len(subjects), len(self.papers)), dtype=bool)
        if not self.papers or not subjects:
            return out
        for row, subject in enumerate(subjects):
            phrases = self.phrases_of(subject)
            out[row] = [found_in(f[0], phrases) is not None for f in self.phrase_fields]
        if self.vectors is not None:
            out |= self.similarities(subjects) >= EXCLUSION_MEANING
        return out

    def _paper_topics(self, topics: Sequence[str]) -> np.ndarray:
        return np.array([t in self.topic_papers for t in topics], dtype=bool)

    def threshold_scores(self, topics: Sequence[str], scores: np.ndarray) -> np.ndarray:
        """What the relevance threshold is applied to: ``scores`` without the word part where
        the paper's words do not count for the topic (:meth:`words_count_for`).
        Meaning still can carry such a paper. Ranking order is left alone (measured: dropping
        those word scores outright cost 0.03 nDCG@10 on the dev set)."""
        if not self.papers or not topics:
            return scores
        counts = self.words_count_for(topics)
        meaning = SEMANTIC_WEIGHT * self._meaning(topics) if self.vectors is not None else 0.0
        gate = np.where(counts, scores, meaning)
        return self._with_authors(topics, gate).astype(np.float32)

    def words_count_for(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) True where the topic's words may carry the paper: the paper has
        the topic, or one subject it lists, as a phrase (:mod:`digest.ranking.words`); or,
        for a topic of two or more words, it shares two or more of them. A one-word topic needs
        that very word: "computational" is not "computability", though their stems are one. A
        single shared word of a longer topic ("quantum" for "lattice quantum chromodynamics")
        never counts; meaning can still carry such a paper. A "more like this paper" topic is
        judged by meaning alone when there is an encoder (its words are a title's)."""
        shared = self.shared_words(topics)
        several = np.array([self.word_count(t) >= 2 for t in topics])
        counts = several[:, None] & (shared >= 2)
        phrased = [t for t in topics if t not in self.topic_papers]
        having = self._papers_having({p for t in phrased for p in self.phrases_of(t)})
        for row, topic in enumerate(topics):
            if topic in self.topic_papers:
                counts[row] &= self.vectors is None
                continue
            for phrase in self.phrases_of(topic):
                counts[row, list(having.get(phrase, ()))] = True
        return counts

    def shared_words(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) how many of each topic's stems (an acronym's long form counted)
        each paper has."""
        present = self._query_matrix(topics)
        present.data[:] = 1.0
        return (present @ (self.weights > 0).astype(np.float32).T).toarray()

    def shared_count(self, topic: str, paper_index: int) -> int:
        """:meth:`shared_words` for one pair, read off the paper's row (a reason asks for
        thousands of pairs a day; a matrix product each would cost seconds)."""
        row = self.weights.indices[
            self.weights.indptr[paper_index] : self.weights.indptr[paper_index + 1]
        ]
        wanted = {self.vocab[s] for s in self._topic_stems(topic) if s in self.vocab}
        return len(wanted.intersection(row.tolist()))

    def word_count(self, topic: str) -> int:
        """Distinct content words of a topic as typed (acronyms not expanded)."""
        return len(set(self.analyze(self._topic_words(topic))))

    def _papers_having(self, phrases: set[Phrase]) -> dict[Phrase, set[int]]:
        """Which papers hold each phrase, in one pass over the papers' terms (a phrase is
        tried only where its first term is), whatever the number of topics."""
        by_first: dict[str, list[Phrase]] = {}
        for phrase in phrases:
            by_first.setdefault(phrase[0], []).append(phrase)
        closed = {"".join(p): p for p in phrases if len(p) == 2}  # "pretraining" in a paper
        split = {p[0]: p for p in phrases if len(p) == 1}  # "pre-training" in a paper
        having: dict[Phrase, set[int]] = {}
        for n, fields in enumerate(self.phrase_fields):
            for sequence in fields:
                for i, term in enumerate(sequence):
                    for phrase in by_first.get(term, ()):
                        if tuple(sequence[i : i + len(phrase)]) == phrase:
                            having.setdefault(phrase, set()).add(n)
                    if term in closed:
                        having.setdefault(closed[term], set()).add(n)
                for word in joined_variants(sequence) & split.keys():
                    having.setdefault(split[word], set()).add(n)
        return having

    def _word_scores(self, topics: Sequence[str], query: sp.csr_matrix | None = None) -> np.ndarray:
        query = self._query_matrix(topics) if query is None else query
        raw = (query @ self.weights.T).toarray()
        ideal = self._ideal_scores(topics)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ideal[:, None] > 0, raw / ideal[:, None], 0.0)

    def _topic_words(self, topic: str) -> str:
        """What a topic says in words: itself, or the title of the paper it names."""
        paper = self.topic_papers.get(topic)
        return paper.title if paper is not None else topic

    def _topic_stems(self, topic: str) -> list[str]:
        return self.analyze(self.expand(self._topic_words(topic)))

    def _meaning(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) the cosine part of the score, 0..1. A "more like this paper" topic
        compares two passages, which share genre and vocabulary whatever their subject, so its
        cosine counts from PASSAGE_FLOOR up rather than from 0."""
        cosine = np.clip(self.similarities(topics), 0.0, None)
        papers = np.array([t in self.topic_papers for t in topics])
        if papers.any():
            floored = np.clip(cosine - PASSAGE_FLOOR, 0.0, None) / (1.0 - PASSAGE_FLOOR)
            cosine = np.where(papers[:, None], floored, cosine)
        return cosine

    def similarities(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) cosine similarity; needs an encoder."""
        assert self.vectors is not None
        return self._topic_matrix(topics) @ self.vectors.T

    def paper_similarities(self, others: Sequence[PaperText]) -> np.ndarray:
        """(others x papers) how alike two papers are: the cosine of their MiniLM vectors, or
        without an encoder the cosine of their idf-weighted stems. Only values above a
        :class:`Feedback` bar count, so a slightly negative MiniLM cosine needs no clipping."""
        if self.vectors is not None:
            assert self.encoder is not None
            mine = self.encoder.encode([paper_passage(p) for p in others])
            return (mine @ self.vectors.T).astype(np.float32)
        theirs = _unit_rows(
            self._query_matrix([f"{p.title} {p.title} {p.abstract}" for p in others])
        )
        theirs = theirs @ sp.diags(self.idf)
        return (_unit_rows(theirs) @ _unit_rows(self.weights).T).toarray().astype(np.float32)

    def topic_vectors(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x dimensions) the topics' MiniLM vectors; needs an encoder."""
        return self._topic_matrix(topics)

    def _topic_matrix(self, topics: Sequence[str]) -> np.ndarray:
        """The topics' vectors, each topic encoded once per index (new ones in one batch)."""
        assert self.encoder is not None
        width = self.vectors.shape[1] if self.vectors is not None else 0
        for author in self.topic_authors.keys() & set(topics):  # a name has no meaning to embed
            self._topic_vectors[author] = np.zeros(width, dtype=np.float32)
        new = [t for t in dict.fromkeys(topics) if t not in self._topic_vectors]
        if new:
            texts = [
                paper_passage(self.topic_papers[t]) if t in self.topic_papers else t for t in new
            ]
            self._topic_vectors.update(zip(new, self.encoder.encode(texts), strict=True))
        return np.stack([self._topic_vectors[t] for t in topics])


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix)  # a zero row stays 0


def paper_passage(paper: PaperText) -> str:
    """The text a paper is embedded from: the title leads, as it states the subject."""
    return f"{paper.title}. {paper.abstract}"


def _extra_text(paper: PaperText) -> str:
    keywords = getattr(paper, "ai_keywords", None) or []
    summary = getattr(paper, "ai_summary", None) or ""
    return " ".join([*keywords, summary])
