"""Each subscriber's picks from the day's (topics x papers) scores, as arrays.

Relevance is the sum of a subscriber's topics' scores that pass the threshold; every topic
with a paper above it gets at least one slot (its best paper); trending and freshness scale
relevance by at most +15 %; reader feedback ("more / less like this") scales the papers that
passed. Arrays, not objects, so a million subscribers x 10 picks stay cheap.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from digest.ranking.index import LEXICAL_THRESHOLD, PaperText, TopicIndex
from digest.records import Votes

TRENDING_BOOST = 0.10
FRESHNESS_BOOST = 0.05
COVER_CHOICES = 10  # a topic's best papers among which the one covering it is chosen
COVER_RATIO = 0.9  # ... if it scores at least this share of the topic's best one
# Reader feedback ("more / less like this"): a paper's score is multiplied by
# exp(weight x (closeness to the nearest liked paper - closeness to the nearest disliked one)),
# where closeness counts only similarity above NEAR_*: the neighbourhood of the voted paper
# itself, not its whole field. Measured on the dev set (docs/ranking.md): the papers a reader
# dislikes are near misses, and papers merely related to them are *more* often relevant than
# not, so a plain centroid (Rocchio) or any similarity pushed papers of the reader's own topic
# down; the near-neighbour form never cost a profile anything.
FEEDBACK_WEIGHT = 1.0
FULL_FEEDBACK_VOTES = 4  # fewer votes count in proportion: topics lead while votes are few
# ... and Rocchio: the reader's profile moves toward what they liked and away from what they
# did not, alpha x topics + beta x mean(liked) - gamma x mean(disliked), over every paper's cosine
# with the voted ones (not only the near ones). SMART's classic weights (Buckley, Salton and
# Allan, 1994), not tuned here; alpha = 1 keeps the reader's own topics as they are. Only once
# a reader has ROCCHIO_VOTES votes: the mean of a few papers is a noisy estimate of what they
# want, and two liked papers of a reader of two subjects are often both on one of them, whose
# mean then drags the other down (dev set, four votes: one profile -0.17 nDCG@10, the mean
# -0.015); with eight votes it gained on every seed's mean (docs/ranking.md).
ROCCHIO_LIKED = 0.75
ROCCHIO_DISLIKED = 0.15
ROCCHIO_VOTES = 8
# Topics at least this close in MiniLM are one interest: above every pair of topics of two
# unrelated dev-set profiles (at most 0.49), reached by "robotics" and "autonomous driving"
INTEREST_MEANING = 0.55
NEAR_MEANING = 0.5  # MiniLM cosine of two passages "about the same thing"
NEAR_WORDS = 0.2  # the same for idf-weighted stems (their cosines run far lower)
PICK_CHUNK = 10_000  # subscribers per block when picking; bounds memory to chunk x papers


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
    excluded_topics: tuple[int, ...] = ()  # rows into pick_papers' ``excluded_by``
    # per topic row, the interest it belongs to (:func:`interest_groups`); () each its own
    interests: tuple[int, ...] = ()

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
        liked = self._closeness_of([r.liked for r in requests])
        disliked = self._closeness_of([r.disliked for r in requests])
        return self._weights(requests)[:, None] * (liked - disliked)

    def rocchio(self, requests: Sequence[SubscriberRequest]) -> np.ndarray:
        """(requests x papers) what Rocchio adds to each paper's relevance: ROCCHIO_LIKED x
        its mean cosine with the liked papers - ROCCHIO_DISLIKED x that with the disliked
        ones. Applied to readers of ROCCHIO_VOTES votes or more only."""
        liked = self._mean_of([r.liked for r in requests])
        disliked = self._mean_of([r.disliked for r in requests])
        return ROCCHIO_LIKED * liked - ROCCHIO_DISLIKED * disliked

    @staticmethod
    def _weights(requests: Sequence[SubscriberRequest]) -> np.ndarray:
        return np.array(
            [FEEDBACK_WEIGHT * min(1.0, r.votes / FULL_FEEDBACK_VOTES) for r in requests],
            dtype=np.float32,
        )

    def _gathered(self, rows: Sequence[tuple[int, ...]]) -> np.ndarray:
        """(len(rows) x widest tuple x papers) each tuple's rows of ``similarity``, padded with
        a row of zeros."""
        padding = len(self.similarity)
        width = max(map(len, rows), default=0) or 1
        index = np.full((len(rows), width), padding, dtype=np.int64)
        reader, place, row = _ragged(rows)
        index[reader, place] = row
        zero_row = np.zeros((1, self.similarity.shape[1]), dtype=self.similarity.dtype)
        return np.vstack([self.similarity, zero_row])[index]

    def _closeness_of(self, rows: Sequence[tuple[int, ...]]) -> np.ndarray:
        """(len(rows) x papers) 0..1: how far above ``near`` each paper's similarity to the
        closest of each tuple of rows is; 0 for every paper where a tuple is empty."""
        best = self._gathered(rows).max(axis=1)
        return np.clip(best - self.near, 0.0, None) / (1.0 - self.near)

    def _mean_of(self, rows: Sequence[tuple[int, ...]]) -> np.ndarray:
        """(len(rows) x papers) each paper's mean similarity to each tuple's rows (0: none)."""
        counts = np.array([max(len(r), 1) for r in rows], dtype=np.float32)
        return self._gathered(rows).sum(axis=1) / counts[:, None]

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


def pick_papers(
    scores: np.ndarray,
    requests: Sequence[SubscriberRequest],
    signals: np.ndarray | None = None,
    threshold: float = LEXICAL_THRESHOLD,
    paper_ids: Sequence[str] | None = None,
    gate: np.ndarray | None = None,
    feedback: Feedback | None = None,
    excluded_by: np.ndarray | None = None,
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
    ``excluded_by`` (subjects x papers, :meth:`TopicIndex.excluded`) is what each request's
    ``excluded_topics`` keep out of its picks.
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
    padded_passing = np.vstack([passing, np.zeros((1, scores.shape[1]), dtype=passing.dtype)])
    parts = [
        _pick_block(
            requests[s : s + PICK_CHUNK],
            excluded[s : s + PICK_CHUNK],
            _Day(passing, padded_passing, boost, topic_best, feedback, excluded_by),
            k,
            width,
        )
        for s in range(0, len(requests), PICK_CHUNK)
    ]
    return PickTable(  # type: ignore[misc]  # mypy cannot count the starred arrays: six, then passing
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
    padded_passing: np.ndarray  # (topics + 1 x papers) ``passing``, last row all zero (padding)
    boost: np.ndarray  # (papers) trending and freshness multiplier
    best: tuple[np.ndarray, np.ndarray]  # per topic (+ padding): best papers and their values
    feedback: Feedback | None = None
    excluded_by: np.ndarray | None = None  # (subjects x papers) bool


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
    voters = [row for row, request in enumerate(block) if request.votes]
    movers = [row for row in voters if block[row].votes >= ROCCHIO_VOTES]
    if day.feedback is not None and movers:
        moved = relevance[movers] + day.feedback.rocchio([block[row] for row in movers])
        # only papers that passed: votes move the profile among them, never let one in
        relevance[movers] = np.where(relevance[movers] > 0, np.maximum(moved, 1e-6), 0.0)
    final = relevance * day.boost
    if day.feedback is not None and voters:
        lifts = day.feedback.lifts([block[row] for row in voters])
        final[voters] *= np.exp(lifts)  # > 0: a vote never drops a paper
    rows_out, _, papers_out = _ragged(excluded)
    final[rows_out, papers_out] = 0.0
    _drop_excluded_subjects(final, block, day.excluded_by)
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
    # the topic named is one the paper passed for: a word score the threshold did not count is
    # no reason
    contribution = day.padded_passing[own[:, None, :], papers[:, :, None]]  # (block x k x width)
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


def _drop_excluded_subjects(
    final: np.ndarray, block: Sequence[SubscriberRequest], excluded_by: np.ndarray | None
) -> None:
    """Zero the papers about a subject each reader excludes ("not: surveys"), in place."""
    if excluded_by is None or not any(r.excluded_topics for r in block):
        return
    reader, _, subject = _ragged([r.excluded_topics for r in block])
    membership = sp.csr_matrix(
        (np.ones(len(subject), dtype=np.float32), subject, _row_starts(reader, len(block))),
        shape=(len(block), excluded_by.shape[0]),
    )
    final[np.asarray((membership @ excluded_by.astype(np.float32)) > 0)] = 0.0


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
    # judged against the best paper the subscriber can still get: when the topic's best is
    # excluded (already sent, or the very paper a "more like this" topic names), the next
    # ones must not all fall short of it and leave a topic "quiet" that has picks
    topic_values = np.where(overall > 0, best_values[own], 0.0)
    squarely = topic_values >= COVER_RATIO * topic_values.max(axis=2, keepdims=True)
    value = np.where((topic_values > 0) & squarely, overall, 0.0)
    first = value.argmax(axis=2)
    paper = np.take_along_axis(candidates, first[:, :, None], axis=2)[:, :, 0]
    strength = np.take_along_axis(value, first[:, :, None], axis=2)[:, :, 0]
    has_new = strength > 0
    # each interest's strongest topic first, so every interest gets a slot before any gets two
    first_of_interest = _first_of_interest(strength, has_new, block, own.shape[1])
    order = np.lexsort((-strength, ~first_of_interest), axis=1)
    strength_rank = np.argsort(order, axis=1, kind="stable")
    limits = np.array([r.max_papers for r in block])[:, None]
    return np.where(has_new & (strength_rank < limits), paper, -1), has_new


def _first_of_interest(
    strength: np.ndarray, has_new: np.ndarray, block: Sequence[SubscriberRequest], width: int
) -> np.ndarray:
    """(block x width) True for the topic that covers its interest (its strongest one with a
    new paper). Without ``interests`` every topic is its own interest, so all are."""
    groups = np.tile(np.arange(width), (len(block), 1))
    for row, request in enumerate(block):
        if request.interests:
            groups[row, : len(request.interests)] = request.interests
    same = groups[:, :, None] == groups[:, None, :]  # (block x topic x other topic)
    earlier = np.arange(width)[None, :] < np.arange(width)[:, None]  # other before topic
    beats = (strength[:, None, :] > strength[:, :, None]) | (
        (strength[:, None, :] == strength[:, :, None]) & earlier[None]
    )
    return has_new & ~(same & beats & has_new[:, None, :]).any(axis=2)


def interest_groups(vectors: np.ndarray) -> tuple[int, ...]:
    """Which interest each of a reader's topics belongs to, from their MiniLM vectors: topics
    INTEREST_MEANING or closer are one, and so are topics linked through others."""
    close = vectors @ vectors.T >= INTEREST_MEANING
    group = list(range(len(vectors)))
    for a, b in zip(*np.nonzero(np.triu(close, 1)), strict=True):
        old, new = max(group[a], group[b]), min(group[a], group[b])
        group = [new if g == old else g for g in group]
    return tuple(group)


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
