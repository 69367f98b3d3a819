"""Followed authors matched as arXiv and Hugging Face write names (real names of the fixtures)."""

from __future__ import annotations

import pytest

from digest.ranking.authors import AuthorIndex, Name, display_name, fold


@pytest.mark.parametrize(
    ("followed", "written"),
    [
        ("Yann LeCun", "Yann LeCun"),
        ("Yann LeCun", "Y. LeCun"),
        ("LeCun, Yann", "Yann LeCun"),
        ("Y. LeCun", "Yann LeCun"),
        ("yann lecun", "Yann A. LeCun"),  # a middle name the follower left out
        ("Antonio Roda", "Antonio Rodà"),  # hf_daily_papers_2026-07-13.json
        ("Rodà, A.", "Antonio Rodà"),
        ("Jeremy Leconte", "Leconte Jérémy"),  # arXiv RSS writes some names surname first
        ("Jean-Pierre Serre", "J.-P. Serre"),
        ("Ruben Harle", "Ruben Härle"),
        ("Søren Hauberg", "Soren Hauberg"),
    ],
)
def test_a_followed_name_matches_the_ways_papers_write_it(followed: str, written: str) -> None:
    assert Name.parse(followed).matches(written)


@pytest.mark.parametrize(
    ("followed", "written"),
    [
        ("Yann LeCun", "Yann Ollivier"),  # same given name
        ("Yann LeCun", "Xavier LeCun"),  # same surname, another person
        ("Xia Li", "Xiang Li"),  # a given name is not a prefix of another
        ("Zhengpeng Xie", "Zeke Xie"),  # two authors of one real paper (2607.04751)
        ("Antonio Rodà", "Matteo Spanio"),
    ],
)
def test_another_person_does_not_match(followed: str, written: str) -> None:
    assert not Name.parse(followed).matches(written)


def test_fold_drops_accents_and_spells_out_letters_nfkd_keeps() -> None:
    assert fold("Jérémy Łukasz Ørsted Straße") == "jeremy lukasz orsted strasse"


def test_the_index_finds_each_paper_by_the_person_and_the_name_as_written() -> None:
    index = AuthorIndex(
        [
            ["Zhengpeng Xie", "Li Lyna Zhang", "Zeke Xie", "Mao Yang"],
            ["Matteo Spanio", "Antonio Rodà"],
            ["Lu Dai", "Ziyang Rao"],
        ]
    )
    assert index.papers_by("Z. Xie") == {0: "Zhengpeng Xie"}  # the first one matched
    assert index.papers_by("author nobody") == {}
    assert index.papers_by("Roda, Antonio") == {1: "Antonio Rodà"}


def test_a_reason_names_the_person_in_full_as_the_paper_writes_them() -> None:
    assert display_name("Y. LeCun", ["Yann LeCun"]) == "Yann LeCun"
    assert display_name("yann lecun", ["Yann LeCun"]) == "Yann LeCun"
    assert display_name("LeCun, Yann", ["Y. LeCun"]) == "Yann LeCun"
    assert display_name("yann lecun") == "Yann Lecun"
