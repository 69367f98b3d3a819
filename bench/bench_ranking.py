"""Ranking at scale: distinct topics scored once + sparse per-subscriber picks, against a naive
per-subscriber BM25 loop measured on a sample in the same run.

With the MiniLM weights installed it also measures the semantic half: embedding every paper
and topic the first time they are seen (once per text, stored), then the daily run reading
those vectors back from a SQLite store, as workers do. Then the same run again with reader
feedback: ``--voters`` of the subscribers (10 % by default) have 1-10 votes each on papers of
the past weeks, so the figure without votes, measured just before, is the baseline.

Run: .venv/bin/python -m bench.bench_ranking [--subscribers 1000000] [--topics 20000] [--papers 1000] [--voters 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import tempfile
import time
from collections.abc import Sequence

from bench.corpus import papers as make_papers
from bench.corpus import topics as make_topics
from digest import semantic
from digest.ranking import (
    Encoder,
    SubscriberRequest,
    TopicIndex,
    build_feedback,
    paper_passage,
    paper_signals,
    pick_papers,
)
from digest.records import Votes
from digest.sources import PaperRecord
from digest.storage import Storage


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--topics", type=int, default=20_000)
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--naive-sample", type=int, default=200)
    parser.add_argument("--voters", type=float, default=0.1, help="share of subscribers with votes")
    parser.add_argument("--voted-pool", type=int, default=1000, help="past papers votes fall on")
    args = parser.parse_args()
    rng = random.Random(3)
    papers = make_papers(args.papers)
    pool = [
        dataclasses.replace(p, arxiv_id=f"8888.{n:05d}")
        for n, p in enumerate(make_papers(args.voted_pool, seed=8))
    ]
    votes = reader_votes(rng, args.subscribers, args.voters, [p.arxiv_id for p in pool])
    topics = make_topics(args.topics)
    requests = [
        SubscriberRequest(n, tuple(rng.sample(range(len(topics)), rng.randint(1, 5))), 10)
        for n in range(args.subscribers)
    ]
    print(
        f"{args.subscribers:,} subscribers, {len(topics):,} distinct topics, {len(papers):,} papers, top-10 each"
    )

    signals = paper_signals([p.upvotes for p in papers], [0.0] * len(papers))
    vectorised = daily_run("words only", papers, topics, requests, signals, None)
    slowest = max(
        vectorised,
        daily_run("words only + votes", papers, topics, requests, signals, None, votes, pool),
    )
    if model := semantic.load_encoder():
        with tempfile.TemporaryDirectory() as tmp:
            store = Storage.from_url(f"sqlite:///{tmp}/vectors.db")
            store.db.ensure_schema(auto_upgrade=True)
            start = time.perf_counter()
            semantic.StoredEncoder(model, store.papers).encode([paper_passage(p) for p in papers])
            embedded_papers = time.perf_counter()
            semantic.StoredEncoder(model, store.papers).encode(topics)
            print(
                f"first sight: embedding {len(papers):,} papers {embedded_papers - start:6.2f} s, "
                f"{len(topics):,} topics {time.perf_counter() - embedded_papers:6.2f} s (once per text, stored)"
            )
            start = time.perf_counter()
            semantic.StoredEncoder(model, store.papers).encode([paper_passage(p) for p in pool])
            print(
                f"first sight: embedding {len(pool):,} past papers readers voted on "
                f"{time.perf_counter() - start:6.2f} s (already stored in a real run)"
            )
            fresh = semantic.MiniLM(semantic.model_dir())  # a new worker: nothing in memory
            stored = semantic.StoredEncoder(fresh, store.papers)
            for label, said in (("words + MiniLM", None), ("words + MiniLM + votes", votes)):
                seconds = daily_run(label, papers, topics, requests, signals, stored, said, pool)
                slowest = max(slowest, seconds)
            assert not fresh.cache, "the daily run recomputed vectors instead of reading them"
    else:
        print(f"(no semantic figures: {semantic.unavailable_reason()})")

    sample = requests[: args.naive_sample]
    start = time.perf_counter()
    for (
        request
    ) in sample:  # what a per-subscriber implementation does: score every paper for every topic
        own = [topics[t] for t in request.topic_rows]
        own_index = TopicIndex(papers)
        pick_papers(
            own_index.score_topics(own),
            [SubscriberRequest(0, tuple(range(len(own))), 10)],
            signals,
        )
    per_subscriber = (time.perf_counter() - start) / len(sample)
    naive_total = per_subscriber * args.subscribers
    print(
        f"naive loop: {per_subscriber * 1000:6.1f} ms per subscriber on a sample of {len(sample)}, "
        f"{naive_total:,.0f} s projected for {args.subscribers:,}"
    )
    print(f"ratio: vectorised is {naive_total / vectorised:,.0f}x faster than the naive loop")
    target = "met" if slowest < 60 and peak_rss_mb() < 4096 else "NOT met"
    print(f"target (each daily run < 60 s, < 4 GB): {target}")


def reader_votes(
    rng: random.Random, subscribers: int, share: float, pool: Sequence[str]
) -> dict[int, Votes]:
    """``share`` of the subscribers with 1-10 votes each, seven in ten of them "more like this"."""
    votes = {}
    for key in rng.sample(range(subscribers), int(subscribers * share)):
        voted = rng.sample(pool, rng.randint(1, 10))
        liked = [pid for pid in voted if rng.random() < 0.7]
        votes[key] = Votes(tuple(liked), tuple(pid for pid in voted if pid not in liked))
    return votes


def daily_run(
    label: str,
    papers: Sequence[PaperRecord],
    topics: Sequence[str],
    requests: Sequence[SubscriberRequest],
    signals,
    encoder: Encoder | None,
    votes: dict[int, Votes] | None = None,
    pool: Sequence[PaperRecord] = (),
) -> float:
    """Index, score every distinct topic, (with ``votes``: score the voted papers and give
    the voters their rows), pick for every subscriber; prints and returns seconds."""
    start = time.perf_counter()
    index = TopicIndex(papers, encoder=encoder)
    scores = index.score_topics(topics)
    gate = index.threshold_scores(topics, scores)
    feedback = None
    if votes:
        voters = list(votes)
        feedback, rows = build_feedback(
            index, [votes[k] for k in voters], {p.arxiv_id: p for p in pool}
        )
        requests = list(requests)
        for key, (liked, disliked) in zip(voters, rows, strict=True):
            requests[key] = dataclasses.replace(requests[key], liked=liked, disliked=disliked)
    scored = time.perf_counter()
    table = pick_papers(scores, requests, signals, gate=gate, feedback=feedback)
    done = time.perf_counter()
    print(
        f"{label}: index+score topics{' and votes' if votes else ''} {scored - start:6.2f} s, "
        f"picks {done - scored:6.2f} s, total {done - start:6.2f} s, "
        f"{int((table.papers >= 0).sum()):,} picks, peak RSS {peak_rss_mb():,.0f} MB"
    )
    return done - start


if __name__ == "__main__":
    main()
