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
* A paper that shares only one word with a topic of two or more words cannot pass the
  threshold on that word: "lattice quantum chromodynamics" is not about every paper that
  says "quantum". Meaning (the cosine) can still carry it, and the reason then says so.
* A subscriber's relevance for a paper is the sum of their topics' scores that pass the
  threshold: a paper strongly about one topic is a strong match, one about two is stronger,
  and a paper below the threshold for every topic is never picked, however trending.
* Every topic with a paper above the threshold gets at least one of the subscriber's slots
  (its best paper); the other slots go by score. A sum alone lets the strongest topic take
  every slot, and a subscriber of three topics would hear about one.
* Trending (HF upvotes) and freshness then scale relevance by at most +15 %: they reorder
  relevant papers but cannot lift an irrelevant one, which the threshold already removed.
* Each pick names the topic that contributed most, the other topics it also matches, and
  where the topic's words were found (title, abstract, or Hugging Face's AI keywords).

Measured on the development set in tests/fixtures/ranking-dev (README, Ranking): the choices above (title weight, normalisation,
sum over topics, cosine added unweighted) are the ones that held up there; bigram phrases,
corpus acronym expansion, pseudo-relevance feedback, LSA, neighbour smoothing and static
word vectors did not help and are left out.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import Stemmer

from digest.records import Votes
from digest.text import snippet

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
COVER_CHOICES = 10  # a topic's best papers among which the one covering it is chosen
COVER_RATIO = 0.9  # ... if it scores at least this share of the topic's best one
# Reader feedback ("more / less like this"): a paper's score is multiplied by
# exp(weight x (closeness to the nearest liked paper - closeness to the nearest disliked one)),
# where closeness counts only similarity above NEAR_*: the neighbourhood of the voted paper
# itself, not its whole field. Measured on the dev set (README, Ranking): the papers a reader
# dislikes are near misses, and papers merely related to them are *more* often relevant than
# not, so a plain centroid (Rocchio) or any similarity pushed papers of the reader's own topic
# down; the near-neighbour form never cost a profile anything.
FEEDBACK_WEIGHT = 1.0
FULL_FEEDBACK_VOTES = 4  # fewer votes count in proportion: topics lead while votes are few
NEAR_MEANING = 0.5  # MiniLM cosine of two passages "about the same thing"
# ... and of two passages about different things in the same field: the median over one
# recorded day of Hugging Face papers is 0.41, its 25th percentile 0.34
PASSAGE_FLOOR = 0.35
NEAR_WORDS = 0.2  # the same for idf-weighted stems (their cosines run far lower)
LIKED_TITLE_CHARS = 60  # a paper named in a reason (liked, or a topic): the start of its title
PICK_CHUNK = 10_000  # subscribers per block when picking; bounds memory to chunk x papers
EXPLAIN_BLOCK = 4096  # table rows the Explainer reads into lists at once

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
    """Why a paper matched a topic, field by field, so the reason never claims a word is in
    the title when it is only in the abstract."""

    topic: str
    in_title: tuple[str, ...]  # topic words (or the whole topic) found in the title
    in_abstract: tuple[str, ...]  # ... found in the abstract and not in the title
    in_keywords: tuple[str, ...]  # ... found only in Hugging Face's AI keywords or summary
    similar_to: str | None = None  # the title of the paper a "more like this paper" topic names

    @property
    def matched(self) -> tuple[str, ...]:
        return self.in_title + self.in_abstract + self.in_keywords

    def sentence(self) -> str:
        """ "Title mentions reinforcement learning; abstract: policy", as a person would say it."""
        if self.similar_to is not None:
            return f"Similar to “{snippet(self.similar_to, LIKED_TITLE_CHARS)}”"
        parts = []
        if self.in_title:
            parts.append(f"Title mentions {', '.join(self.in_title)}")
        if self.in_abstract:
            parts.append(f"{'abstract' if parts else 'Abstract'}: {', '.join(self.in_abstract)}")
        if self.in_keywords:
            label = "Hugging Face keywords"
            parts.append(f"{label.lower() if parts else label}: {', '.join(self.in_keywords)}")
        if parts:
            return "; ".join(parts)
        return f"Close in meaning to {self.topic}"


