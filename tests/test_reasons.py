"""Reasons tell the truth (#31): each names one topic and what the paper really says.

The triples below are real papers of the ranking development set, each read by hand: the
quoted phrase (or the acronym or hyphenation of it the docstring of digest.ranking.words
allows) is in the field the reason names, and not in the title when it says the abstract.
The negative ones are the complaints of #31: two words of a phrase apart, or a stem shared,
are not the phrase.
"""

from __future__ import annotations

import pytest
from conftest import FIXTURES

from digest.evaluation import load_papers_file
from digest.ranking import TopicIndex
from digest.ranking.reasons import evidence_for

TITLE, ABSTRACT = "the title", "the abstract"

# (arxiv id, topic, the reason) -- what the paper says is in the comment
TRUE_REASONS = [
    # "supervised fine-tuning followed by reinforcement learning via group relative policy..."
    ("2607.08404", "reinforcement learning", "reinforcement learning", ABSTRACT),
    # "Semantic Pareto-DQN: A Multi-Objective Reinforcement Learning Framework for ..."
    ("2607.09641", "reinforcement learning", "reinforcement learning", TITLE),
    # "PAC-ACT, a reinforcement-learning post-training framework"
    ("2607.09590", "reinforcement learning", "reinforcement learning", ABSTRACT),
    # "recent adoptions of Large Language Model (LLM) agents have demonstrated promise"
    ("2607.09653", "large language model agents", "large language model agents", ABSTRACT),
    # "Agora: Enhancing LLM Agent Reasoning Via Auction-Based Task Allocation"
    ("2607.09600", "large language model agents", "large language model agents", TITLE),
    # "a deployed collaborative workspace platform where LLM agents produce, edit, ..."
    ("2607.09493", "large language model agents", "large language model agents", ABSTRACT),
    # "Agentic LLM systems that generate code through multi-turn tool use"
    ("2607.09493", "tool use", "tool use", ABSTRACT),
    # "the representations of self-supervised speech models (S3Ms)"
    ("2607.09020", "speech and audio processing", "speech", ABSTRACT),
    # "MES-P: an Emotional Tonal Speech Dataset in Mandarin Chinese ..."
    ("1808.10095", "speech and audio processing", "speech", TITLE),
    # "... Data Efficiency in End-to-End Speech Synthesis."
    ("1808.10128", "speech and audio processing", "speech", TITLE),
    # "Correcting Length Bias in Neural Machine Translation."
    ("1808.10006", "machine translation", "machine translation", TITLE),
    # "two application tasks: machine translation and headline generation"
    ("1808.10143", "machine translation", "machine translation", ABSTRACT),
    # "Pronoun Translation in English-French Machine Translation: ..."
    ("1808.10196", "machine translation", "machine translation", TITLE),
    # "Realistic and diverse traffic simulation is essential to autonomous driving development"
    ("2607.06957", "autonomous driving", "autonomous driving", ABSTRACT),
    # "Reliable autonomous driving requires full-scene perception"
    ("2607.09629", "autonomous driving", "autonomous driving", ABSTRACT),
    # "Multimodal Scenario Similarity Search for Autonomous Driving"
    ("2607.09428", "autonomous driving", "autonomous driving", TITLE),
    # title "Differentially Private ..."; abstract "The field of differential privacy offers"
    ("1808.10056", "privacy", "privacy", ABSTRACT),
    ("1808.10056", "differential privacy", "differential privacy", ABSTRACT),
    # "Decentralized Detection with Robust Information Privacy Protection."
    ("1808.10082", "privacy", "privacy", TITLE),
    # "DP-ADMM: ADMM-based Distributed Learning with Differential Privacy."
    ("1808.10101", "differential privacy", "differential privacy", TITLE),
    # "Recommender Systems have proliferated as general-purpose approaches"
    ("1808.10031", "recommender systems", "recommender systems", ABSTRACT),
    # "Recommender systems relying on latent factor models often appear as black boxes"
    ("1808.10260", "recommender systems", "recommender systems", ABSTRACT),
    # "the effective use of residual block structure in recommender systems"
    ("1808.05163", "recommender systems", "recommender systems", ABSTRACT),
    # "... Frame Interpolation with Video Diffusion Models"
    ("2607.08770", "diffusion models", "diffusion models", TITLE),
    # "Video Generation Models are General-Purpose Vision Learners"
    ("2607.09024", "video generation", "video generation", TITLE),
    # "Linear Attention Architectures: Mechanisms, Trade-offs, and Cross-Layer Routing"
    ("2607.07953", "linear attention", "linear attention", TITLE),
    # "experiments using a baseline on MES-P for automatic emotion recognition"
    ("1808.10095", "emotion recognition", "emotion recognition", ABSTRACT),
    # "The performance of automatic speech recognition systems can be improved"
    ("1808.10239", "speech recognition", "speech recognition", ABSTRACT),
    # "Limit computability and computability relative to the halting problem"
    ("1802.01355", "computability", "computability", ABSTRACT),
    # "using machine learning models and graph neural networks"
    ("2607.09528", "graph neural networks", "graph neural networks", ABSTRACT),
    # "Towards Reproducible Empirical Research in Meta-Learning."
    ("1808.10406", "meta-learning", "meta-learning", TITLE),
    # "Vision-language models (VLMs) have made interactive digital museums ..."
    ("2607.06374", "vision language models", "vision language models", ABSTRACT),
    # "text-to-video generation serves as a strong pre-training paradigm"
    ("2607.09024", "pre-training", "pre-training", ABSTRACT),
    # "RGB generation pretraining learns rich semantic, structural ..." (typed with a hyphen
    # by the reader, closed up by the paper)
    ("2607.06553", "pretraining", "pretraining", ABSTRACT),
    # "a sovereign, open-source Mixture-of-Experts (MoE) hybrid Mamba Transformer"
    ("2607.09424", "mixture of experts", "mixture of experts", ABSTRACT),
    # "Our method borrows ideas from mixtures-of-experts approaches"
    ("1808.10031", "mixture of experts", "mixture of experts", ABSTRACT),
]

