"""Ranking: thresholds, multi-topic profiles, reasons, determinism, and quality on the dev set."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIXTURES

from digest.cli.evaluation import cli
from digest.evaluation import (
    load_papers_file,
    load_profiles_file,
    load_qrels,
    score_run,
)
from digest.ranking import (
    FEEDBACK_WEIGHT,
    FRESHNESS_BOOST,
    FULL_FEEDBACK_VOTES,
    K1,
    LEXICAL_THRESHOLD,
    NEAR_WORDS,
    TITLE_WEIGHT,
    TRENDING_BOOST,
    B,
    Evidence,
    Explainer,
    Feedback,
    SubscriberRequest,
    TopicIndex,
    build_feedback,
    paper_signals,
    pick_papers,
    plain_bm25_ranking,
    rank_profiles,
    reasons,
)
from digest.ranking import index as picking_index
from digest.ranking import picks as picking
from digest.ranking.reasons import evidence_for
from digest.records import Votes
from digest.sources import PaperRecord

DEV = FIXTURES / "ranking-dev"


def paper(pid: str, title: str, abstract: str = "") -> PaperRecord:
    return PaperRecord(arxiv_id=pid, title=title, abstract=abstract)


PAPERS = [
    paper(
        "1",
        "Graph neural networks for molecules",
        "We train a graph neural network on molecular graphs.",
    ),
    paper(
        "2",
        "Efficient attention with linear complexity",
        "An efficient attention mechanism for long sequences.",
    ),
    paper(
        "3",
        "Efficient attention for graph neural networks",
        "Sparse attention makes graph neural networks efficient on large graphs.",
    ),
    paper(
        "4", "A survey of medieval poetry", "Poems, rhymes and the network of medieval monasteries."
    ),
    paper("5", "Protein folding with diffusion", "Diffusion models predict protein structures."),
]


def picks_by_key(topics: list[str], requests: list[SubscriberRequest], **kwargs) -> dict[int, list]:
    index = TopicIndex(PAPERS)
    scores = index.score_topics(topics)
    gate = index.threshold_scores(topics, scores)
    table = pick_papers(scores, requests, paper_ids=index.ids, gate=gate, **kwargs)
    explainer = Explainer(index, topics, table)
    return {key: explainer.picks(row) for row, key in enumerate(table.keys)}


def run_picks(topics: list[str], max_papers: int = 5, **kwargs) -> list:
    return picks_by_key(
        topics, [SubscriberRequest(0, tuple(range(len(topics))), max_papers)], **kwargs
    )[0]


def test_scores_are_fractions_of_an_ideal_match() -> None:
    scores = TopicIndex(PAPERS).score_topics(["graph neural networks", "quantum chemistry"])
    assert scores.shape == (2, 5)
    assert ((scores >= 0) & (scores < 1)).all()
    assert scores[0].argmax() in (0, 2)
    assert scores[1].max() == 0  # no word of the topic occurs today


def test_scores_follow_bm25f_with_unseen_words_at_the_highest_idf() -> None:
    """The formula by hand on two papers: "graph" twice in a title counts 2 x TITLE_WEIGHT;
    a topic's score is the paper's BM25 weight over the topic's ideal, where a word absent
    today ("quantum") counts with the highest idf there is."""
    index = TopicIndex([paper("a", "Graph graph"), paper("b", "Poetry", "Poetry")])
    length, average = 2 * TITLE_WEIGHT, (2 * TITLE_WEIGHT + TITLE_WEIGHT + 1) / 2
    idf = math.log1p((2 - 1 + 0.5) / (1 + 0.5))
    norm = K1 * (1 - B + B * length / average)
    weight = length * (K1 + 1) / (length + norm) * idf
    unseen = math.log1p((2 + 0.5) / 0.5)
    scores = index.score_topics(["graph", "graph quantum", "the of"])
    assert scores[:, 0].tolist() == pytest.approx(
        [weight / (idf * (K1 + 1)), weight / ((idf + unseen) * (K1 + 1)), 0.0]
    )
    assert scores[2].tolist() == [0.0, 0.0], "a topic of stop words matches nothing"


def test_a_paper_of_stop_words_only_scores_nothing() -> None:
    day = [*PAPERS, paper("s", "The", "Of the and.")]
    assert TopicIndex(day).score_topics(["graph neural networks"])[0, -1] == 0
    assert TopicIndex(day[-1:]).score_topics(["graph"]).tolist() == [[0.0]], "no word at all"


def test_threshold_drops_off_topic_papers() -> None:
    picks = run_picks(["graph neural networks"])
    ids = [p.arxiv_id for p in picks]
    assert set(ids) == {"1", "3"}, "the poetry paper shares only 'network'"


def test_one_shared_word_of_a_longer_topic_cannot_pass_the_threshold() -> None:
    """'network' alone says nothing about graph neural networks, however low the threshold;
    a one-word topic still passes on its one word, two shared words of three still count, and
    the ranking scores themselves are left as they were."""
    index = TopicIndex(PAPERS)
    topics = ["graph neural networks", "poems", "graph neural poetry"]
    scores = index.score_topics(topics)
    gate = index.threshold_scores(topics, scores)
    assert scores[0, 3] > 0.01 and gate[0, 3] == 0, "the poetry paper shares only 'network'"
    loose = run_picks(["graph neural networks"], threshold=0.01)
    assert sorted(p.arxiv_id for p in loose) == ["1", "3"]
    ranked = rank_profiles(PAPERS, {"q": ["graph neural networks"]}, 5, threshold=0.01)["q"]
    assert sorted(p.arxiv_id for p in ranked) == ["1", "3"], "the `digest rank` path gates too"
    assert gate[1, 3] == scores[1, 3] > 0
    assert gate[0, 0] == scores[0, 0] > 0, "the phrase itself counts"
    assert gate[2, 0] == scores[2, 0] > 0, "two words of three still count"


def test_a_paper_matching_two_topics_is_listed_once_and_ranks_first() -> None:
    picks = run_picks(["graph neural networks", "efficient attention"])
    ids = [p.arxiv_id for p in picks]
    assert len(ids) == len(set(ids)) == 3
    assert ids[0] == "3"


def test_reasons_name_the_matching_topic_and_words() -> None:
    picks = {p.arxiv_id: p for p in run_picks(["graph neural networks", "efficient attention"])}
    assert picks["2"].topic == "efficient attention"
    assert picks["2"].reason == "Matches “efficient attention” in the title"
    assert picks["1"].topic == "graph neural networks"
    assert picks["1"].matched == ("graph neural networks",)
    assert picks["3"].also == ("efficient attention",), "paper 3 passes for both topics"


def test_max_papers_and_exclusions_are_respected() -> None:
    topics = ["graph neural networks", "efficient attention"]
    requests = [
        SubscriberRequest(7, (0, 1), 1),
        SubscriberRequest(8, (0, 1), 5, exclude=frozenset({"3"})),
        SubscriberRequest(9, (1,), 5),
    ]
    picks = picks_by_key(topics, requests)
    assert [p.topic for p in picks[9]] == ["efficient attention"] * 2
    assert [p.arxiv_id for p in picks[7]] == ["3"]
    assert "3" not in [p.arxiv_id for p in picks[8]] and len(picks[8]) == 2


def test_trending_and_freshness_reorder_only_relevant_papers() -> None:
    topics = ["graph neural networks"]
    base = [p.arxiv_id for p in run_picks(topics)]
    signals = paper_signals([0, 0, 0, 500, 0], [30, 30, 30, 0, 30])
    boosted = [p.arxiv_id for p in run_picks(topics, signals=signals)]
    assert "4" not in boosted and set(boosted) == set(base)
    assert paper_signals([None, 10, 100], [0, 3, 100]).max() <= 1.15 + 1e-6


def test_upvotes_count_on_a_log_scale_and_freshness_halves_every_three_days() -> None:
    """The day's most upvoted paper gets the whole trending boost, one with no (or a
    negative) count none; a paper published today the whole freshness boost, one from three
    days ago half, one "from the future" (clock skew) no more than today's."""
    signals = paper_signals([99, 9, None, 0, -3], [0, 3, 6, -2, 1e9])
    trend = [1.0, np.log1p(9) / np.log1p(99), 0, 0, 0]
    fresh = [1.0, 0.5, 0.25, 1.0, 0.0]
    expected = [
        1 + TRENDING_BOOST * t + FRESHNESS_BOOST * f for t, f in zip(trend, fresh, strict=True)
    ]
    assert signals.dtype == np.float32
    assert signals.tolist() == pytest.approx(expected, abs=1e-6)
    quiet_day = paper_signals([0, None], [0, 0])
    assert quiet_day.tolist() == pytest.approx([1 + FRESHNESS_BOOST] * 2), "no upvotes, no trend"
    one_vote = paper_signals([1, 0], [0, 0])
    assert one_vote.tolist() == pytest.approx(
        [1 + TRENDING_BOOST + FRESHNESS_BOOST, 1 + FRESHNESS_BOOST]
    )


