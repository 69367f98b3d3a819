"""Relevance of papers to topics, and each subscriber's picks. Pure: plain data in, plain data out.

How it works, and why:

* Every **distinct topic** is scored once against the day's papers (BM25F: title counts
  double, Snowball stemming, stop words dropped), as a sparse query x document product.
  Subscribers share topics, so the cost is distinct topics x papers, not subscribers x papers.
* A topic's word score for a paper is the BM25 score divided by the best score that topic
  could reach (every term saturated). That puts every topic on one 0..1 scale, so one
  relevance threshold means the same thing for "rl" and for "speech and audio processing".
* When an :class:`Encoder` is given (all-MiniLM-L6-v2, :mod:`digest.semantic`), the cosine
  similarity of topic and paper (clipped at 0) is added to the word score. It finds papers
  about a subject in other words; the word score keeps exact terms and acronyms decisive.
* A subscriber's relevance for a paper is the sum of their topics' scores that pass the
  threshold: a paper strongly about one topic is a strong match, one about two is stronger,
  and a paper below the threshold for every topic is never picked, however trending.
* Trending (HF upvotes) and freshness then scale relevance by at most +15 %: they reorder
  relevant papers but cannot lift an irrelevant one, which the threshold already removed.
* Each pick names the topic that contributed most and the topic words found in the paper.

Measured on the development set in tests/fixtures/ranking-dev (README, Ranking): the choices above (title weight, normalisation,
sum over topics, cosine added unweighted) are the ones that held up there; bigram phrases,
corpus acronym expansion, pseudo-relevance feedback, LSA, neighbour smoothing and static
word vectors did not help and are left out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import Stemmer

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
TRENDING_BOOST = 0.10
FRESHNESS_BOOST = 0.05
PICK_CHUNK = 10_000  # subscribers per block when picking; bounds memory to chunk x papers

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "which",
        "with",
        "we",
        "our",
        "us",
        "via",
        "using",
        "use",
        "based",
        "towards",
        "toward",
        "new",
        "can",
        "these",
        "those",
        "than",
        "such",
        "both",
        "also",
        "while",
        "within",
        "without",
        "between",
        "across",
        "through",
        "over",
        "under",
        "more",
        "most",
        "less",
        "not",
        "no",
        "but",
        "each",
        "other",
        "how",
        "what",
        "when",
        "where",
        "who",
        "whose",
        "why",
        "do",
        "does",
    ]
)
WORD = re.compile(r"[a-z0-9]+")
# Acronyms people type as topics, spelled out so papers that use the long form match too.
# One direction only: expanding "reinforcement learning" to "rl" was measured to hurt
# (every paper mentioning an LLM matched "large language model agents").
ACRONYMS = {
    "ai": "artificial intelligence",
    "asr": "automatic speech recognition",
    "cnn": "convolutional neural network",
    "cv": "computer vision",
    "gan": "generative adversarial network",
    "gnn": "graph neural network",
    "gnns": "graph neural networks",
    "hci": "human computer interaction",
    "ir": "information retrieval",
    "llm": "large language model",
    "llms": "large language models",
    "ml": "machine learning",
    "moe": "mixture of experts",
    "mt": "machine translation",
    "nlp": "natural language processing",
    "nmt": "neural machine translation",
    "rag": "retrieval augmented generation",
    "rl": "reinforcement learning",
    "rlhf": "reinforcement learning from human feedback",
    "slam": "simultaneous localization and mapping",
    "tts": "text to speech",
    "vae": "variational autoencoder",
    "vlm": "vision language model",
    "vqa": "visual question answering",
    "ssm": "state space model",
    "nerf": "neural radiance field",
}
_stemmer = Stemmer.Stemmer("english")


class Encoder(Protocol):
    """Turns texts into unit-length vectors whose dot product is their similarity."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class PaperText(Protocol):
    """What ranking reads from a paper (a PaperRecord or anything shaped like it)."""

    arxiv_id: str
    title: str
    abstract: str


