"""Ranking metrics, merged profiles, simulated votes and the development-set loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digest.evaluation import (
    Scores,
    load_papers_file,
    load_profile_votes,
    load_qrels,
    merge_unrelated_profiles,
    ndcg,
    precision,
    random_vote_split,
    recall,
    score_run,
    simulate_votes,
    topic_coverage,
)
from digest.records import Votes
from digest.subscriptions import InvalidInput


def test_ndcg_known_values() -> None:
    grades = {"a": 2, "b": 1, "c": 0}
    assert ndcg(["a", "b", "c"], grades) == pytest.approx(1.0)
    assert ndcg(["c", "b", "a"], grades) == pytest.approx(
        (1 / np.log2(3) + 3 / 2) / (3 + 1 / np.log2(3))
    )
    assert ndcg(["c"], {"c": 0}) == 0.0, "nothing relevant to find: 0, not a division by 0"


def test_recall_and_precision_count_grade_one_as_relevant_and_unjudged_as_not() -> None:
    grades = {"a": 2, "b": 1, "c": 0, "d": 1}
    ranked = ["c", "a", "x", "b"]  # "x" was never judged
    assert precision(ranked, grades) == pytest.approx(2 / 5), "over k=5, however few ranked"
    assert recall(ranked, grades) == pytest.approx(2 / 3)
    assert recall(["b"], {"b": 1}) == precision(["b"], {"b": 1}, k=1) == 1.0
    assert recall(ranked, {"c": 0}) == 0.0, "nothing relevant to find: 0, not a division by 0"
    eleventh = [f"x{n}" for n in range(10)] + ["a"]
    assert recall(eleventh, grades) == 0.0 and ndcg(eleventh, grades) == 0.0, "@10"


def test_a_run_is_scored_per_profile_and_on_average() -> None:
    """A profile the run left out scores 0 rather than being skipped."""
    qrels = {"found": {"a": 1}, "missed": {"b": 1}}
    scores = score_run({"found": ["a"]}, qrels)
    assert scores["found"] == Scores(1.0, 1.0, 0.2)
    assert scores["missed"] == Scores(0.0, 0.0, 0.0)
    assert scores["mean"] == Scores(0.5, 0.5, 0.1)
    assert score_run({}, {}) == {"mean": Scores(0.0, 0.0, 0.0)}


def test_unrelated_profiles_merge_with_the_better_grade() -> None:
    profiles = {"A": ["rl"], "B": ["speech"], "C": ["agents"]}
    qrels = {"A": {"p1": 2, "p2": 0}, "B": {"p2": 1, "p3": 2}, "C": {"p1": 1}}
    merged = merge_unrelated_profiles(profiles, qrels)
    assert list(merged.profiles) == ["A+B", "B+C"], "A and C share p1: related"
    assert merged.profiles["A+B"] == ["rl", "speech"]
    assert merged.qrels["A+B"] == {"p1": 2, "p2": 1, "p3": 2}
    run = {"A+B": ["p1", "p3"], "B+C": ["p2", "x", "x", "x", "x", "p1"]}
    assert topic_coverage(run, merged) == (0.5, 2), "B+C has C's paper only at rank 6"


def test_unrelated_profiles_merge_keeping_each_papers_grade() -> None:
    """A paper judged by one half only keeps that half's grade, 0 included; profiles sharing
    a relevant paper are not unrelated and do not merge."""
    profiles = {"A": ["rl"], "B": ["gnn"], "C": ["robots"]}
    qrels = {"A": {"p1": 2, "p3": 0}, "B": {"p2": 1, "p4": 0}, "C": {"p1": 1}}
    merged = merge_unrelated_profiles(profiles, qrels)
    assert merged.profiles == {"A+B": ["rl", "gnn"], "B+C": ["gnn", "robots"]}
    assert merged.qrels["A+B"] == {"p1": 2, "p2": 1, "p3": 0, "p4": 0}
    assert merged.halves["A+B"] == (qrels["A"], qrels["B"])


def test_coverage_counts_only_subscribers_with_something_to_find_for_both_halves() -> None:
    profiles = {"A": ["rl"], "B": ["gnn"], "C": ["robots"]}
    qrels = {"A": {"p1": 1}, "B": {"p2": 1}, "C": {"p3": 0}}
    merged = merge_unrelated_profiles(profiles, qrels)
    assert set(merged.halves) == {"A+B", "A+C", "B+C"}
    assert topic_coverage({"A+B": ["p1", "p2"]}, merged) == (1.0, 1)
    assert topic_coverage({"A+B": ["p1", "x", "y", "z", "w", "p2"]}, merged) == (0.0, 1)
    assert topic_coverage({}, merged) == (0.0, 1), "a subscriber the run left out"
    nothing = merge_unrelated_profiles({"C": ["robots"]}, {"C": {"p3": 0}})
    assert topic_coverage({}, nothing) == (0.0, 0)


def test_simulated_votes_pick_what_words_miss_and_what_fools_them() -> None:
    qrels = {"q": {"a": 2, "b": 2, "c": 1, "d": 0, "e": 0, "f": 0}}
    trial = simulate_votes({"q": ["d", "a", "e", "b", "f"]}, qrels)
    assert trial.votes["q"] == Votes(liked=("b", "a"), disliked=("d", "e"))
    assert trial.qrels["q"] == {"c": 1, "f": 0}


def test_simulated_votes_like_grade_one_papers_and_dislike_unjudged_ones() -> None:
    """Unjudged counts as irrelevant, as in every IR measure; a profile words did not rank
    still likes its best-judged papers."""
    trial = simulate_votes({"q": ["x", "b"]}, {"q": {"a": 1, "b": 0}, "r": {"c": 1}})
    assert trial.votes == {"q": Votes(("a",), ("x", "b")), "r": Votes(("c",), ())}
    assert trial.qrels == {"q": {}, "r": {}}


def test_profile_votes_load_and_bad_ones_are_named(tmp_path) -> None:
    good = tmp_path / "profiles.json"
    profiles = [
        {"qid": "q", "topics": ["rl"], "liked": ["1"], "disliked": []},
        {"qid": "r", "topics": ["gnn"], "disliked": [7]},
        {"qid": "s", "topics": ["agents"]},
    ]
    good.write_text(json.dumps(profiles))
    assert load_profile_votes(good) == {"q": Votes(liked=("1",)), "r": Votes(disliked=("7",))}
    expected = (
        f'{tmp_path / "bad.json"}: expected a JSON list of {{"qid": ..., "topics": [...]}}, '
        'optionally with "liked": [...] and "disliked": [...] paper ids'
    )
    for side in ("liked", "disliked"):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps([{"qid": "q", "topics": ["rl"], side: "1"}]))
        with pytest.raises(InvalidInput) as refused:
            load_profile_votes(bad)
        assert str(refused.value) == expected


def test_judgments_load_from_one_file_or_a_directory_of_them(tmp_path) -> None:
    (tmp_path / "a.json").write_text('{"q": {"p1": 2}}')
    (tmp_path / "b.json").write_text('{"r": {"p2": 1}}')
    assert load_qrels(tmp_path / "a.json") == {"q": {"p1": 2}}
    assert load_qrels(tmp_path) == {"q": {"p1": 2}, "r": {"p2": 1}}


def test_papers_load_with_their_hugging_face_fields_and_bad_files_are_named(tmp_path) -> None:
    papers = tmp_path / "papers.json"
    papers.write_text(
        json.dumps(
            [
                {"arxiv_id": "2401.1", "title": "T", "ai_keywords": ["k"], "ai_summary": "S"},
                {"id": 7, "title": "U", "abstract": "A", "ai_keywords": None},
            ]
        )
    )
    first, second = load_papers_file(papers)
    assert (first.arxiv_id, first.abstract, first.ai_keywords, first.ai_summary) == (
        "2401.1",
        "",
        ["k"],
        "S",
    )
    assert (second.arxiv_id, second.abstract, second.ai_keywords, second.ai_summary) == (
        "7",
        "A",
        [],
        None,
    )
    papers.write_text('{"2401.1": "T"}')
    with pytest.raises(InvalidInput, match=r"papers\.json: expected a JSON list of papers$"):
        load_papers_file(papers)
    papers.write_bytes(b'["\xff"]')
    with pytest.raises(InvalidInput, match=r"papers\.json: not valid JSON \(.*utf-8"):
        load_papers_file(papers)


def test_random_votes_like_relevant_papers_dislike_shown_misses_and_leave_the_judgments() -> None:
    qrels = {"A": {"r1": 2, "r2": 1, "r3": 2, "x1": 0, "x2": 0, "x3": 0}}
    shown = {"A": ["r1", "x1", "x2"]}
    one, same = (random_vote_split(shown, qrels, 2, 0) for _ in range(2))
    assert one == same, "a seed gives the same draw"
    votes = one.votes["A"]
    assert set(votes.liked) <= {"r1", "r2", "r3"} and len(votes.liked) == 2
    assert set(votes.disliked) == {"x1", "x2"}, "only irrelevant papers the reader was shown"
    assert set(one.qrels["A"]) == {"r1", "r2", "r3", "x1", "x2", "x3"} - votes.papers