def test_a_pick_keeps_its_relevance_apart_from_its_boosted_score() -> None:
    signals = paper_signals([0, 0, 9, 0, 0], [30, 30, 0, 30, 30])
    picks = run_picks(["graph neural networks"], signals=signals)
    assert picks, "the premise: papers to look at"
    for pick in picks:
        boost = float(signals[int(pick.arxiv_id) - 1])
        assert pick.score == pytest.approx(pick.relevance * boost, rel=1e-5)
        assert 0 < pick.relevance <= 1


def test_a_score_exactly_at_the_threshold_passes() -> None:
    scores = np.array([[0.5, 0.25]], dtype=np.float32)
    table = pick_papers(scores, [SubscriberRequest(7, (0,), 5)], threshold=0.5)
    assert table.papers.tolist() == [[0, -1]] and table.topics.tolist() == [[0, -1]]
    assert table.scores.tolist() == table.relevance.tolist() == [[0.5, 0.0]], "an empty slot"


def test_no_readers_a_reader_without_topics_and_no_papers_give_empty_picks() -> None:
    scores = np.array([[0.5, 0.25]], dtype=np.float32)
    nobody = pick_papers(scores, [], threshold=0.5)
    assert nobody.keys == [] and len(nobody.papers) == 0, "a day nobody is due"
    assert [a.dtype for a in (nobody.papers, nobody.topics, nobody.topic_rows)] == [np.int32] * 3
    assert nobody.scores.dtype == nobody.relevance.dtype == np.float32
    assert nobody.quiet.dtype == bool and len(nobody.topic_rows) == len(nobody.quiet) == 0
    readers = [SubscriberRequest(1, (0,), 5), SubscriberRequest(2, (0,), 1)]
    no_topics_last = pick_papers(scores, [*readers, SubscriberRequest(3, (), 5)])
    assert no_topics_last.papers.tolist() == [[0, -1], [0, -1], [-1, -1]], "no topic left"
    no_papers = pick_papers(np.zeros((1, 0), np.float32), [SubscriberRequest(7, (0,), 5)])
    assert no_papers.papers.shape == (1, 0) and no_papers.quiet_topics(0) == [0], "a weekend"


