"""The bundled sample ships its MiniLM vectors (scripts/sample_vectors.py), so the first
`digest run --now` on a fresh folder ranks it without embedding it: that took 30-60 s of
silence, and looked hung."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources

import numpy as np
import pytest

from digest.ingestion import SAMPLE_PACKAGE, SAMPLE_VECTORS, ingest_bundled_sample
from digest.ranking import paper_passage
from digest.semantic import MiniLM, vector_key
from digest.settings import Settings
from digest.storage import Storage

F16 = 2e-3  # float16 keeps ~3 significant digits; a MiniLM component is below 0.5


def shipped_keys() -> set[str]:
    with (resources.files(SAMPLE_PACKAGE) / SAMPLE_VECTORS).open("rb") as file:
        with np.load(file) as saved:
            return {str(k) for k in saved["keys"]}


def sample_passages(store: Storage) -> list[str]:
    ingest_bundled_sample(store.papers, frozenset({"new", "cross"}))
    return sorted({paper_passage(p) for p in store.papers.find()})


def test_every_sample_paper_has_its_vector_installed(sqlite_url: str) -> None:
    """Keyed as StoredEncoder looks them up; fails when the sample, the passage or the
    model's key change without running scripts/sample_vectors.py again."""
    store = Storage.from_url(sqlite_url)
    store.db.upgrade()
    keys = [vector_key(p) for p in sample_passages(store)]
    assert set(keys) <= shipped_keys()
    installed = store.papers.load_vectors(keys)
    assert set(installed) == set(keys)
    vectors = np.stack([np.frombuffer(installed[k], dtype="<f4") for k in keys])
    assert vectors.shape == (len(keys), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_shipped_vectors_equal_a_live_embedding(sqlite_url: str, encoder: MiniLM) -> None:
    store = Storage.from_url(sqlite_url)
    store.db.upgrade()
    passages = sample_passages(store)[::15]  # a few, long and short
    installed = store.papers.load_vectors([vector_key(p) for p in passages])
    shipped = np.stack([np.frombuffer(installed[vector_key(p)], dtype="<f4") for p in passages])
    live = encoder._encode_uncached(passages)
    assert len(passages) >= 4
    assert np.abs(shipped - live).max() < F16
    assert (np.sum(shipped * live, axis=1) > 0.9999).all()


def test_the_first_run_embeds_no_sample_paper(
    run: Callable[..., object],
    settings: Settings,
    encoder: MiniLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the model is asked to compute, on a fresh folder: the demo's topics, no paper.
    Counted on the class: the run's model may be another instance than ``encoder`` (a test
    may have cleared load_encoder's cache)."""
    computed: list[str] = []
    plain = MiniLM.encode

    def counting(model: MiniLM, texts: Sequence[str]) -> np.ndarray:
        computed.extend(texts)
        return plain(model, texts)

    monkeypatch.setattr(MiniLM, "encode", counting)
    run("run", "--now", "--offline")
    store = Storage.from_url(settings.resolved_database_url)
    passages = {paper_passage(p) for p in store.papers.find()}
    assert len(passages) > 60, "the sample was ingested"
    assert computed, "the demo's topics were embedded: the model was in use"
    assert not passages & set(computed)