def words(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS]


def stems(text: str) -> list[str]:
    return _stemmer.stemWords(words(text))


def expand_acronyms(topic: str) -> str:
    """ "multilingual nlp" -> "multilingual nlp natural language processing"."""
    extra = [ACRONYMS[w] for w in WORD.findall(topic.lower()) if w in ACRONYMS]
    return " ".join([topic, *extra])


@dataclass(frozen=True)
class Evidence:
    """Why a paper matched a topic, in words a reader recognises."""

    topic: str
    matched: tuple[str, ...]  # topic words found in the paper
    in_title: tuple[str, ...]  # those of them found in the title
    phrase_in: str | None  # "title" or "abstract" when the whole topic appears verbatim
    similarity: float | None = None  # cosine of topic and paper, when ranked with an encoder

    def sentence(self) -> str:
        if self.phrase_in:
            return f'matches "{self.topic}": the phrase is in the {self.phrase_in}'
        words_ = [f"{w} (title)" if w in self.in_title else w for w in self.matched]
        if words_:
            return f'matches "{self.topic}": {", ".join(words_)}'
        if self.similarity is not None:
            return f'matches "{self.topic}": close in meaning (similarity {self.similarity:.2f})'
        return f'matches "{self.topic}": related wording'


@dataclass(frozen=True)
class Pick:
    arxiv_id: str
    score: float
    relevance: float
    topic: str
    reason: str
    matched: tuple[str, ...] = field(default=())


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
    ) -> None:
        self.title_weight = title_weight
        self.analyze = analyzer
        self.expand = expand
        self.encoder = encoder
        self.papers = list(papers)
        self.ids = [p.arxiv_id for p in self.papers]
        self.vocab: dict[str, int] = {}
        self._title_stems: list[set[str]] = []
        self.weights, self.idf = self._build()
        self.vectors = (
            encoder.encode([paper_passage(p) for p in self.papers])
            if encoder and self.papers
            else None
        )
        self._topic_vectors: dict[str, np.ndarray] = {}  # evidence asks again per (topic, paper)

    def _build(self) -> tuple[sp.csr_matrix, np.ndarray]:
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        lengths = []
        for row, paper in enumerate(self.papers):
            counts: Counter[str] = Counter()
            title = self.analyze(paper.title)
            self._title_stems.append(set(title))
            for stem in title:
                counts[stem] += self.title_weight
            for stem in self.analyze(paper.abstract):
                counts[stem] += 1.0
            for stem in self.analyze(_extra_text(paper)):
                counts[stem] += EXTRA_WEIGHT
            lengths.append(sum(counts.values()))
            for stem, count in counts.items():
                rows.append(row)
                cols.append(self.vocab.setdefault(stem, len(self.vocab)))
                values.append(count)
        n_docs, n_terms = len(self.papers), max(len(self.vocab), 1)
        tf = sp.coo_matrix((values, (rows, cols)), shape=(n_docs, n_terms))
        df = np.bincount(tf.col, minlength=n_terms)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        length = np.asarray(lengths, dtype=float)
        avg = length.mean() if n_docs else 1.0
        norm = K1 * (1 - B + B * length[tf.row] / avg) if n_docs else np.zeros(0)
        data = tf.data * (K1 + 1) / (tf.data + norm) * idf[tf.col]
        return sp.csr_matrix((data, (tf.row, tf.col)), shape=(n_docs, n_terms)), idf

    def _query_matrix(self, topics: Sequence[str]) -> sp.csr_matrix:
        rows, cols, values = [], [], []
        for row, topic in enumerate(topics):
            for stem, count in Counter(self.analyze(self.expand(topic))).items():
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
            for stem, count in Counter(self.analyze(self.expand(topic))).items():
                col = self.vocab.get(stem)
                total += count * (self.idf[col] if col is not None else unseen_idf)
            ideal[row] = total * (K1 + 1)
        return ideal

    def score_topics(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) relevance: the fraction of an ideal word match (0..1), plus the
        topic-paper cosine (0..1) when the index has an encoder."""
        if not self.papers or not topics:
            return np.zeros((len(topics), len(self.papers)), dtype=np.float32)
        raw = (self._query_matrix(topics) @ self.weights.T).toarray()
        ideal = self._ideal_scores(topics)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ideal[:, None] > 0, raw / ideal[:, None], 0.0)
        if self.vectors is not None:
            ratio += SEMANTIC_WEIGHT * np.clip(self.similarities(topics), 0.0, None)
        return ratio.astype(np.float32)

    def similarities(self, topics: Sequence[str]) -> np.ndarray:
        """(topics x papers) cosine similarity; needs an encoder."""
        assert self.vectors is not None
        return self._topic_matrix(topics) @ self.vectors.T

    def _topic_matrix(self, topics: Sequence[str]) -> np.ndarray:
        """The topics' vectors, each topic encoded once per index (new ones in one batch)."""
        assert self.encoder is not None
        new = [t for t in dict.fromkeys(topics) if t not in self._topic_vectors]
        if new:
            self._topic_vectors.update(zip(new, self.encoder.encode(new), strict=True))
        return np.stack([self._topic_vectors[t] for t in topics])

    def evidence(self, topic: str, paper_index: int) -> Evidence:
        paper = self.papers[paper_index]
        present = set(self.weights.getrow(paper_index).indices)
        matched, in_title = [], []
        for word in dict.fromkeys(words(self.expand(topic))):
            found = [stem for stem in self.analyze(word) if self.vocab.get(stem) in present]
            if found:
                matched.append(word)
                if any(stem in self._title_stems[paper_index] for stem in found):
                    in_title.append(word)
        phrase = " ".join(topic.lower().split())
        phrase_in = (
            "title"
            if phrase in paper.title.lower()
            else "abstract"
            if phrase in " ".join(paper.abstract.lower().split())
            else None
        )
        similarity = (
            round(float(self._topic_matrix([topic])[0] @ self.vectors[paper_index]), 2)
            if self.vectors is not None
            else None
        )
        return Evidence(topic, tuple(matched), tuple(in_title), phrase_in, similarity)