def test_a_topics_best_paper_is_judged_with_its_trending_boost() -> None:
    """Two papers equally on the topic: the trending one covers it, and takes the one slot."""
    scores = np.array([[0.5, 0.5]], dtype=np.float32)
    table = pick_papers(
        scores, [SubscriberRequest(7, (0,), 1)], signals=np.array([1.0, 1.15], np.float32)
    )
    assert table.papers.tolist() == [[1]]


def test_rows_asked_for_in_any_order_are_explained_from_the_right_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daily run picks and reads rows in blocks; the web and the CLI ask for any row."""
    monkeypatch.setattr(reasons, "EXPLAIN_BLOCK", 2)
    monkeypatch.setattr(picking, "PICK_CHUNK", 2)
    topics = ["graph neural networks", "efficient attention", "protein folding"]
    requests = [SubscriberRequest(10 + n, (n % 3,), 5) for n in range(5)]
    index = TopicIndex(PAPERS)
    table = pick_papers(index.score_topics(topics), requests)
    assert table.row_of() == {10 + n: n for n in range(5)}
    explainer = Explainer(index, topics, table)
    for row in (3, 0, 4, 1, 2, 3):
        picks = explainer.picks(row)
        assert picks and {p.topic for p in picks} == {topics[row % 3]}, row


def test_nothing_relevant_today_gives_no_picks() -> None:
    assert run_picks(["byzantine fault tolerance"]) == []


def test_identical_input_gives_identical_output() -> None:
    papers = load_papers_file(DEV / "papers.json")
    profiles = load_profiles_file(DEV / "topics.json")
    assert rank_profiles(papers, profiles, 10) == rank_profiles(list(papers), dict(profiles), 10)


def test_dev_set_quality_beats_plain_bm25() -> None:
    """The ranking must stay clearly better than the plain baseline measured in the same run."""
    papers = load_papers_file(DEV / "papers.json")
    profiles = load_profiles_file(DEV / "topics.json")
    qrels = load_qrels(DEV / "qrels")
    ours = score_run(
        {q: [p.arxiv_id for p in ps] for q, ps in rank_profiles(papers, profiles, 10).items()},
        qrels,
    )
    plain = score_run(plain_bm25_ranking(papers, profiles, 10), qrels)
    assert ours["mean"].ndcg10 >= plain["mean"].ndcg10 + 0.05
    assert ours["mean"].ndcg10 >= 0.80


def test_rank_cli_json_and_rank_eval_table() -> None:
    runner = CliRunner()
    args = ["--papers", str(DEV / "papers.json"), "--profiles", str(DEV / "topics.json")]
    ranked = runner.invoke(cli, ["rank", *args, "--format", "json", "--top", "5"])
    assert ranked.exit_code == 0, ranked.output
    data = json.loads(ranked.output)
    assert sorted(data) == [f"D{n:02d}" for n in range(1, 11)] and all(
        len(v) <= 5 for v in data.values()
    )
    qrels = ["--qrels", str(DEV / "qrels"), "--no-semantic", "--seeds", "2"]
    table = runner.invoke(cli, ["rank-eval", *args, *qrels])
    assert table.exit_code == 0, table.output
    assert "plain-bm25 nDCG@10" in table.output and "digest nDCG@10" in table.output
    assert any(line.startswith("mean ") for line in table.output.splitlines())
    assert "58 triples of unrelated profiles" in table.output
    votes = table.output[table.output.index("Feedback, random votes") :].splitlines()
    assert "2 seeds (0-1)" in votes[0] and [line.split()[0] for line in votes[3:5]] == ["2", "4"]


def test_rank_cli_rejects_a_bad_papers_file(tmp_path) -> None:
    bad = tmp_path / "papers.json"
    bad.write_text('[{"title": "no id"}]')
    result = CliRunner().invoke(
        cli, ["rank", "--papers", str(bad), "--profiles", str(DEV / "topics.json")]
    )
    assert result.exit_code == 1 and "paper #0 needs an 'id' and a 'title'" in result.output


def test_acronym_topics_match_papers_that_spell_them_out() -> None:
    picks = run_picks(["GNN"])
    assert {p.arxiv_id for p in picks} == {"1", "3"}
    assert picks[0].reason == "Matches “gnn” in the title"


def test_rank_eval_says_when_it_ranks_by_words_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from digest import semantic

    monkeypatch.setattr(semantic, "load_encoder", lambda: None)
    monkeypatch.setattr(
        semantic, "unavailable_reason", lambda: "the MiniLM weights are not installed"
    )
    args = [
        "--papers",
        str(DEV / "papers.json"),
        "--profiles",
        str(DEV / "topics.json"),
        "--qrels",
        str(DEV / "qrels"),
    ]
    out = CliRunner().invoke(cli, ["rank-eval", *args, "--seeds", "0"]).output
    assert "words-only" not in out.splitlines()[0]
    assert "(digest ranked by words only: the MiniLM weights are not installed)" in out
    merged = out[out.index("Merged profiles: 35 pairs") :].splitlines()
    assert merged[1].split() == ["run", "nDCG@10", "coverage@5"]
    assert merged[3].split()[0] == "digest" and merged[3].split()[2] == "1.000"


def test_default_ranking_with_minilm_meets_the_quality_target(encoder) -> None:
    """Words + MiniLM (the daily run's default) reaches nDCG@10 0.85 and beats words alone."""
    papers = load_papers_file(DEV / "papers.json")
    profiles = load_profiles_file(DEV / "topics.json")
    qrels = load_qrels(DEV / "qrels")

    def mean_ndcg(enc) -> float:
        run = rank_profiles(papers, profiles, 10, encoder=enc)
        return score_run({q: [p.arxiv_id for p in ps] for q, ps in run.items()}, qrels)[
            "mean"
        ].ndcg10

    with_minilm, words_only = mean_ndcg(encoder), mean_ndcg(None)
    assert with_minilm >= 0.85
    assert with_minilm >= words_only + 0.02


# -- every interest covered -------------------------------------------------------------------

RL_HEAVY_DAY = [
    *(
        paper(
            f"rl{n}",
            f"Reinforcement learning for control, part {n}",
            "Deep reinforcement learning with policy gradients and reward shaping.",
        )
        for n in range(6)
    ),
    paper("agents1", "Tool use in practice", "Language model agents call tools."),
    paper("agents2", "Planning ahead", "A planner for language model agents."),
    paper("cooking", "A history of bread", "Flour, water and time."),
]


def test_every_topic_with_a_match_gets_a_slot_the_rest_go_by_score() -> None:
    """The reported case: RL papers outscore the agent papers, and a sum of topic scores
    gave RL every slot."""
    topics = ["reinforcement learning", "language model agents", "video generation"]
    index = TopicIndex(RL_HEAVY_DAY)
    scores = index.score_topics(topics)
    assert scores[0].max() > scores[1].max(), "the premise: RL is the stronger topic today"
    table = pick_papers(scores, [SubscriberRequest(0, (0, 1, 2), 3)], paper_ids=index.ids)
    picks = Explainer(index, topics, table).picks(0)
    assert [p.topic for p in picks].count("language model agents") == 1
    assert [p.topic for p in picks].count("reinforcement learning") == 2
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)
    assert [topics[t] for t in table.quiet_topics(0)] == ["video generation"]