@dataclass(frozen=True)
class Pick:
    arxiv_id: str
    score: float
    relevance: float
    topic: str
    reason: str
    matched: tuple[str, ...] = field(default=())
    also: tuple[str, ...] = field(default=())  # the subscriber's other topics this paper passes


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
    ) -> None:
        # "more like this paper" topics: the topic's words are the paper's title, and its
        # meaning the paper's own passage vector
        self.topic_papers = dict(topic_papers or {})
        self.title_weight = title_weight
        self.analyze = analyzer
        self.expand = expand
        self.encoder = encoder
        self.papers = list(papers)
        self.ids = [p.arxiv_id for p in self.papers]
        self.vocab: dict[str, int] = {}
        self._field_stems: list[tuple[set[str], set[str], set[str]]] = []  # title, abstract, extra
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
            counts: Counter[str] = Counter()
            title, abstract = self.analyze(paper.title), self.analyze(paper.abstract)
            extra = self.analyze(_extra_text(paper))
            self._field_stems.append((set(title), set(abstract), set(extra)))
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
            ratio += SEMANTIC_WEIGHT * self._meaning(topics)
        return ratio.astype(np.float32)

    def threshold_scores(self, topics: Sequence[str], scores: np.ndarray) -> np.ndarray:
        """What the relevance threshold is applied to: ``scores`` without the word part where a
        topic of two or more words shares just one of them with the paper. A single common
        word ("quantum" for "lattice quantum chromodynamics") must not carry a paper over the
        threshold; meaning still can. Ranking order is left alone (measured: dropping those
        word scores outright cost 0.03 nDCG@10 on the dev set)."""
        if not self.papers or not topics:
            return scores
        lone = self._one_word_only(topics, self._query_matrix(topics))
        meaning = SEMANTIC_WEIGHT * self._meaning(topics) if self.vectors is not None else 0.0
        return np.where(lone, meaning, scores).astype(np.float32)

    def _word_scores(self, topics: Sequence[str], query: sp.csr_matrix | None = None) -> np.ndarray:
        query = self._query_matrix(topics) if query is None else query
        raw = (query @ self.weights.T).toarray()
        ideal = self._ideal_scores(topics)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ideal[:, None] > 0, raw / ideal[:, None], 0.0)

    def _one_word_only(self, topics: Sequence[str], query: sp.csr_matrix) -> np.ndarray:
        """(topics x papers) True where a topic of two or more words shares just one word
        (counting an acronym's long form) with the paper: a single common word such as
        "quantum" or "learning" says little about a topic that names more."""
        present = query.copy()
        present.data[:] = 1.0
        shared = (present @ (self.weights > 0).astype(np.float32).T).toarray()
        several = np.array([self.word_count(t) >= 2 for t in topics])
        return several[:, None] & (shared <= 1)

    def _topic_words(self, topic: str) -> str:
        """What a topic says in words: itself, or the title of the paper it names."""
        paper = self.topic_papers.get(topic)
        return paper.title if paper is not None else topic

    def _topic_stems(self, topic: str) -> list[str]:
        return self.analyze(self.expand(self._topic_words(topic)))

    def word_count(self, topic: str) -> int:
        """Distinct content words of a topic as typed (acronyms not expanded)."""
        return len(set(self.analyze(self._topic_words(topic))))

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

    def _topic_matrix(self, topics: Sequence[str]) -> np.ndarray:
        """The topics' vectors, each topic encoded once per index (new ones in one batch)."""
        assert self.encoder is not None
        new = [t for t in dict.fromkeys(topics) if t not in self._topic_vectors]
        if new:
            texts = [
                paper_passage(self.topic_papers[t]) if t in self.topic_papers else t for t in new
            ]
            self._topic_vectors.update(zip(new, self.encoder.encode(texts), strict=True))
        return np.stack([self._topic_vectors[t] for t in topics])

    def evidence(self, topic: str, paper_index: int) -> Evidence:
        """Where the topic's words are in the paper: each phrase or word once, in the first
        field holding it (title, abstract, then Hugging Face's keywords and summary)."""
        if topic in self.topic_papers:
            return Evidence(topic, (), (), (), similar_to=self.topic_papers[topic].title)
        paper = self.papers[paper_index]
        fields = self._field_stems[paper_index]
        texts = (self.analyze(paper.title), self.analyze(paper.abstract))
        found: tuple[list[str], list[str], list[str]] = ([], [], [])
        said: set[str] = set()
        if self._words_count(topic, paper_index):
            for phrase in _phrases(topic):
                place = self._phrase_place(phrase, texts)
                if place is not None and not set(words(phrase)) & said:
                    found[place].append(phrase)
                    said.update(words(phrase))
            for word in dict.fromkeys(words(self.expand(topic))):
                stems_ = self.analyze(word)
                place = next((f for f in range(3) if stems_ and set(stems_) <= fields[f]), None)
                if place is not None and word not in said:  # words are distinct already
                    found[place].append(word)
        return Evidence(topic, *(tuple(f) for f in found))

    def _phrase_place(self, phrase: str, texts: tuple[list[str], list[str]]) -> int | None:
        """0 when the phrase is in the title, 1 in the abstract (``texts``: their stems), word
        for word up to stemming and stop words ("graph neural network" is in "Graph Neural
        Networks for ...")."""
        wanted = self.analyze(phrase)
        for place, found in enumerate(texts):
            if any(
                found[i : i + len(wanted)] == wanted for i in range(len(found) - len(wanted) + 1)
            ):
                return place
        return None

    def _words_count(self, topic: str, paper_index: int) -> bool:
        """Whether the paper's words count for the topic, by the rule :meth:`score_topics`
        applies: a topic of several words needs more than one of them."""
        present = set().union(*self._field_stems[paper_index])
        shared = {stem for stem in self._topic_stems(topic) if stem in present}
        return len(shared) >= (2 if self.word_count(topic) >= 2 else 1)