def paper_passage(paper: PaperText) -> str:
    """The text a paper is embedded from: the title leads, as it states the subject."""
    return f"{paper.title}. {paper.abstract}"


def _extra_text(paper: PaperText) -> str:
    keywords = getattr(paper, "ai_keywords", None) or []
    summary = getattr(paper, "ai_summary", None) or ""
    return " ".join([*keywords, summary])


def paper_signals(upvotes: Sequence[int | None], ages_days: Sequence[float]) -> np.ndarray:
    """Per-paper multiplier in [1, 1 + TRENDING_BOOST + FRESHNESS_BOOST].

    Upvotes count on a log scale relative to the day's most upvoted paper; freshness
    halves every 3 days. Both are secondary: they only scale relevance.
    """
    votes = np.log1p(np.array([max(v or 0, 0) for v in upvotes], dtype=float))
    trend = votes / votes.max() if votes.size and votes.max() > 0 else np.zeros(len(upvotes))
    fresh = 0.5 ** (np.clip(np.asarray(ages_days, dtype=float), 0, None) / 3.0)
    return (1.0 + TRENDING_BOOST * trend + FRESHNESS_BOOST * fresh).astype(np.float32)


@dataclass(frozen=True)
class SubscriberRequest:
    """One subscriber's part of a ranking run: topic rows into the score matrix, and limits."""

    key: int
    topic_rows: tuple[int, ...]
    max_papers: int
    exclude: frozenset[str] = frozenset()


