"""Ranking at scale: distinct topics scored once + sparse per-subscriber picks, against a naive
per-subscriber BM25 loop measured on a sample in the same run.

Run: .venv/bin/python -m bench.bench_ranking [--subscribers 1000000] [--topics 20000] [--papers 1000]
"""

from __future__ import annotations

import argparse
import random
import resource
import time

from bench.corpus import papers as make_papers
from bench.corpus import topics as make_topics
from digest.ranking import SubscriberRequest, TopicIndex, paper_signals, pick_papers


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--topics", type=int, default=20_000)
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--naive-sample", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(3)
    papers = make_papers(args.papers)
    topics = make_topics(args.topics)
    requests = [SubscriberRequest(n, tuple(rng.sample(range(len(topics)), rng.randint(1, 5))), 10)
                for n in range(args.subscribers)]
    print(f"{args.subscribers:,} subscribers, {len(topics):,} distinct topics, {len(papers):,} papers, top-10 each")

    start = time.perf_counter()
    index = TopicIndex(papers)
    scores = index.score_topics(topics)
    scored = time.perf_counter()
    signals = paper_signals([p.upvotes for p in papers], [0.0] * len(papers))
    table = pick_papers(topics, scores, requests, signals)
    done = time.perf_counter()
    vectorised = done - start
    total_picks = int((table.papers >= 0).sum())
    print(f"vectorised: index+score topics {scored - start:6.2f} s, picks {done - scored:6.2f} s, "
          f"total {done - start:6.2f} s, {total_picks:,} picks, peak RSS {peak_rss_mb():,.0f} MB")

    sample = requests[: args.naive_sample]
    start = time.perf_counter()
    for request in sample:  # what a per-subscriber implementation does: score every paper for every topic
        own = [topics[t] for t in request.topic_rows]
        own_index = TopicIndex(papers)
        pick_papers(own, own_index.score_topics(own), [SubscriberRequest(0, tuple(range(len(own))), 10)], signals)
    per_subscriber = (time.perf_counter() - start) / len(sample)
    naive_total = per_subscriber * args.subscribers
    print(f"naive loop: {per_subscriber * 1000:6.1f} ms per subscriber on a sample of {len(sample)}, "
          f"{naive_total:,.0f} s projected for {args.subscribers:,}")
    print(f"ratio: vectorised is {naive_total / vectorised:,.0f}x faster than the naive loop")
    target = "met" if vectorised < 60 and peak_rss_mb() < 4096 else "NOT met"
    print(f"target (< 60 s, < 4 GB): {target}")


if __name__ == "__main__":
    main()
