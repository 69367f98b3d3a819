"""The profile as ranking splits it and as the preferences page says it back."""

from __future__ import annotations

import datetime as dt

from digest.ranking.profile import DayTopics, describe_profile
from digest.records import VoteRecord

WHEN = dt.datetime(2026, 7, 13)


def vote(value: int, topic: str | None) -> VoteRecord:
    return VoteRecord("2607.07953", value, "Linear Attention Architectures", topic, WHEN)


def test_the_profile_in_words_names_topics_votes_exclusions_and_authors() -> None:
    topics = ["rl", "agents", "not: surveys", "author: LeCun, Yann"]
    votes = [vote(1, "rl"), vote(1, "rl"), vote(1, "agents"), vote(1, None), vote(-1, "agents")]
    assert describe_profile(topics, votes) == (
        "You follow: rl, agents; you voted up 4 papers close to “rl” and “agents”; "
        "you voted down 1 paper close to “agents”; you exclude: surveys; authors: Yann LeCun."
    )


def test_a_profile_of_one_topic_says_only_that() -> None:
    assert describe_profile(["rl"], []) == "You follow: rl."
    assert describe_profile(["author: yann lecun"], []) == "Authors: Yann Lecun."


def test_exclusions_are_no_rows_of_the_scores_and_each_topic_is_scored_once() -> None:
    day = DayTopics.of([["rl", "not: surveys"], ["rl", "author: Yann LeCun"]])
    assert day.ranked == ["author: Yann LeCun", "rl"]
    assert day.subjects == ["surveys"]
    assert day.authors == {"author: Yann LeCun": "Yann LeCun"}
    assert day.rows(["rl", "not: surveys"]) == ((1,), (0,))
