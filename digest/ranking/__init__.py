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

Measured on the development set in tests/fixtures/ranking-dev (docs/ranking.md): the choices above (title weight, normalisation,
sum over topics, cosine added unweighted) are the ones that held up there; bigram phrases,
corpus acronym expansion, pseudo-relevance feedback, LSA, neighbour smoothing and static
word vectors did not help and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from digest.ranking.index import (
    K1,
    LEXICAL_THRESHOLD,
    SEMANTIC_THRESHOLD,
    TITLE_WEIGHT,
    B,
    Encoder,
    PaperText,
    TopicIndex,
    paper_passage,
)
from digest.ranking.picks import (
    FEEDBACK_WEIGHT,
    FRESHNESS_BOOST,
    FULL_FEEDBACK_VOTES,
    NEAR_MEANING,
    NEAR_WORDS,
    TRENDING_BOOST,
    Feedback,
    PickTable,
    SubscriberRequest,
    build_feedback,
    paper_signals,
    pick_papers,
)
from digest.ranking.profile import DayTopics, describe_profile, interests
from digest.ranking.reasons import Evidence, Explainer, Pick
from digest.ranking.words import words
from digest.records import Votes
from digest.subscriptions import normalize_topic

__all__ = [
    "B",
    "FEEDBACK_WEIGHT",
    "FRESHNESS_BOOST",
    "FULL_FEEDBACK_VOTES",
    "K1",
    "LEXICAL_THRESHOLD",
    "NEAR_MEANING",
    "NEAR_WORDS",
    "SEMANTIC_THRESHOLD",
    "TITLE_WEIGHT",
    "TRENDING_BOOST",
    "Encoder",
    "Evidence",
    "Explainer",
    "DayTopics",
    "Feedback",
    "PaperText",
    "Pick",
    "PickTable",
    "SubscriberRequest",
    "TopicIndex",
    "build_feedback",
    "describe_profile",
    "interests",
    "paper_passage",
    "paper_signals",
    "pick_papers",
    "plain_bm25_ranking",
    "rank_profiles",
]


def rank_profiles(
    papers: Sequence[PaperText],
    profiles: Mapping[str, Sequence[str]],
    top: int,
    threshold: float = 0.0,
    encoder: Encoder | None = None,
    votes: Mapping[str, Votes] | None = None,
) -> dict[str, list[Pick]]:
    """Rank a papers file for each named profile (the ``digest-eval rank`` command and evaluation).
    A profile's ``votes`` are papers of the file: they teach the ranking and are left out of
    its output."""
    profiles = {q: [normalize_topic(t) for t in ts] for q, ts in profiles.items()}
    day = DayTopics.of(list(profiles.values()))
    index = TopicIndex(papers, encoder=encoder, topic_authors=day.authors)
    scores = index.score_topics(day.ranked)
    keys = list(profiles)
    said = [(votes or {}).get(q, Votes()) for q in keys]
    feedback, vote_rows = build_feedback(index, said, {p.arxiv_id: p for p in papers})
    requests = []
    for n, q in enumerate(keys):
        ranked, subjects = day.rows(profiles[q])
        requests.append(
            SubscriberRequest(
                n,
                ranked,
                top,
                frozenset((*said[n].liked, *said[n].disliked)),
                *vote_rows[n],
                excluded_topics=subjects,
                interests=interests(index, [day.ranked[r] for r in ranked], top),
            )
        )
    gate = index.threshold_scores(day.ranked, scores)
    table = pick_papers(
        scores,
        requests,
        threshold=threshold,
        paper_ids=index.ids,
        gate=gate,
        feedback=feedback,
        excluded_by=index.excluded(day.subjects),
    )
    explainer = Explainer(index, day.ranked, table, requests, feedback)
    return {q: explainer.picks(n) for n, q in enumerate(keys)}


def plain_bm25_ranking(
    papers: Sequence[PaperText], profiles: Mapping[str, Sequence[str]], top: int
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
