"""Benchmark inputs built from the real recorded papers (tests/fixtures), deterministic by seed."""

from __future__ import annotations

import random
from pathlib import Path

from digest.sources import PaperRecord, parse_response

FEEDS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "feeds"


def real_papers() -> list[PaperRecord]:
    seen: dict[str, PaperRecord] = {}
    for path in sorted(FEEDS.glob("*")):
        if path.suffix in (".json", ".xml") and "error" not in path.name:
            for paper in parse_response(path.read_bytes()).papers:
                seen.setdefault(paper.arxiv_id, paper)
    return list(seen.values())


def papers(count: int, seed: int = 7) -> list[PaperRecord]:
    """``count`` papers: the real ones, then recombinations of real titles and abstracts."""
    rng = random.Random(seed)
    base = real_papers()
    out = list(base[:count])
    while len(out) < count:
        a, b = rng.choice(base), rng.choice(base)
        out.append(
            PaperRecord(
                arxiv_id=f"9999.{len(out):05d}",
                title=a.title,
                abstract=b.abstract,
                upvotes=rng.choice([None, 0, 3, 12, 48]),
            )
        )
    return out


def topics(count: int, seed: int = 11) -> list[str]:
    """``count`` distinct 1-3 word topics drawn from real title words."""
    rng = random.Random(seed)
    vocab = sorted(
        {w.lower().strip(".,:;()") for p in real_papers() for w in p.title.split() if len(w) > 3}
    )
    found: set[str] = set()
    while len(found) < count:
        found.add(" ".join(rng.sample(vocab, rng.randint(1, 3))))
    return sorted(found)