def test_a_first_paper_can_cover_a_topic_and_a_first_topic_can_be_quiet() -> None:
    """Row and column 0 are ordinary: the agents paper first in the day, the quiet topic
    first in the list; a reader of fewer topics has their row padded with -1."""
    day = [RL_HEAVY_DAY[6], *RL_HEAVY_DAY[:6], RL_HEAVY_DAY[8]]
    topics = ["video generation", "reinforcement learning", "language model agents"]
    index = TopicIndex(day)
    requests = [SubscriberRequest(0, (0, 1, 2), 3), SubscriberRequest(1, (1,), 3)]
    table = pick_papers(index.score_topics(topics), requests)
    assert [p.arxiv_id for p in Explainer(index, topics, table).picks(0)].count("agents1") == 1
    assert table.quiet_topics(0) == [0] and table.quiet_topics(1) == []
    assert table.topic_rows.tolist() == [[0, 1, 2], [1, -1, -1]]


def test_best_papers_are_the_exact_top_of_a_long_row_ties_to_the_lower_column() -> None:
    from digest.ranking.picks import _best_papers

    values = np.random.default_rng(7).permutation(1000).astype(np.float32)[None, :]
    values[0, [5, 3]] = 2000
    top, best = _best_papers(values, 10)
    expected = np.argsort(-values[0], kind="stable")[:10]
    assert expected[:2].tolist() == [3, 5], "the premise: a tie at the top"
    assert top[0].tolist() == expected.tolist()
    assert best[0].tolist() == values[0, expected].tolist()


def test_one_paper_on_two_topics_covers_both_with_one_slot() -> None:
    topics = ["graph neural networks", "efficient attention"]
    picks = picks_by_key(topics, [SubscriberRequest(7, (0, 1), 1)])[7]
    assert [p.arxiv_id for p in picks] == ["3"]