def _phrases(topic: str) -> list[str]:
    """The phrases a reason may quote, longest first: the topic as typed, then each run of
    two or more of its words, and the same for the long form of each acronym in it."""
    phrases = [" ".join(topic.lower().split())]
    for source in [topic, *(ACRONYMS[w] for w in WORD.findall(topic.lower()) if w in ACRONYMS)]:
        ws = words(source)
        phrases += [
            " ".join(ws[i : i + n]) for n in range(len(ws), 1, -1) for i in range(len(ws) - n + 1)
        ]
    return sorted(
        (p for p in dict.fromkeys(phrases) if len(words(p)) > 1), key=lambda p: -len(words(p))
    )


def _unit_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix)  # a zero row stays 0


def build_feedback(
    index: TopicIndex, votes: Sequence[Votes], papers: Mapping[str, PaperText]
) -> tuple[Feedback | None, list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    """Each voted paper scored once against today's papers, however many readers voted on it;
    and per entry of ``votes``, its (liked, disliked) rows. A vote on a paper not in ``papers``
    (no longer stored) is left out."""
    voted = list(
        dict.fromkeys(pid for v in votes for pid in (*v.liked, *v.disliked) if pid in papers)
    )
    if not voted:
        return None, [((), ()) for _ in votes]
    row = {pid: n for n, pid in enumerate(voted)}
    others = [papers[pid] for pid in voted]
    near = NEAR_MEANING if index.vectors is not None else NEAR_WORDS
    feedback = Feedback(tuple(p.title for p in others), index.paper_similarities(others), near)
    rows = [
        (
            tuple(row[p] for p in v.liked if p in row),
            tuple(row[p] for p in v.disliked if p in row),
        )
        for v in votes
    ]
    return feedback, rows


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
    votes = np.log1p([max(v or 0, 0) for v in upvotes])
    trend = votes / votes.max() if votes.size and votes.max() > 0 else np.zeros(len(upvotes))
    fresh = 0.5 ** (np.clip(ages_days, 0, None) / 3.0)
    return (1.0 + TRENDING_BOOST * trend + FRESHNESS_BOOST * fresh).astype(np.float32)


@dataclass(frozen=True)
class SubscriberRequest:
    """One subscriber's part of a ranking run: topic rows into the score matrix, and limits."""

    key: int
    topic_rows: tuple[int, ...]
    max_papers: int
    exclude: frozenset[str] = frozenset()
    liked: tuple[int, ...] = ()  # rows into Feedback.similarity
    disliked: tuple[int, ...] = ()

    @property
    def votes(self) -> int:
        return len(self.liked) + len(self.disliked)


@dataclass(frozen=True)
class Feedback:
    """The papers readers voted on, as queries: how close each of today's papers is to each.

    Nearest neighbour rather than one averaged profile vector: a reader who liked a paper on
    speech and one on graph learning likes two things, and their average is neither."""

    titles: tuple[str, ...]  # of the voted papers, for reasons
    similarity: np.ndarray  # (voted papers x today's papers) cosine
    near: float  # similarity from which a paper counts as close to a voted one

    def lift(self, request: SubscriberRequest) -> np.ndarray:
        """(papers) the log of the factor each paper's score is multiplied by for ``request``."""
        return self.lifts([request])[0]

    def lifts(self, requests: Sequence[SubscriberRequest]) -> np.ndarray:
        """(requests x papers) :meth:`lift` for many readers at once: one gather over their
        voted rows, padded with a row of zeros, where a dozen small NumPy calls per reader
        cost 4 s of a daily run with 100,000 voters."""
        weights = np.array(
            [FEEDBACK_WEIGHT * min(1.0, r.votes / FULL_FEEDBACK_VOTES) for r in requests],
            dtype=np.float32,
        )
        liked = self._closeness_of([r.liked for r in requests])
        disliked = self._closeness_of([r.disliked for r in requests])
        return weights[:, None] * (liked - disliked)

    def _closeness_of(self, rows: Sequence[tuple[int, ...]]) -> np.ndarray:
        """(len(rows) x papers) 0..1: how far above ``near`` each paper's similarity to the
        closest of each tuple of rows is; 0 for every paper where a tuple is empty."""
        padding = len(self.similarity)  # the zero row: closeness 0, as for no rows at all
        width = max(map(len, rows), default=0) or 1
        index = np.full((len(rows), width), padding, dtype=np.int64)
        reader, place, row = _ragged(rows)
        index[reader, place] = row
        zero_row = np.zeros((1, self.similarity.shape[1]), dtype=self.similarity.dtype)
        table = np.vstack([self.similarity, zero_row])
        best = table[index].max(axis=1)
        return np.clip(best - self.near, 0.0, None) / (1.0 - self.near)

    def nearest_liked(self, request: SubscriberRequest, paper: int) -> str | None:
        """The title of the liked paper that lifted ``paper``, if one did."""
        if not request.liked:
            return None
        rows = list(request.liked)
        closest = rows[int(self.similarity[rows, paper].argmax())]
        return self.titles[closest] if self.similarity[closest, paper] > self.near else None


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
    topic_rows: np.ndarray  # (subscribers x most topics) each one's topic rows, -1 padded
    quiet: np.ndarray  # (subscribers x most topics) True: that topic has nothing new today
    passing: np.ndarray  # (topics x papers) scores at or above the threshold, else 0

    def row_of(self) -> dict[int, int]:
        return {key: row for row, key in enumerate(self.keys)}

    def quiet_topics(self, row: int) -> list[int]:
        """Rows of the subscriber's topics with no new paper above the threshold today."""
        return [int(t) for t, q in zip(self.topic_rows[row], self.quiet[row], strict=True) if q]


def pick_papers(
    scores: np.ndarray,
    requests: Sequence[SubscriberRequest],
    signals: np.ndarray | None = None,
    threshold: float = LEXICAL_THRESHOLD,
    paper_ids: Sequence[str] | None = None,
    gate: np.ndarray | None = None,
    feedback: Feedback | None = None,
) -> PickTable:
    """Each subscriber's best papers, relevance first, every topic with a match covered.

    Per block of subscribers: a sparse (subscribers x topics) matrix times the thresholded
    (topics x papers) scores gives relevance; each of the subscriber's topics has its best
    new paper lifted into the top k (the strongest topics first when there are more topics
    than slots); ``argpartition`` takes the top k and a gather finds which topic contributed
    most to each pick. ``paper_ids`` is needed only for requests that exclude already-sent
    papers; ``gate`` (:meth:`TopicIndex.threshold_scores`) is what the threshold tests, when
    it differs from the scores. ``feedback`` (the requests' liked and disliked papers) scales
    the scores of papers that passed: a vote reorders relevant papers, and never lets one in.
    """
    gate = scores if gate is None else gate
    passing = np.where(gate >= threshold, scores, 0.0).astype(np.float32)
    boost = signals if signals is not None else np.ones(scores.shape[1], dtype=np.float32)
    position = {pid: i for i, pid in enumerate(paper_ids or [])}
    excluded = [[position[pid] for pid in r.exclude if pid in position] for r in requests]
    # Each topic's best papers: enough to choose from, and one always left after exclusions
    depth = min(max(map(len, excluded), default=0) + COVER_CHOICES, scores.shape[1])
    topic_best = _best_papers(np.vstack([passing * boost, np.zeros((1, scores.shape[1]))]), depth)
    k = min(max((r.max_papers for r in requests), default=0), scores.shape[1])
    width = max((len(r.topic_rows) for r in requests), default=1) or 1
    padded_scores = np.vstack([scores, np.zeros((1, scores.shape[1]), dtype=scores.dtype)])
    parts = [
        _pick_block(
            requests[s : s + PICK_CHUNK],
            excluded[s : s + PICK_CHUNK],
            _Day(passing, padded_scores, boost, topic_best, feedback),
            k,
            width,
        )
        for s in range(0, len(requests), PICK_CHUNK)
    ]
    return PickTable(
        [r.key for r in requests],
        *(
            np.vstack([p[n] for p in parts]) if parts else np.zeros((0, k), dtype=dtype)
            for n, dtype in enumerate([np.int32, np.int32, np.float32, np.float32])
        ),
        *(
            np.vstack([p[n] for p in parts]) if parts else np.zeros((0, width), dtype=dtype)
            for n, dtype in [(4, np.int32), (5, bool)]
        ),
        passing=passing,
    )


@dataclass(frozen=True)
class _Day:
    """The day's matrices every block of subscribers reads."""

    passing: np.ndarray  # (topics x papers) thresholded scores
    padded_scores: np.ndarray  # (topics + 1 x papers) raw scores, last row all zero (padding)
    boost: np.ndarray  # (papers) trending and freshness multiplier
    best: tuple[np.ndarray, np.ndarray]  # per topic (+ padding): best papers and their values
    feedback: Feedback | None = None


def _best_papers(values: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``depth`` best columns and values, best first (ties: lower column first)."""
    if depth == 0:
        return np.zeros((len(values), 0), np.int64), np.zeros((len(values), 0), np.float32)
    top = np.argpartition(-values, depth - 1, axis=1)[:, :depth]
    top_values = np.take_along_axis(values, top, axis=1)
    order = np.lexsort((top, -top_values), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_values, order, axis=1)


def _pick_block(
    block: Sequence[SubscriberRequest],
    excluded: Sequence[list[int]],
    day: _Day,
    k: int,
    width: int,
) -> tuple[np.ndarray, ...]:
    n_topics = day.passing.shape[0]
    subscriber, place, topic = _ragged([r.topic_rows for r in block])
    membership = sp.csr_matrix(
        (np.ones(len(topic), dtype=np.float32), topic, _row_starts(subscriber, len(block))),
        shape=(len(block), n_topics),
    )
    relevance = np.asarray(membership @ day.passing)
    final = relevance * day.boost
    voters = [row for row, request in enumerate(block) if request.votes]
    if day.feedback is not None and voters:
        lifts = day.feedback.lifts([block[row] for row in voters])
        final[voters] *= np.exp(lifts)  # > 0: a vote never drops a paper
    rows_out, _, papers_out = _ragged(excluded)
    final[rows_out, papers_out] = 0.0
    own = np.full((len(block), width), n_topics, dtype=np.int64)
    own[subscriber, place] = topic
    covering, has_new = _covering_papers(final, own, day.best, block)
    topic_rows = np.where(own == n_topics, -1, own).astype(np.int32)
    quiet = (topic_rows >= 0) & ~has_new
    lifted = final.copy()
    rows, cols = np.nonzero(covering >= 0)
    lifted[rows, covering[rows, cols]] += np.float32(1e6)  # above any score: into the top k
    # in lifted order, so the row's own limit below never cuts a covering paper
    top, _ = _best_papers(lifted, k)
    limits = np.array([r.max_papers for r in block])[:, None]
    top_scores = np.where(
        np.arange(k)[None, :] < limits, np.take_along_axis(final, top, axis=1), 0.0
    )
    order = np.lexsort((top, -top_scores), axis=1)  # shown best first; ties by paper position
    papers = np.take_along_axis(top, order, axis=1).astype(np.int32)
    picked = np.take_along_axis(top_scores, order, axis=1)
    empty = picked <= 0
    contribution = day.padded_scores[own[:, None, :], papers[:, :, None]]  # (block x k x width)
    best = np.take_along_axis(own, contribution.argmax(axis=2), axis=1).astype(np.int32)
    papers[empty] = -1
    best[empty] = -1
    relevance_picked = np.take_along_axis(relevance, np.where(empty, 0, papers), axis=1)
    return (
        papers,
        best,
        np.where(empty, 0, picked).astype(np.float32),
        np.where(empty, 0, relevance_picked).astype(np.float32),
        topic_rows,
        quiet,
    )


def _covering_papers(
    final: np.ndarray,
    own: np.ndarray,
    topic_best: tuple[np.ndarray, np.ndarray],
    block: Sequence[SubscriberRequest],
) -> tuple[np.ndarray, np.ndarray]:
    """For each (subscriber, topic): the paper that covers the topic, kept (>= 0) for the
    subscriber's ``max_papers`` strongest topics; and whether the topic has a new paper at all.

    A topic's candidates are its best papers above the threshold (deep enough that exclusions
    cannot use them all up) that score nearly as well for it as its best one; the one covering
    it is the candidate the subscriber scores highest overall, so a paper squarely on two of
    their topics covers both with one slot, while a paper that only touches the topic never
    stands in for one that is about it.
    ``final`` is zero where a paper is excluded for the subscriber.
    """
    best_papers, best_values = topic_best
    if best_papers.shape[1] == 0:  # no papers today
        return np.full(own.shape, -1), np.zeros(own.shape, dtype=bool)
    candidates = best_papers[own]  # (block x width x depth)
    overall = final[np.arange(len(own))[:, None, None], candidates]
    topic_values = best_values[own]
    squarely = topic_values >= COVER_RATIO * topic_values.max(axis=2, keepdims=True)
    value = np.where((topic_values > 0) & squarely, overall, 0.0)
    first = value.argmax(axis=2)
    paper = np.take_along_axis(candidates, first[:, :, None], axis=2)[:, :, 0]
    strength = np.take_along_axis(value, first[:, :, None], axis=2)[:, :, 0]
    has_new = strength > 0
    strength_rank = np.argsort(np.argsort(-strength, axis=1, kind="stable"), axis=1)
    limits = np.array([r.max_papers for r in block])[:, None]
    return np.where(has_new & (strength_rank < limits), paper, -1), has_new


def _ragged(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list of int lists of any lengths, flat: (each value's row, its place in its row, the
    value). Indexing a block of 10,000 subscribers with these once replaces 10,000 small
    NumPy assignments."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    row_of = np.repeat(np.arange(len(rows)), lengths)
    place = np.arange(len(row_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    values = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(row_of))
    return row_of, place, values


def _row_starts(row_of: np.ndarray, rows: int) -> np.ndarray:
    """CSR row pointers for values grouped by row (as :func:`_ragged` returns them)."""
    starts = np.zeros(rows + 1, dtype=np.int64)
    starts[1:] = np.cumsum(np.bincount(row_of, minlength=rows))
    return starts


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
            if request is not None and request.liked:
                sentence = self._with_liked(request, paper, sentence)
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
        return f"Like “{snippet(liked, LIKED_TITLE_CHARS)}”, which you liked. {sentence}"

    def _explained(self, topic: int, paper: int) -> tuple[Evidence, str]:
        """The evidence for (topic, paper) and its sentence, worked out once per pair."""
        found = self._cache.get((topic, paper))
        if found is None:
            evidence = self.index.evidence(self.topics[topic], paper)
            found = self._cache[(topic, paper)] = (evidence, evidence.sentence())
        return found


def rank_profiles(
    papers: Sequence[PaperText],
    profiles: dict[str, Sequence[str]],
    top: int,
    threshold: float = 0.0,
    encoder: Encoder | None = None,
    votes: Mapping[str, Votes] | None = None,
) -> dict[str, list[Pick]]:
    """Rank a papers file for each named profile (the ``digest-eval rank`` command and evaluation).
    A profile's ``votes`` are papers of the file: they teach the ranking and are left out of
    its output."""
    index = TopicIndex(papers, encoder=encoder)
    profiles = {q: [" ".join(t.lower().split()) for t in ts] for q, ts in profiles.items()}
    topics = list(dict.fromkeys(t for ts in profiles.values() for t in ts))
    row_of = {t: i for i, t in enumerate(topics)}
    scores = index.score_topics(topics)
    keys = list(profiles)
    said = [(votes or {}).get(q, Votes()) for q in keys]
    feedback, vote_rows = build_feedback(index, said, {p.arxiv_id: p for p in papers})
    requests = [
        SubscriberRequest(
            n,
            tuple(row_of[t] for t in profiles[q]),
            top,
            frozenset((*said[n].liked, *said[n].disliked)),
            *vote_rows[n],
        )
        for n, q in enumerate(keys)
    ]
    gate = index.threshold_scores(topics, scores)
    table = pick_papers(
        scores,
        requests,
        threshold=threshold,
        paper_ids=index.ids,
        gate=gate,
        feedback=feedback,
    )
    explainer = Explainer(index, topics, table, requests, feedback)
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