@dataclass
class PickTable:
    """Every subscriber's picks as arrays (row i = requests[i]); -1 marks an empty slot.

    Arrays, not objects, because a million subscribers x 10 picks must stay cheap; the
    :class:`Explainer` turns one row into readable :class:`Pick` objects when needed.
    """

    keys: list[int]
    papers: np.ndarray  # (subscribers x k) paper index into the TopicIndex
    topics: np.ndarray  # (subscribers x k) row of the topic that contributed most
    scores: np.ndarray  # (subscribers x k) final score (relevance x signals)
    relevance: np.ndarray  # (subscribers x k) relevance alone

    def row_of(self) -> dict[int, int]:
        return {key: row for row, key in enumerate(self.keys)}


def pick_papers(
    topics: Sequence[str],
    scores: np.ndarray,
    requests: Sequence[SubscriberRequest],
    signals: np.ndarray | None = None,
    threshold: float = LEXICAL_THRESHOLD,
    paper_ids: Sequence[str] | None = None,
) -> PickTable:
    """Each subscriber's best papers, relevance first, in blocks of subscribers.

    Per block: a sparse (subscribers x topics) matrix times the thresholded (topics x papers)
    scores, ``argpartition`` for each row's top k, and a gather to find which of the
    subscriber's topics contributed most to each pick. ``paper_ids`` is needed only for
    requests that exclude already-sent papers.
    """
    passing = np.where(scores >= threshold, scores, 0.0).astype(np.float32)
    boost = signals if signals is not None else np.ones(scores.shape[1], dtype=np.float32)
    # an all-zero row at the end serves as the padding topic for subscribers with fewer topics
    padded_scores = np.vstack([scores, np.zeros((1, scores.shape[1]), dtype=scores.dtype)])
    position = {pid: i for i, pid in enumerate(paper_ids or [])}
    k = min(max((r.max_papers for r in requests), default=0), scores.shape[1])
    parts = [
        _pick_block(requests[s : s + PICK_CHUNK], passing, padded_scores, boost, k, position)
        for s in range(0, len(requests), PICK_CHUNK)
    ]
    empty = np.zeros((0, k), dtype=np.int32)
    return PickTable(
        keys=[r.key for r in requests],
        papers=np.vstack([p[0] for p in parts]) if parts else empty,
        topics=np.vstack([p[1] for p in parts]) if parts else empty,
        scores=np.vstack([p[2] for p in parts]) if parts else empty.astype(np.float32),
        relevance=np.vstack([p[3] for p in parts]) if parts else empty.astype(np.float32),
    )


def _pick_block(
    block: Sequence[SubscriberRequest],
    passing: np.ndarray,
    padded_scores: np.ndarray,
    boost: np.ndarray,
    k: int,
    position: dict[str, int],
) -> tuple[np.ndarray, ...]:
    n_topics = passing.shape[0]
    relevance = np.asarray(_membership(block, n_topics) @ passing)
    final = relevance * boost
    for row, request in enumerate(block):
        for pid in request.exclude:
            if pid in position:
                final[row, position[pid]] = 0.0
    if k == 0:
        shape = (len(block), 0)
        return (np.zeros(shape, np.int32),) * 2 + (np.zeros(shape, np.float32),) * 2
    top = (
        np.argpartition(-final, k - 1, axis=1)[:, :k]
        if k < final.shape[1]
        else np.tile(np.arange(final.shape[1]), (len(block), 1))
    )
    top_scores = np.take_along_axis(final, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)  # best first; ties by paper position
    papers = np.take_along_axis(top, order, axis=1).astype(np.int32)
    picked = np.take_along_axis(top_scores, order, axis=1)
    limits = np.array([r.max_papers for r in block])[:, None]
    empty = (picked <= 0) | (np.arange(k)[None, :] >= limits)
    width = max((len(r.topic_rows) for r in block), default=1)
    own = np.full((len(block), width), n_topics, dtype=np.int64)
    for row, request in enumerate(block):
        own[row, : len(request.topic_rows)] = request.topic_rows
    contribution = padded_scores[own[:, None, :], papers[:, :, None]]  # (block x k x width)
    best = np.take_along_axis(own, contribution.argmax(axis=2), axis=1).astype(np.int32)
    papers[empty] = -1
    best[empty] = -1
    return (
        papers,
        best,
        np.where(empty, 0, picked).astype(np.float32),
        np.where(
            empty, 0, np.take_along_axis(relevance, np.where(empty, 0, papers), axis=1)
        ).astype(np.float32),
    )


