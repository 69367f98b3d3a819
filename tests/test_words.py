"""The phrase rules of digest.ranking.words, on real titles and abstracts of the fixtures."""

from __future__ import annotations

import pytest

from digest.ranking.words import (
    defined_acronyms,
    found_in,
    phrase_terms,
    phrase_words,
    singular,
    subjects,
    topic_phrases,
)


@pytest.mark.parametrize(
    ("plural", "one"),
    [
        ("networks", "network"),
        ("llms", "llm"),
        ("policies", "policy"),
        ("matrices", "matrix"),
        ("approaches", "approach"),
        ("classes", "class"),
        ("caches", "cache"),
        ("hypotheses", "hypothesis"),
    ],
)
def test_a_plural_is_made_singular(plural: str, one: str) -> None:
    assert singular(plural) == one


@pytest.mark.parametrize("word", ["loss", "corpus", "analysis", "series", "gas", "computability"])
def test_a_word_that_is_no_plural_is_left_as_it_is(word: str) -> None:
    assert singular(word) == word


def test_no_stem_joins_different_words() -> None:
    """What a Snowball stem merged ("comput", "gener"), inflection-only keeps apart."""
    assert phrase_words("computability") != phrase_words("computational")
    assert phrase_words("generation") != phrase_words("general")
    assert phrase_words("Graph Neural Networks' scale") == ["graph", "neural", "network", "scale"]


def test_a_topic_is_found_by_its_phrase_and_its_acronyms() -> None:
    assert topic_phrases("graph neural networks") == [("graph", "neural", "network"), ("gnn",)]
    assert topic_phrases("GNNs") == [("gnn",), ("graph", "neural", "network")]
    assert topic_phrases("LLM agents") == [
        ("llm", "agent"),
        ("large", "language", "model", "agent"),
    ]
    assert topic_phrases("machine translation") == [("machine", "translation")], (
        "a two-letter acronym (MT) is too ambiguous in a paper: SAM-MT is multi-target"
    )
    assert topic_phrases("tool use") == [("tool", "use")], "a stop word to the scores, not here"


def test_a_topic_that_lists_subjects_is_found_by_any_of_them() -> None:
    assert subjects("speech and audio processing") == ["speech", "audio processing"]
    assert topic_phrases("speech and audio processing") == [("speech",), ("audio", "processing")]
    assert subjects("mixture of experts") == ["mixture of experts"]


def test_the_acronyms_a_paper_defines_are_read_from_its_abstract() -> None:
    assert defined_acronyms("Vision-language models (VLMs) have made interactive digital") == {
        "vlm": ("vision", "language", "model")
    }
    assert defined_acronyms("a sovereign, open-source Mixture-of-Experts (MoE) hybrid") == {
        "moe": ("mixture", "expert")
    }
    assert defined_acronyms("While recent adoptions of Large Language Model (LLM) agents") == {
        "llm": ("large", "language", "model")
    }
    assert defined_acronyms("Built upon Segment Anything 2 (SAM2), we propose") == {}


@pytest.mark.parametrize(
    ("title", "topic"),
    [
        ("Correcting Length Bias in Neural Machine Translation.", "machine translation"),
        ("Towards Reproducible Empirical Research in Meta-Learning.", "meta-learning"),
        ("Towards Reproducible Empirical Research in Meta-Learning.", "metalearning"),
        ("Scalable Visual Pretraining for Language Intelligence", "pre-training"),
        ("Agora: Enhancing LLM Agent Reasoning Via Auction-Based Task Allocation", "LLM agents"),
        (
            "Agora: Enhancing LLM Agent Reasoning Via Auction-Based Task Allocation",
            "large language model agents",
        ),
        ("Recommendation Through Mixtures of Heterogeneous Item Relationships.", "mixtures"),
    ],
)
def test_a_phrase_is_found_in_a_real_title(title: str, topic: str) -> None:
    assert found_in(phrase_terms(title, {}), topic_phrases(topic)) is not None


@pytest.mark.parametrize(
    ("title", "topic"),
    [
        (
            "Conceptual Networks for Cross-Linguistic Idiomatic Expressions:A Feature-Based Graph",
            "graph neural networks",
        ),
        ("MES-P: an Emotional Tonal Speech Dataset in Mandarin Chinese", "speech recognition"),
        (
            "Phone Segmentation and Recognition through Phonological Activation",
            "speech recognition",
        ),
        ("Current computational approaches for drug design typically focus", "computability"),
        ("SAM-MT: Real-Time Interactive Multi-Target Video Segmentation", "machine translation"),
        ("From RGB Generation to Dense Field Readout: Pixel-Space Dense Prediction", "state space"),
    ],
)
def test_words_of_a_phrase_apart_are_not_found(title: str, topic: str) -> None:
    assert found_in(phrase_terms(title, {}), topic_phrases(topic)) is None
