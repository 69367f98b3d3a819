"""Ranking quality metrics on graded judgments (nDCG@k with gain 2^grade - 1, recall, precision),
and the merged-profile report: does a subscriber of two unrelated interests hear about both?"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digest.records import Votes
from digest.sources import PaperRecord
from digest.subscriptions import InvalidInput

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Scores:
    ndcg10: float
    recall10: float
    precision5: float


def ndcg(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10) -> float:
    gain = sum((2 ** grades.get(pid, 0) - 1) / math.log2(i + 2) for i, pid in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    best = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return gain / best if best else 0.0


def recall(ranked: Sequence[str], grades: Mapping[str, int], k: int = 10) -> float:
    relevant = {pid for pid, g in grades.items() if g >= 1}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def precision(ranked: Sequence[str], grades: Mapping[str, int], k: int = 5) -> float:
    return sum(1 for pid in ranked[:k] if grades.get(pid, 0) >= 1) / k


def score_run(run: Mapping[str, Sequence[str]], qrels: Qrels) -> dict[str, Scores]:
    """Per-profile scores plus their mean under the key ``mean``."""
    per = {
        q: Scores(ndcg(run.get(q, []), g), recall(run.get(q, []), g), precision(run.get(q, []), g))
        for q, g in qrels.items()
    }
    n = len(per) or 1
    per["mean"] = Scores(
        *(
            sum(getattr(s, f) for s in per.values()) / n
            for f in ("ndcg10", "recall10", "precision5")
        )
    )
    return per


@dataclass(frozen=True)
class MergedProfiles:
    """Sets of unrelated profiles made into one subscriber each (``"D01+D05"``), judged by the
    best of their grades, with each part's judgments kept for the coverage check."""

    profiles: dict[str, list[str]]
    qrels: Qrels
    halves: dict[str, tuple[dict[str, int], ...]]


def merge_unrelated_profiles(
    profiles: Mapping[str, Sequence[str]], qrels: Qrels, size: int = 2
) -> MergedProfiles:
    """Every set of ``size`` profiles no two of which a paper is relevant to ("unrelated")."""
    merged = MergedProfiles({}, {}, {})
    names = [q for q in profiles if q in qrels]
    for group in itertools.combinations(names, size):
        parts = [qrels[q] for q in group]
        if any(_relevant(a) & _relevant(b) for a, b in itertools.combinations(parts, 2)):
            continue
        qid = "+".join(group)
        merged.profiles[qid] = [t for q in group for t in profiles[q]]
        merged.qrels[qid] = {p: max(g.get(p, 0) for g in parts) for p in set().union(*parts)}
        merged.halves[qid] = tuple(parts)
    return merged


def topic_coverage(
    run: Mapping[str, Sequence[str]], merged: MergedProfiles, k: int = 5
) -> tuple[float, int]:
    """The share of merged subscribers whose top ``k`` holds a relevant paper for each part,
    among those where every part has one in the papers; and how many such subscribers."""
    eligible = [q for q, parts in merged.halves.items() if all(map(_relevant, parts))]
    covered = sum(
        1
        for q in eligible
        if all(_relevant(half) & set(run.get(q, [])[:k]) for half in merged.halves[q])
    )
    return (covered / len(eligible) if eligible else 0.0), len(eligible)


@dataclass(frozen=True)
class FeedbackTrial:
    """Each profile's simulated votes and the judgments left to score them on."""

    votes: dict[str, Votes]
    qrels: Qrels


def simulate_votes(
    words_run: Mapping[str, Sequence[str]], qrels: Qrels, per_side: int = 2
) -> FeedbackTrial:
    """The votes that teach the most, as a reader would cast them: for each profile, the
    ``per_side`` best-judged papers that words alone rank lowest (liked: the ranking missed
    them) and the ``per_side`` irrelevant papers words rank highest (disliked: it was fooled).
    ``words_run`` ranks every paper it scores, best first. The voted papers leave the judgments,
    as they leave the reader's digest."""
    trial = FeedbackTrial({}, {})
    for qid, grades in qrels.items():
        ranked = list(words_run.get(qid, []))
        position = {pid: n for n, pid in enumerate(ranked)}
        unranked = len(ranked)

        def rank_of(pid: str, position: dict[str, int] = position, last: int = unranked) -> int:
            return position.get(pid, last)

        relevant = [pid for pid, grade in grades.items() if grade >= 1]
        liked = sorted(relevant, key=lambda pid: (-grades[pid], -rank_of(pid), pid))[:per_side]
        disliked = [pid for pid in ranked if grades.get(pid, 0) == 0][:per_side]
        trial.votes[qid] = Votes(tuple(liked), tuple(disliked))
        voted = {*liked, *disliked}
        trial.qrels[qid] = {pid: g for pid, g in grades.items() if pid not in voted}
    return trial