def test_more_topics_with_matches_than_slots_keeps_the_strongest() -> None:
    topics = ["language model agents", "reinforcement learning", "bread"]
    index = TopicIndex(RL_HEAVY_DAY)
    request = SubscriberRequest(0, (0, 1, 2), 2)
    table = pick_papers(index.score_topics(topics), [request], paper_ids=index.ids)
    covered = {topics[t] for t in table.topics[0] if t >= 0}
    assert len(covered) == 2 and table.quiet_topics(0) == []


def test_the_stronger_topic_keeps_the_one_slot_however_close_the_scores() -> None:
    """Topic 0's paper scores 0.5, topic 1's 0.48, and topic 1's paper comes first."""
    scores = np.array([[0.0, 0.5], [0.48, 0.0]], dtype=np.float32)
    table = pick_papers(scores, [SubscriberRequest(7, (1, 0), 1)], threshold=0.3)
    assert table.papers.tolist() == [[1]] and table.topics.tolist() == [[0]]


def test_a_day_of_one_paper_leaves_its_topic_not_quiet() -> None:
    table = pick_papers(np.array([[0.5]], np.float32), [SubscriberRequest(7, (0,), 5)])
    assert table.papers.tolist() == [[0]] and table.quiet_topics(0) == []


def test_a_covering_paper_already_sent_gives_way_to_the_next_one() -> None:
    topics = ["reinforcement learning", "language model agents"]
    index = TopicIndex(RL_HEAVY_DAY)
    sent = frozenset({"agents1", "agents2"})
    requests = [SubscriberRequest(0, (0, 1), 3, exclude=sent)]
    table = pick_papers(index.score_topics(topics), requests, paper_ids=index.ids)
    picks = Explainer(index, topics, table).picks(0)
    assert {p.topic for p in picks} == {"reinforcement learning"}
    assert [topics[t] for t in table.quiet_topics(0)] == ["language model agents"]


# -- reasons say where each word was found ----------------------------------------------------


def explain(topic: str, item: PaperRecord, encoder=None) -> str:
    index = TopicIndex([item, *PAPERS], encoder=encoder)
    return evidence_for(index, topic, 0).sentence()


def test_a_reason_names_the_phrase_and_the_first_field_holding_it() -> None:
    """The words of a phrase apart are no evidence: "generation" in the title and "video" in
    the abstract are not "video generation"."""
    apart = paper("x", "Generation of long clips", "We study video synthesis for long clips.")
    assert explain("video generation", apart) == "Shares words with your topic “video generation”"
    only_abstract = paper("y", "A new model", "Video generation with diffusion.")
    assert (
        explain("video generation", only_abstract) == "Matches “video generation” in the abstract"
    )
    both = paper("z", "Video generation at scale", "Video generation with diffusion.")
    assert explain("Video  Generation", both) == "Matches “video generation” in the title"


def test_a_word_found_only_in_hugging_face_keywords_is_said_so() -> None:
    crafted = PaperRecord(
        arxiv_id="k", title="A new model", abstract="We scale it.", ai_keywords=["diffusion"]
    )
    assert explain("diffusion", crafted) == "Matches “diffusion” in Hugging Face's keywords"
    summarised = PaperRecord(
        arxiv_id="s", title="A new model", abstract="We scale it.", ai_summary="Diffusion rules."
    )
    assert explain("diffusion", summarised) == "Matches “diffusion” in Hugging Face's keywords"


def test_a_reason_quotes_the_topic_as_typed_or_the_subject_of_it_the_paper_has() -> None:
    hyphenated = paper("h", "Graph-neural networks at scale", "We scale them.")
    assert (
        explain("Graph-neural  networks", hyphenated)
        == "Matches “graph-neural networks” in the title"
    )
    assert explain("graph poetry", PAPERS[0]) == "Close to your topic “graph poetry”", (
        "one shared word of a two-word topic is not a reason"
    )
    assert explain("speech and audio processing", paper("a", "Audio processing on a phone")) == (
        "Matches “audio processing” in the title"
    )
    assert Evidence("gnn", "gnn", 2).sentence() == "Matches “gnn” in Hugging Face's keywords"


def test_a_more_like_this_paper_topic_is_explained_by_the_paper_it_names() -> None:
    index = TopicIndex(PAPERS, topic_papers={"like:1": PAPERS[0]})
    evidence = evidence_for(index, "like:1", 2)
    assert evidence == Evidence("like:1", similar_to=PAPERS[0].title)
    assert evidence.sentence() == "Similar to “Graph neural networks for molecules”"


def test_a_lone_shared_word_is_not_offered_as_the_reason(encoder) -> None:
    """Words cannot have carried it past the threshold, so the reason must be meaning."""
    crafted = paper("q", "Quantum error correction codes", "Surface codes protect qubits.")
    reason = explain("lattice quantum chromodynamics", crafted, encoder)
    assert reason == "Close to your topic “lattice quantum chromodynamics”"


# -- the merged-profile report ------------------------------------------------------------------


