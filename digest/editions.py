"""One edition: which papers are candidates, what each subscriber gets, and the email's content
(its message is :func:`digest.emails.digest`'s).

Pure functions over plain records; :mod:`digest.pipeline` and the CLI feed them from storage.
A delivery row stores its picks (ids, topic, reason), so sending renders exactly what was
ranked, however often a send is retried.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from digest.ranking import (
    LEXICAL_THRESHOLD,
    DayTopics,
    Encoder,
    Explainer,
    SubscriberRequest,
    TopicIndex,
    build_feedback,
    interests,
    paper_signals,
    pick_papers,
)
from digest.ranking.authors import display_name
from digest.records import SubscriberRecord, Votes
from digest.rendering import DigestContent, paper_item
from digest.sources import PaperRecord
from digest.subscriptions import (
    excluded_subject,
    followed_author,
    interest_topics,
    paper_of_topic,
    papers_of_topics,
)
from digest.text import snippet
from digest.tokens import Tokens

CANDIDATE_WINDOW = dt.timedelta(days=2)  # papers first seen this recently are "new"
TRENDING_LINE_CHARS = 140  # a trending paper gets one line, not a paragraph
TOPIC_TITLE_CHARS = 50  # a "more like this paper" topic, shown by the start of its title
TRENDING_COUNT = 3  # the "Trending today" section: the day's most upvoted papers not picked


class EditionPlan:
    """Every subscriber's picks for one edition, as stored in their delivery row.

    Picks are explained as they are read: the daily run streams them into the database,
    whose server takes in one row on the other core while the next is explained here.
    ``picks`` and ``quiet`` read them all, by subscriber id."""

    def __init__(
        self,
        papers: dict[str, PaperRecord],
        candidates: int,
        subscribers: Sequence[SubscriberRecord],
        ranked: Callable[[int], tuple[list[dict[str, Any]], list[str]]],
    ) -> None:
        self.papers = papers  # the candidates, and the papers "more like this" topics name
        self.candidates = candidates  # how many of ``papers`` were today's candidates
        self.subscribers = subscribers
        self._ranked = ranked

    def digests(self) -> Iterator[tuple[SubscriberRecord, list[dict[str, Any]], list[str]]]:
        """(subscriber, picks, quiet topics) in the order subscribers were given. Picks are
        [{arxiv_id, topic, reason, also?}] best first, then topic None: a trending paper.
        Quiet topics are theirs with nothing new today."""
        for row, sub in enumerate(self.subscribers):
            yield sub, *self._ranked(row)

    @cached_property
    def _by_id(self) -> dict[int, tuple[list[dict[str, Any]], list[str]]]:
        return {sub.id: (picks, quiet) for sub, picks, quiet in self.digests()}

    @property
    def picks(self) -> dict[int, list[dict[str, Any]]]:
        return {sid: picks for sid, (picks, _) in self._by_id.items()}

    @property
    def quiet(self) -> dict[int, list[str]]:
        return {sid: quiet for sid, (_, quiet) in self._by_id.items()}


def paper_age_days(paper: PaperRecord, now: dt.datetime) -> float:
    seen = paper.published_at or paper.first_seen_at or now
    return max((now - seen).total_seconds() / 86400, 0.0)


def most_upvoted(papers: Sequence[PaperRecord]) -> list[PaperRecord]:
    """Today's upvoted papers, most upvoted first: sorted once per edition, as every
    subscriber's "Trending today" section is taken from the top of this list."""
    voted = [p for p in papers if (p.upvotes or 0) > 0]
    return sorted(voted, key=lambda p: (-(p.upvotes or 0), p.arxiv_id))