def _membership(block: Sequence[SubscriberRequest], n_topics: int) -> sp.csr_matrix:
    indptr = np.zeros(len(block) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r.topic_rows) for r in block])
    indices = np.fromiter(
        (t for r in block for t in r.topic_rows), dtype=np.int64, count=int(indptr[-1])
    )
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(block), n_topics))


class Explainer:
    """Turns rows of a :class:`PickTable` into :class:`Pick` objects with reasons.

    Evidence depends only on (topic, paper), and many subscribers share both, so it is
    computed once per pair.
    """

    def __init__(self, index: TopicIndex, topics: Sequence[str], table: PickTable) -> None:
        self.index = index
        self.topics = topics
        self.table = table
        self._cache: dict[tuple[int, int], Evidence] = {}

    def picks(self, row: int) -> list[Pick]:
        result = []
        for slot, paper in enumerate(self.table.papers[row]):
            if paper < 0:
                break
            topic = int(self.table.topics[row, slot])
            evidence = self._cache.get((topic, int(paper)))
            if evidence is None:
                evidence = self._cache[(topic, int(paper))] = self.index.evidence(
                    self.topics[topic], int(paper)
                )
            result.append(
                Pick(
                    arxiv_id=self.index.ids[paper],
                    score=round(float(self.table.scores[row, slot]), 6),
                    relevance=round(float(self.table.relevance[row, slot]), 6),
                    topic=self.topics[topic],
                    reason=evidence.sentence(),
                    matched=evidence.matched,
                )
            )
        return result


def rank_profiles(
    papers: Sequence[PaperText],
    profiles: dict[str, Sequence[str]],
    top: int,
    threshold: float = 0.0,
    encoder: Encoder | None = None,
) -> dict[str, list[Pick]]:
    """Rank a papers file for each named profile (the ``digest rank`` command and evaluation)."""
    index = TopicIndex(papers, encoder=encoder)
    profiles = {q: [" ".join(t.lower().split()) for t in ts] for q, ts in profiles.items()}
    topics = list(dict.fromkeys(t for ts in profiles.values() for t in ts))
    row_of = {t: i for i, t in enumerate(topics)}
    scores = index.score_topics(topics)
    keys = list(profiles)
    requests = [
        SubscriberRequest(n, tuple(row_of[t] for t in profiles[q]), top) for n, q in enumerate(keys)
    ]
    explainer = Explainer(index, topics, pick_papers(topics, scores, requests, threshold=threshold))
    return {q: explainer.picks(n) for n, q in enumerate(keys)}


def plain_bm25_ranking(
    papers: Sequence[PaperText], profiles: dict[str, Sequence[str]], top: int
) -> dict[str, list[str]]:
    """The baseline every change is judged against: Okapi BM25 over title + abstract, no
    stemming, no field weights, the profile's topics as one query."""
    index = TopicIndex(papers, title_weight=1.0, analyzer=words, expand=str)
    queries = [" ".join(topics) for topics in profiles.values()]
    scores = index.score_topics(queries)
    ranked = {}
    for row, qid in enumerate(profiles):
        order = sorted(range(len(index.ids)), key=lambda i: (-scores[row, i], index.ids[i]))
        ranked[qid] = [index.ids[i] for i in order[:top] if scores[row, i] > 0]
    return ranked