def test_merged_profiles_are_both_covered_on_the_dev_set(encoder) -> None:
    """The goal of the coverage rule: every pair of unrelated profiles made one subscriber gets
    a relevant paper for each half in a five-paper digest (it was 20 of 35 by the sum alone)."""
    from digest.evaluation import merge_unrelated_profiles, topic_coverage

    papers = load_papers_file(DEV / "papers.json")
    merged = merge_unrelated_profiles(
        load_profiles_file(DEV / "topics.json"), load_qrels(DEV / "qrels")
    )
    run = rank_profiles(papers, merged.profiles, 5, encoder=encoder)
    coverage, eligible = topic_coverage(
        {q: [p.arxiv_id for p in ps] for q, ps in run.items()}, merged
    )
    assert eligible == 35 and coverage == 1.0


# -- reader feedback: more / less like this ---------------------------------------------------

ATTENTION_DAY = [
    paper(
        "kernel",
        "Efficient attention through random feature kernels",
        "Kernelised efficient attention approximates softmax with random features in linear time.",
    ),
    paper(
        "sparse",
        "Efficient attention with block sparse patterns for long documents",
        "Block sparse efficient attention reads long documents by attending within local windows.",
    ),
    paper(
        "io",
        "Efficient attention that is aware of GPU memory",
        "An efficient attention kernel tiles the computation to avoid reading GPU memory twice.",
    ),
    paper(
        "windows",
        "Local windows and block sparse patterns for long documents",
        "Attending within local windows with block sparse patterns lets models read long documents.",
    ),
]
LIKED = paper(
    "liked",
    "Block sparse attention reads long documents in local windows, a page at a time",
    "Local windows and block sparse patterns make long documents cheap to read.",
)
DISLIKED = paper(
    "disliked",
    "Random feature kernels approximate softmax",
    "Random features and kernels approximate the softmax in linear time.",
)


def rank_attention(votes: Votes | None = None) -> list:
    profile = {"ada": ["efficient attention"]}
    return rank_profiles(
        [*ATTENTION_DAY, LIKED, DISLIKED],
        profile,
        5,
        LEXICAL_THRESHOLD,
        votes={"ada": votes} if votes else None,
    )["ada"]


def test_votes_reorder_the_papers_that_pass_and_name_the_liked_paper() -> None:
    without = [p.arxiv_id for p in rank_attention()]
    assert without[:3] != ["sparse", "io", "kernel"], (
        "the premise: words alone order them otherwise"
    )
    picks = rank_attention(Votes(liked=("liked",), disliked=("disliked",)))
    assert [p.arxiv_id for p in picks] == ["sparse", "io", "kernel"]
    assert picks[0].reason.startswith(
        "Like “Block sparse attention reads long documents in local…”, which you voted up"
    )
    assert "which you voted up" not in picks[1].reason + picks[2].reason


def test_a_vote_never_lets_a_paper_below_the_threshold_in() -> None:
    """ "windows" is the liked paper's twin, but not about efficient attention."""
    picks = rank_attention(Votes(liked=("liked",)))
    assert "windows" not in [p.arxiv_id for p in picks]
    assert {"liked", "disliked"}.isdisjoint(p.arxiv_id for p in picks), "voted papers stay out"


def test_one_vote_counts_less_than_four() -> None:
    index = TopicIndex([*ATTENTION_DAY, LIKED])
    feedback, rows = build_feedback(index, [Votes(liked=("liked",))], {"liked": LIKED})
    one = feedback.lift(SubscriberRequest(0, (0,), 5, liked=rows[0][0]))
    four = feedback.lift(SubscriberRequest(0, (0,), 5, liked=rows[0][0] * 4))
    assert one.max() > 0 and np.allclose(four, 4 * one)
    assert feedback.near == NEAR_WORDS, "idf-weighted stems: their cosines run lower"


def test_closeness_counts_up_from_the_bar_and_votes_weigh_up_to_four() -> None:
    """Similarity 0.8 to a liked paper, with the bar at 0.6, is halfway from the bar to
    identical: closeness 0.5. One vote weighs a quarter of four, six no more than four; a
    dislike takes off what a like adds. A paper exactly at the bar is neither lifted nor
    named as like the liked one."""
    feedback = Feedback(("Liked", "Disliked"), np.array([[0.8, 0.6, 0.1], [0.1, 0.1, 0.8]]), 0.6)

    def request(liked: tuple[int, ...] = (), disliked: tuple[int, ...] = ()) -> SubscriberRequest:
        return SubscriberRequest(0, (0,), 5, liked=liked, disliked=disliked)

    quarter = FEEDBACK_WEIGHT / FULL_FEEDBACK_VOTES
    assert feedback.lift(request((0,))).tolist() == pytest.approx([quarter / 2, 0, 0])
    assert feedback.lift(request((0,) * 6)).tolist() == pytest.approx([FEEDBACK_WEIGHT / 2, 0, 0])
    both = feedback.lift(request((0,), (1,)))
    assert both.tolist() == pytest.approx([quarter, 0, -quarter])
    assert feedback.nearest_liked(request((0,)), 0) == "Liked"
    assert feedback.nearest_liked(request((0,)), 1) is None
    assert feedback.nearest_liked(request(disliked=(1,)), 2) is None, "only a liked one is named"