class StoredPicks:
    """The pick dicts a delivery row stores, one shared object per distinct pick.

    A pick is stored as {arxiv_id, topic, reason, also?}: a million subscribers get a few
    thousand distinct (paper, topic, reason) picks a day, so each is built once and shared,
    and storage serialises each once (the rank score is not stored: nothing renders it)."""

    def __init__(self, explainer: Explainer, most_upvoted: Sequence[PaperRecord]) -> None:
        self.explainer = explainer
        self.by_votes = [
            (p.arxiv_id, {"arxiv_id": p.arxiv_id, "topic": None, "reason": None})
            for p in most_upvoted
        ]
        self._shared: dict[tuple[int, int, str, tuple[str, ...]], dict[str, Any]] = {}

    def matched(self, row: int) -> list[dict[str, Any]]:
        """Row ``row``'s picks for its topics, best first."""
        ids, topics, shared = self.explainer.index.ids, self.explainer.topics, self._shared
        result = []
        for paper, topic, reason, also, _evidence in self.explainer.choices(row):
            key = (paper, topic, reason, also)
            pick = shared.get(key)
            if pick is None:
                pick = shared[key] = {
                    "arxiv_id": ids[paper],
                    "topic": topics[topic],
                    "reason": reason,
                }
                if also:  # most picks match one topic: a million rows need not carry []
                    pick["also"] = list(also)
            result.append(pick)
        return result

    def trending(self, picked: Sequence[dict[str, Any]], sent: set[str]) -> list[dict[str, Any]]:
        """The day's most upvoted papers that are neither picked nor already sent, as picks
        without a topic (the "Trending today" section)."""
        picked_ids = {p["arxiv_id"] for p in picked}
        fresh = (p for i, p in self.by_votes if i not in sent and i not in picked_ids)
        return list(itertools.islice(fresh, TRENDING_COUNT))


def plan_edition(
    papers: Sequence[PaperRecord],
    subscribers: Sequence[SubscriberRecord],
    already_sent: Mapping[int, set[str]],
    now: dt.datetime,
    threshold: float = LEXICAL_THRESHOLD,
    encoder: Encoder | None = None,
    votes: Mapping[int, Votes] | None = None,
    known_papers: Mapping[str, PaperRecord] | None = None,
) -> EditionPlan:
    """Rank the candidates for every subscriber at once (distinct topics scored once).

    ``threshold`` must suit ``encoder`` (see :func:`digest.semantic.ranking_mode`). ``votes``:
    the readers' "more / less like this". ``known_papers``: the stored papers that votes and
    "more like this paper" topics name (a topic whose paper is missing matches nothing)."""
    known = known_papers or {}
    day = DayTopics.of([sub.topics for sub in subscribers])
    topics = day.ranked
    topic_papers = {
        t: known[pid] for t in topics if (pid := paper_of_topic(t)) is not None and pid in known
    }
    index = TopicIndex(
        papers, encoder=encoder, topic_papers=topic_papers, topic_authors=day.authors
    )
    said = [(votes or {}).get(sub.id, Votes()) for sub in subscribers]
    feedback, vote_rows = build_feedback(index, said, known)
    requests = []
    for n, sub in enumerate(subscribers):
        rows, subjects = day.rows(sub.topics)
        requests.append(
            SubscriberRequest(
                sub.id,
                rows,
                sub.max_papers,
                frozenset(already_sent.get(sub.id, ()))
                # a paper is never "similar to itself"; no paper topics today, nothing to look for
                | (papers_of_topics(sub.topics) if topic_papers else set()),
                *vote_rows[n],
                excluded_topics=subjects,
                interests=interests(index, [topics[r] for r in rows], sub.max_papers),
            )
        )
    scores = index.score_topics(topics) if topics else np.zeros((0, len(papers)), dtype=np.float32)
    signals = paper_signals([p.upvotes for p in papers], [paper_age_days(p, now) for p in papers])
    gate = index.threshold_scores(topics, scores)
    table = pick_papers(
        scores,
        requests,
        signals,
        threshold,
        index.ids,
        gate,
        feedback,
        index.excluded(day.subjects),
    )
    stored = StoredPicks(Explainer(index, topics, table, requests, feedback), most_upvoted(papers))
    with_quiet = set(np.flatnonzero(table.quiet.any(axis=1)).tolist())  # most rows have none

    def ranked(row: int) -> tuple[list[dict[str, Any]], list[str]]:
        picks = stored.matched(row)
        if subscribers[row].show_trending:
            picks += stored.trending(picks, already_sent.get(subscribers[row].id, set()))
        quiet = [topics[t] for t in table.quiet_topics(row)] if row in with_quiet else []
        return picks, quiet

    # the topics' own papers too: the email names a "more like this paper" topic by its title
    shown = {p.arxiv_id: p for p in [*topic_papers.values(), *papers]}
    return EditionPlan(shown, len(papers), subscribers, ranked)


