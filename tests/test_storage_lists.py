"""Lists in storage: add, change, remove; subscriptions per (address, list), consent per list,
and a hard bounce that stops every list (#34)."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import DEFAULTS, sub

from digest.records import NewDelivery
from digest.storage import Storage, StorageError


def test_a_fresh_install_has_the_default_list(store: Storage) -> None:
    (default,) = store.lists.all()
    assert store.lists.default() == default
    assert store.lists.require(None) == default
    assert store.lists.require("daily") == default


def test_lists_are_added_changed_and_found_by_slug(store: Storage) -> None:
    added = store.lists.add(
        "robotics",
        "Robotics Weekly",
        cadence="weekly:fri",
        sources=["arxiv:cs.RO"],
        sender="Lab <lab@example.org>",
        max_papers=10,
        public=False,
    )
    assert store.lists.get("robotics") == added
    changed = store.lists.update("robotics", title="Robots", cadence="weekdays")
    assert (changed.title, changed.cadence, changed.sources) == (
        "Robots",
        "weekdays",
        ("arxiv:cs.RO",),
    )
    assert [listed.slug for listed in store.lists.public()] == ["daily"]
    with pytest.raises(StorageError, match="already exists"):
        store.lists.add("robotics", "Again")


def test_an_unknown_slug_is_a_clear_error(store: Storage) -> None:
    with pytest.raises(StorageError, match="no list named 'nope' .*daily"):
        store.lists.require("nope")


def test_one_address_subscribes_to_two_lists_with_their_own_topics(store: Storage) -> None:
    weekly = store.lists.add("weekly", "ML Weekly", cadence="weekly:mon", max_papers=12)
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS)
    store.subscribers.add(sub("ada@example.org", "robotics"), DEFAULTS, list_id=weekly.id)
    daily, week = store.subscribers.of_address("ada@example.org")
    assert (daily.topics, week.topics) == (("agents",), ("robotics",))
    assert (daily.max_papers, week.max_papers) == (5, 12)  # the list's own digest size
    assert store.subscribers.require("ada@example.org", weekly.id) == week
    assert store.subscribers.get("ada@example.org") == daily


def test_unsubscribing_from_one_list_leaves_the_others(store: Storage) -> None:
    weekly = store.lists.add("weekly", "ML Weekly")
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS)
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS, list_id=weekly.id)
    store.subscribers.set_status("ada@example.org", "unsubscribed", list_id=weekly.id)
    assert [s.status for s in store.subscribers.of_address("ada@example.org")] == [
        "active",
        "unsubscribed",
    ]


def test_a_hard_bounce_stops_every_list(store: Storage) -> None:
    weekly = store.lists.add("weekly", "ML Weekly")
    first = store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS)
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS, list_id=weekly.id)
    _, (delivery,) = store.deliveries.create([NewDelivery(first.id, dt.date(2026, 12, 7), [])])
    claim, _ = store.deliveries.claim([delivery], dt.datetime(2026, 12, 7, 7))
    store.deliveries.mark_failed(delivery, claim, "550 no such mailbox", True, bounce_limit=1)
    assert [s.status for s in store.subscribers.of_address("ada@example.org")] == [
        "bounced",
        "bounced",
    ]


def test_removing_a_list_removes_its_subscriptions_but_never_the_default(store: Storage) -> None:
    weekly = store.lists.add("weekly", "ML Weekly")
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS)
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS, list_id=weekly.id)
    assert store.lists.readers() == {1: {"active": 1}, weekly.id: {"active": 1}}
    assert store.lists.remove("weekly") == 1
    assert [s.list_id for s in store.subscribers.of_address("ada@example.org")] == [1]
    with pytest.raises(StorageError, match="default list"):
        store.lists.remove("daily")


def test_an_import_puts_each_row_on_its_list(store: Storage) -> None:
    weekly = store.lists.add("weekly", "ML Weekly")
    rows = [
        sub("ada@example.org", "agents"),
        sub("ada@example.org", "robotics", list_slug="weekly", status="unsubscribed"),
    ]
    report = store.subscribers.import_rows(rows, DEFAULTS, list_ids={"weekly": weekly.id})
    assert report.created == 2
    assert [
        (s.list_id, s.topics, s.status) for s in store.subscribers.of_address("ada@example.org")
    ] == [
        (1, ("agents",), "active"),
        (weekly.id, ("robotics",), "unsubscribed"),
    ]
    again = store.subscribers.import_rows(rows, DEFAULTS, list_ids={"weekly": weekly.id})
    assert (again.created, again.unchanged, again.kept) == (0, 1, 1)