def test_rank_command_takes_votes_and_leaves_voted_papers_out(tmp_path) -> None:
    papers = tmp_path / "papers.json"
    papers.write_text(
        json.dumps(
            [
                {"id": p.arxiv_id, "title": p.title, "abstract": p.abstract}
                for p in [*ATTENTION_DAY, LIKED, DISLIKED]
            ]
        )
    )
    profiles = tmp_path / "profiles.json"
    profiles.write_text(
        json.dumps(
            [
                {
                    "qid": "ada",
                    "topics": ["efficient attention"],
                    "liked": ["liked"],
                    "disliked": ["disliked"],
                }
            ]
        )
    )
    result = CliRunner().invoke(
        cli,
        [
            "rank",
            "--papers",
            str(papers),
            "--profiles",
            str(profiles),
            "--format",
            "json",
            "--no-semantic",
        ],
    )
    assert result.exit_code == 0, result.output
    ranked = json.loads(result.output)["ada"]
    assert ranked[0] == "sparse" and {"liked", "disliked"}.isdisjoint(ranked)


def test_four_votes_per_profile_help_and_never_hurt_on_the_dev_set(encoder) -> None:
    """The feedback trial of `rank-eval` (two liked papers words rank low, two disliked ones
    they rank high, judged without those four): the digest with the votes beats the digest
    without them by 0.04 nDCG@10, and no profile does worse than it did without the votes
    with the voted papers left out (what the reordering alone is accountable for)."""
    args = ["--papers", str(DEV / "papers.json"), "--profiles", str(DEV / "topics.json")]
    out = CliRunner().invoke(
        cli, ["rank-eval", *args, "--qrels", str(DEV / "qrels"), "--seeds", "0"]
    )
    out = out.output
    table = out[out.index("Feedback: 2 liked + 2 disliked") :].splitlines()[3:]
    rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in table if line.strip()}
    assert len(rows) == 11 and "mean" in rows
    no_votes, left_out, with_votes, change = rows.pop("mean")
    assert with_votes >= no_votes + 0.04
    assert with_votes >= left_out
    assert all(change >= -0.02 for *_, change in rows.values())


def test_rows_are_scaled_to_unit_length_whatever_their_size() -> None:
    """Short rows (weights below 1) as well as long ones: cosine similarity needs both."""
    import scipy.sparse as sp

    from digest.ranking.index import _unit_rows

    rows = _unit_rows(sp.csr_matrix(np.array([[0.03, 0.04], [3.0, 4.0], [0.0, 0.0]])))
    assert rows.toarray().ravel().tolist() == pytest.approx([0.6, 0.8, 0.6, 0.8, 0.0, 0.0])


def test_a_day_without_papers_or_topics_gives_empty_matrices() -> None:
    """A weekend's empty feed, or a run before anyone subscribed: shapes, not errors."""
    empty, day = TopicIndex([]), TopicIndex(PAPERS)
    assert empty.score_topics(["graph neural networks"]).shape == (1, 0)
    assert day.score_topics([]).shape == (0, 5)
    assert day.threshold_scores([], day.score_topics([])).shape == (0, 5)
    assert empty.paper_similarities(PAPERS[:2]).shape == (2, 0)
    assert day.paper_similarities([]).shape == (0, 5)


def test_plain_bm25_weighs_title_and_abstract_alike_without_stems_or_acronyms() -> None:
    """The baseline must stay plain, or every gain measured against it shrinks."""
    day = [
        paper("b", "Sparse attention", "We study it."),
        paper("a", "We study it", "Sparse attention."),
        paper("c", "Graph neural network layers", "Message passing networks."),
        paper("d", "Attention", "Attention, attention and sparse attention everywhere."),
        paper("e", "Cooking", "Bread."),
    ]
    profiles = {"tie": ["sparse", "attention"], "gnn": ["GNN"], "stems": ["networks layer"]}
    ranked = plain_bm25_ranking(day, profiles, 10)
    assert ranked["tie"][:2] == ["d", "a"] and sorted(ranked["tie"][2:]) == ["b"]
    assert ranked == {"tie": ["d", "a", "b"], "gnn": [], "stems": ["c"]}


def test_the_matrices_a_daily_run_holds_are_float32() -> None:
    """Topics x papers for every topic of a million subscribers: half NumPy's default size."""
    index = TopicIndex(PAPERS)
    topics = ["graph neural networks", "lattice quantum chromodynamics"]
    scores = index.score_topics(topics)
    feedback, rows = build_feedback(index, [Votes(liked=("1",))], {"1": PAPERS[0]})
    assert scores.dtype == np.float32
    assert index.threshold_scores(topics, scores).dtype == np.float32
    assert index.paper_similarities(PAPERS[:1]).dtype == np.float32
    assert feedback.lifts([SubscriberRequest(0, (0,), 5, liked=rows[0][0])]).dtype == np.float32
    table = pick_papers(scores, [SubscriberRequest(0, (0, 1), 5)])
    assert table.scores.dtype == table.relevance.dtype == table.passing.dtype == np.float32
    assert table.papers.dtype == table.topics.dtype == np.int32