def digest_content(
    subscriber: SubscriberRecord,
    picks: Sequence[Mapping[str, Any]],
    papers: Mapping[str, PaperRecord],
    edition: dt.date,
    tokens: Tokens,
    base_url: str,
    quiet_topics: Sequence[str] = (),
    titles: tuple[str, str] = ("Paper Digest", ""),
) -> DigestContent:
    """What one subscriber's email shows; picks without a topic are the "Trending today"
    section. ``quiet_topics``: those of their topics that had nothing new. A "more like this
    paper" topic is shown by its paper's title, when ``papers`` holds it. ``titles``: the
    list's, for the heading and the subject (:func:`digest.lists.titles`)."""

    def label(topic: str) -> str:
        return topic_label(topic, papers)

    matched, trending = [], []
    for pick in picks:
        paper = papers.get(pick["arxiv_id"])
        if paper is None:
            continue
        if pick.get("topic"):
            also = [label(t) for t in pick.get("also", ())]
            reason = pick.get("reason") or ""
            matched.append(paper_item(paper, label(pick["topic"]), reason, also, edition=edition))
        else:
            trending.append(paper_item(paper, snippet_chars=TRENDING_LINE_CHARS, edition=edition))
    prefs, unsub = subscriber_links(subscriber, tokens, base_url)
    link = digest_url(subscriber, edition, tokens, base_url)
    quiet_set = set(quiet_topics)
    # only subjects: a person followed publishes a few times a year, a line on every other
    # day's digest would be noise (and an exclusion is never news)
    quiet = tuple(label(t) for t in interest_topics(subscriber.topics) if t in quiet_set)
    return DigestContent(
        edition,
        subscriber.email,
        tuple(label(t) for t in subscriber.topics if excluded_subject(t) is None),
        tuple(matched),
        tuple(trending),
        prefs,
        unsub,
        quiet,
        link,
        tuple(vote_url(link, item.arxiv_id) for item in matched),
        *titles,
    )


def topic_label(topic: str, papers: Mapping[str, PaperRecord]) -> str:
    """A topic as people read it: a "more like this paper" topic by its paper's title, a
    followed author by their name ("5 new papers on agents and Yann LeCun")."""
    author = followed_author(topic)
    if author is not None:
        return display_name(author)
    pid = paper_of_topic(topic)
    if pid is None:
        return topic
    paper = papers.get(pid)
    return f"like “{snippet(paper.title, TOPIC_TITLE_CHARS)}”" if paper else f"like arXiv {pid}"


def subscriber_links(
    subscriber: SubscriberRecord, tokens: Tokens, base_url: str
) -> tuple[str, str]:
    """(preferences URL, unsubscribe URL), each with its own signed token."""
    prefs = tokens.make("preferences", subscriber.id, subscriber.email)
    unsub = tokens.make("unsubscribe", subscriber.id, subscriber.email)
    return f"{base_url}/preferences/{prefs}", f"{base_url}/unsubscribe/{unsub}"


def digest_url(
    subscriber: SubscriberRecord, edition: dt.date, tokens: Tokens, base_url: str
) -> str:
    """One day's digest of this reader's, in a browser; its papers' vote pages hang below it,
    so a digest signs one link for all of them (a signature per paper cost ~20 µs each, a
    tenth of a message's whole sending time)."""
    token = tokens.make("digest", subscriber.id, subscriber.email, bound=edition.isoformat())
    return f"{base_url}/digest/{token}"


def vote_url(digest_link: str, arxiv_id: str) -> str:
    """The page where the reader says "more / less like this" about a paper of that digest."""
    return f"{digest_link}/vote/{arxiv_id}"


def feed_url(subscriber: SubscriberRecord, tokens: Tokens, base_url: str) -> str:
    """The reader's private Atom feed of every paper they were sent."""
    return f"{base_url}/feed/{tokens.make('feed', subscriber.id, subscriber.email)}"
