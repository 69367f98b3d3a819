"""Ranking quality metrics on graded judgments (nDCG@k with gain 2^grade - 1, recall, precision)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    per = {q: Scores(ndcg(run.get(q, []), g), recall(run.get(q, []), g), precision(run.get(q, []), g))
           for q, g in qrels.items()}
    n = len(per) or 1
    per["mean"] = Scores(*(sum(getattr(s, f) for s in per.values()) / n for f in ("ndcg10", "recall10", "precision5")))
    return per


def load_qrels(path: Path) -> Qrels:
    """A judgments file, or a directory of them ({qid: {paper id: grade}}) merged."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    qrels: Qrels = {}
    for file in files:
        qrels.update(json.loads(file.read_text(encoding="utf-8")))
    return qrels