def hf_day() -> list[PaperRecord]:
    """The recorded Hugging Face day of 13 July 2026: real titles, abstracts and authors."""
    from conftest import FEEDS

    from digest.sources import parse_response

    return parse_response((FEEDS / "hf_daily_papers_2026-07-13.json").read_bytes()).papers


def test_an_exclusion_keeps_out_its_word_in_a_title_singular_or_plural_and_no_other() -> None:
    papers = hf_day()
    index = TopicIndex(papers)
    out = index.excluded(["benchmarks", "generation", "video segmentation"])
    titles = [[p.title.split(":")[0] for p, x in zip(papers, row, strict=True) if x] for row in out]
    assert titles == [
        ["UniClawBench"],  # "A Universal Benchmark": "Terminal-Bench" is no benchmark
        [
            "From RGB Generation to Dense Field Readout",
            "PanoWorld",  # "Panoramic Generation"
            "Video Generation Models are General-Purpose Vision Learners",
            "Enhancing In-context Panoramic Generation via Geometric-aware Pretraining",
            "A Quantized Native Runtime for On-Device Semantic Audio Generation",
        ],
        ["SAM-MT"],  # "Multi-Target Video Segmentation": a phrase, words between allowed
    ]


def test_an_exclusion_by_meaning_needs_the_bar_a_topic_passes_at(encoder) -> None:
    papers = hf_day()
    index = TopicIndex(papers, encoder=encoder)
    cosine = index.similarities(["quantization"])[0]
    by_meaning = index.excluded(["quantization"])[0]
    assert (by_meaning >= (cosine >= picking_index.EXCLUSION_MEANING)).all()
    kept_out = {p.arxiv_id for p, x in zip(papers, by_meaning, strict=True) if x}
    assert "2607.07964" in kept_out  # KronQ: LLM Quantization via Kronecker-Factored Hessian
    assert "2607.08768" not in kept_out  # UniClawBench


def test_an_author_topic_puts_their_papers_first_and_says_so_only_for_them() -> None:
    picks = rank_profiles(hf_day(), {"ada": ["agents", "author: Z. Xie"]}, 3)["ada"]
    assert [(p.arxiv_id, p.reason) for p in picks][:2] == [
        ("2607.04751", "By Zhengpeng Xie, whom you follow"),  # Trust Region Policy Distillation
        ("2607.08768", "Matches “agents” in the title"),
    ]


def test_rocchio_moves_the_profile_only_once_a_reader_has_eight_votes() -> None:
    index = TopicIndex([*ATTENTION_DAY, LIKED, DISLIKED])
    known = {"liked": LIKED, "disliked": DISLIKED}
    feedback, rows = build_feedback(index, [Votes(("liked",), ("disliked",))], known)
    liked, disliked = rows[0]
    moved = feedback.rocchio([SubscriberRequest(0, (0,), 5, liked=liked, disliked=disliked)])[0]
    similarity = feedback.similarity
    assert np.allclose(
        moved, picking.ROCCHIO_LIKED * similarity[0] - picking.ROCCHIO_DISLIKED * similarity[1]
    )
    scores = index.score_topics(["efficient attention"])

    def relevance(votes: int) -> dict[int, float]:
        """Each pick's relevance (before the nearest-neighbour lift reorders the picks)."""
        request = SubscriberRequest(
            0, (0,), 5, liked=liked * (votes // 2), disliked=disliked * (votes // 2)
        )
        table = pick_papers(scores, [request], threshold=0.0, feedback=feedback)
        return dict(zip(table.papers[0].tolist(), table.relevance[0].tolist(), strict=True))

    plain = relevance(0)
    assert relevance(6) == plain, "six votes: the topics alone decide relevance"
    assert relevance(8) != plain


def test_each_interest_gets_a_slot_before_any_gets_two() -> None:
    """Three topics, two slots: "a" and "b" are one interest, "c" another. By strength alone
    "a" and "b" would take both slots."""
    passing = np.array(
        [[0.9, 0.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [0.0, 0.0, 0.6, 0.0]], dtype=np.float32
    )
    alone = SubscriberRequest(0, (0, 1, 2), 2)
    grouped = SubscriberRequest(1, (0, 1, 2), 2, interests=(0, 0, 2))
    table = pick_papers(passing, [alone, grouped], threshold=0.5)
    assert table.papers.tolist() == [[0, 1], [0, 2]]


def test_topics_close_in_meaning_are_one_interest_and_links_chain() -> None:
    vectors = np.eye(4, dtype=np.float32)
    vectors[1] = vectors[0] * 0.8 + vectors[1] * 0.6  # cosine 0.8 with topic 0
    vectors[2] = vectors[1] * 0.8 + vectors[2] * 0.6  # 0.8 with topic 1, 0.64 with topic 0
    assert picking.interest_groups(vectors) == (0, 0, 0, 3)