# (arxiv id, topic): the paper has words of the topic, never the topic (#31's complaints)
NOT_THE_TOPIC = [
    ("2607.09576", "graph neural networks"),  # "Conceptual Networks for ... Idiomatic ..."
    ("1808.10095", "speech recognition"),  # title: speech; abstract: emotion recognition
    ("2607.09020", "speech recognition"),  # "Phone Segmentation and Recognition ..."; speech
    ("2607.06553", "state space models"),  # "Pixel-Space Dense Prediction"; a state apart
    ("2607.04751", "computability"),  # "computational", a Snowball stem "comput" apart
]


@pytest.fixture(scope="module")
def dev_index() -> TopicIndex:
    return TopicIndex(load_papers_file(FIXTURES / "ranking-dev" / "papers.json"))


def test_there_are_at_least_thirty_true_reasons() -> None:
    assert len(TRUE_REASONS) >= 30
    assert len({(pid, topic) for pid, topic, *_ in TRUE_REASONS}) == len(TRUE_REASONS)


@pytest.mark.parametrize(("pid", "topic", "quoted", "place"), TRUE_REASONS)
def test_a_reason_read_true_by_hand(
    dev_index: TopicIndex, pid: str, topic: str, quoted: str, place: str
) -> None:
    found = evidence_for(dev_index, topic, dev_index.ids.index(pid))
    assert found.sentence() == f"Matches “{quoted}” in {place}"


@pytest.mark.parametrize(("pid", "topic"), NOT_THE_TOPIC)
def test_words_of_a_phrase_apart_are_not_the_phrase(
    dev_index: TopicIndex, pid: str, topic: str
) -> None:
    row = dev_index.ids.index(pid)
    evidence = evidence_for(dev_index, topic, row)
    assert evidence.quoted is None and "Matches" not in evidence.sentence()
    assert dev_index.score_topics([topic])[0, row] > 0, "its words still rank it"


def test_a_stem_shared_with_a_one_word_topic_never_lets_a_paper_in(dev_index: TopicIndex) -> None:
    row = dev_index.ids.index("2607.04751")  # "computational", not "computability"
    scores = dev_index.score_topics(["computability"])
    assert scores[0, row] > 0 and dev_index.threshold_scores(["computability"], scores)[0, row] == 0


def test_two_words_of_a_longer_topic_without_its_phrase_are_said_so(dev_index: TopicIndex) -> None:
    """ "Conceptual Networks for Cross-Linguistic Idiomatic Expressions: A Feature-Based Graph
    ..." has "graph" and "networks": the reason says it shares words, not that it matches."""
    row = dev_index.ids.index("2607.09576")
    assert evidence_for(dev_index, "graph neural networks", row).sentence() == (
        "Shares words with your topic “graph neural networks”"
    )
    topics = ["graph neural networks", "state space models", "computability"]
    assert [dev_index.shared_count(t, row) for t in topics] == list(
        dev_index.shared_words(topics)[:, row]
    )
