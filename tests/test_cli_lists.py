"""`digest lists`: the table, add, show, set (rename included) and a reader's own cadence."""

from __future__ import annotations


def test_a_list_is_added_shown_changed_and_renamed(run) -> None:
    run(
        "lists", "add", "ice", "--title", "Ice", "--description", "Glaciers, weekly",
        "--cadence", "weekly:friday", "--source", "arxiv-query:all:glacier", "--source", "HF",
        "--max-papers", "12", "-t", "Sea Ice", "--private",
    )  # fmt: skip
    shown = run("lists", "show", "ice").output
    assert "ice: Ice  [private]" in shown and "Glaciers, weekly" in shown
    assert "weekly:fri" in shown and "arxiv-query:all:glacier hf" in shown
    assert "max papers:  12" in shown and "suggests:    sea ice" in shown
    changed = run(
        "lists", "set", "ice", "--slug", "glaciers", "--public", "--sender", "I <i@example.org>"
    )
    assert "glaciers: Ice  [public]" in changed.output and "I <i@example.org>" in changed.output
    assert "no list named 'ice'" in run("lists", "show", "ice", code=1).output
    table = run("lists").output.splitlines()
    assert table[0].split() == ["slug", "title", "cadence", "sources", "readers"]
    assert table[2].startswith("daily") and "hf arxiv:cs.LG" in table[2]
    assert table[3].startswith("glaciers") and table[3].endswith("none")


def test_a_readers_own_cadence_is_set_shown_and_dropped(run) -> None:
    run("subscribers", "add", "ada@example.org", "-t", "agents", "--cadence", "weekdays")
    assert "cadence:    weekdays\n" in run("subscribers", "show", "ada@example.org").output
    run("subscribers", "set", "ada@example.org", "--cadence", "list")
    assert "cadence:    daily (the list’s)" in run("subscribers", "show", "ada@example.org").output


def test_topics_counts_one_lists_readers(run) -> None:
    run("lists", "add", "ice", "--title", "Ice")
    run("subscribers", "add", "ada@example.org", "-t", "sea ice", "--list", "ice")
    run("subscribers", "add", "bo@example.org", "-t", "agents")
    everyone = run("topics").output
    assert "sea ice" in everyone and "agents" in everyone
    ice = run("topics", "--list", "ice").output
    assert "sea ice" in ice and "agents" not in ice
    assert "no list named 'nope'" in run("topics", "--list", "nope", code=1).output


def test_an_empty_source_or_topic_returns_a_list_to_the_settings(run) -> None:
    """As --sender "" goes back to DIGEST_SENDER, --source "" goes back to what the settings
    fetch and --topic "" to the settings' suggestions."""
    run("lists", "add", "ice", "--title", "Ice", "--source", "arxiv:physics.ao-ph", "-t", "sea ice")
    shown = run("lists", "set", "ice", "--source", "", "--topic", "").output
    assert "sources:     hf arxiv:cs.LG" in shown and "(the settings')" in shown
    assert "sea ice" not in shown
    assert run("lists", "show", "ice").output == shown