def random_vote_split(
    shown: Mapping[str, Sequence[str]], qrels: Qrels, per_side: int, seed: int
) -> FeedbackTrial:
    """Votes as a reader might cast them, drawn at random (``seed``): per profile, ``per_side``
    relevant papers liked, and ``per_side`` irrelevant papers among those ``shown`` to it (the
    top of its ranking without votes: a reader dislikes what their digest showed them)
    disliked. The voted papers leave the judgments; the rest is what the votes are judged on."""
    rng = random.Random(seed)
    trial = FeedbackTrial({}, {})
    for qid, grades in qrels.items():
        relevant = sorted(pid for pid, grade in grades.items() if grade >= 1)
        missed = sorted(pid for pid in shown.get(qid, ()) if grades.get(pid, 0) == 0)
        liked = rng.sample(relevant, min(per_side, len(relevant)))
        disliked = rng.sample(missed, min(per_side, len(missed)))
        trial.votes[qid] = Votes(tuple(liked), tuple(disliked))
        trial.qrels[qid] = {pid: g for pid, g in grades.items() if pid not in {*liked, *disliked}}
    return trial


def _relevant(grades: Mapping[str, int]) -> set[str]:
    return {pid for pid, grade in grades.items() if grade >= 1}


def load_qrels(path: Path) -> Qrels:
    """A judgments file, or a directory of them ({qid: {paper id: grade}}) merged."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    qrels: Qrels = {}
    for file in files:
        qrels.update(_load_json(file))
    return qrels


def load_papers_file(path: Path) -> list[PaperRecord]:
    """A JSON list of {id or arxiv_id, title, abstract, ...}; names the first bad entry."""
    data = _load_json(path)
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a JSON list of papers")
    papers = []
    for n, item in enumerate(data):
        pid = isinstance(item, dict) and (item.get("arxiv_id") or item.get("id"))
        if not pid or not item.get("title"):
            raise InvalidInput(f"{path}: paper #{n} needs an 'id' and a 'title'")
        papers.append(
            PaperRecord(
                arxiv_id=str(pid),
                title=item["title"],
                abstract=item.get("abstract", ""),
                ai_keywords=item.get("ai_keywords") or [],
                ai_summary=item.get("ai_summary"),
            )
        )
    return papers


def load_profiles_file(path: Path) -> dict[str, list[str]]:
    """Each profile's topics: ``[{"qid": "D01", "topics": [...]}, ...]``."""
    return {str(p["qid"]): [str(t) for t in p["topics"]] for p in _profile_entries(path)}


def load_profile_votes(path: Path) -> dict[str, Votes]:
    """The papers each profile liked and disliked (``"liked"`` / ``"disliked"``: paper ids of
    the papers file), for the profiles that have any."""
    votes = {}
    for p in _profile_entries(path):
        said = Votes(
            *(tuple(str(pid) for pid in p.get(side) or ()) for side in ("liked", "disliked"))
        )
        if said:
            votes[str(p["qid"])] = said
    return votes


def _profile_entries(path: Path) -> list[dict[str, Any]]:
    data = _load_json(path)
    if not isinstance(data, list) or not all(
        isinstance(p, dict)
        and p.get("qid")
        and p.get("topics")
        and all(isinstance(p.get(side, []), list) for side in ("liked", "disliked"))
        for p in data
    ):
        raise InvalidInput(
            f'{path}: expected a JSON list of {{"qid": ..., "topics": [...]}}, '
            'optionally with "liked": [...] and "disliked": [...] paper ids'
        )
    return data


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc})") from None


if __name__ == "__main__":  # `python -m digest.evaluation` is `digest-eval`
    from digest.cli.evaluation import main

    main()
