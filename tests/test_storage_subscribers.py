"""Subscribers and their topics on SQLite and PostgreSQL: sign-up and consent, status,
bulk import, who is due."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from conftest import DEFAULTS, run_at_once, sub
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.models import Subscriber, Topic, utcnow
from digest.records import NewDelivery
from digest.storage import Storage, StorageError
from digest.storage import topics as topics_module


def test_add_show_and_duplicate_subscriber(store: Storage) -> None:
    created = store.subscribers.add(sub("ada@example.org", "rl", "graph neural networks"), DEFAULTS)
    assert created.topics == ("rl", "graph neural networks")
    assert created.status == "active" and created.confirmed_at is not None, "an admin's add"
    assert store.subscribers.get("ada@example.org") == created
    with pytest.raises(StorageError, match="already subscribed"):
        store.subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)


def test_status_changes_and_removal(store: Storage) -> None:
    store.subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)
    assert store.subscribers.set_status("ada@example.org", "paused").status == "paused"
    assert store.subscribers.set_status("ada@example.org", "unsubscribed").status == "unsubscribed"
    with pytest.raises(StorageError, match="cannot make it paused"):
        store.subscribers.set_status("ada@example.org", "paused", allowed_from=("active",))
    store.subscribers.remove("ada@example.org")
    assert store.subscribers.get("ada@example.org") is None
    assert store.topics.counts() == []
    store.subscribers.add(sub("cy@example.org", "rl"), DEFAULTS, status="pending")
    assert store.subscribers.get("cy@example.org").confirmed_at is None
    confirmed = store.subscribers.set_status("cy@example.org", "active").confirmed_at
    assert confirmed is not None, "activating a pending subscriber confirms them"
    store.subscribers.set_status("cy@example.org", "paused")
    assert store.subscribers.set_status("cy@example.org", "active").confirmed_at == confirmed, (
        "kept"
    )
    with pytest.raises(StorageError, match="no subscriber"):
        store.subscribers.remove("ada@example.org")


def test_topic_counts_rename_and_merge(store: Storage) -> None:
    store.subscribers.add(sub("a@example.org", "gnn", "rl"), DEFAULTS)
    store.subscribers.add(sub("b@example.org", "graph neural networks"), DEFAULTS)
    store.subscribers.add(sub("c@example.org", "gnn", "graph neural networks"), DEFAULTS)
    assert store.topics.counts() == [("gnn", 2), ("graph neural networks", 2), ("rl", 1)]
    for email in ("d@example.org", "e@example.org"):
        store.subscribers.add(sub(email, "rl"), DEFAULTS)
    assert store.topics.counts()[0] == ("rl", 3), "the most followed first, whatever its name"
    for email in ("d@example.org", "e@example.org"):
        store.subscribers.remove(email)
    assert store.topics.rename("gnn", "graph neural networks") == 2
    assert store.topics.counts() == [("graph neural networks", 3), ("rl", 1)]
    assert store.subscribers.get("c@example.org").topics == ("graph neural networks",)
    assert store.topics.rename("rl", "reinforcement learning") == 1
    assert store.subscribers.get("a@example.org").topics == (
        "graph neural networks",
        "reinforcement learning",
    )
    with pytest.raises(StorageError, match="no subscriber follows"):
        store.topics.rename("rl", "x")
    other = store.lists.add("other", "Other")
    store.subscribers.add(sub("a@example.org", "rl"), DEFAULTS, list_id=other.id)
    assert store.topics.counts(other.id) == [("rl", 1)], "that list's readers only"
    assert store.topics.counts(store.lists.default().id) == [
        ("graph neural networks", 3),
        ("reinforcement learning", 1),
    ]


def test_list_filters_by_status_and_topic(store: Storage) -> None:
    store.subscribers.add(sub("b@example.org", "rl", "nlp"), DEFAULTS)
    store.subscribers.add(sub("a@example.org", "rl"), DEFAULTS)
    store.subscribers.set_status("b@example.org", "paused")
    assert [s.email for s in store.subscribers.find(topic="rl")] == [
        "a@example.org",
        "b@example.org",
    ]
    assert [s.email for s in store.subscribers.find(status="paused", topic="rl")] == [
        "b@example.org"
    ]
    assert store.subscribers.find(topic="nope") == []
    assert store.subscribers.counts() == {"active": 1, "paused": 1}


def test_import_creates_updates_and_is_idempotent(store: Storage) -> None:
    rows = [sub(f"u{i}@example.org", "rl", f"topic {i % 7}") for i in range(1200)]
    report = store.subscribers.import_rows(rows, DEFAULTS)
    assert (report.created, report.updated, report.unchanged) == (1200, 0, 0)
    again = store.subscribers.import_rows(rows, DEFAULTS)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1200)
    changed = [sub("u1@example.org", "nlp"), sub("u2@example.org", "rl", "topic 2", send_hour=9)]
    third = store.subscribers.import_rows(changed, DEFAULTS)
    assert (third.created, third.updated, third.unchanged) == (0, 2, 0)
    assert store.subscribers.get("u1@example.org").topics == ("nlp",)
    assert store.subscribers.get("u2@example.org").send_hour == 9
    assert len(store.subscribers.find()) == 1200


def test_an_import_mixing_new_changed_and_opted_out_rows_counts_each(store: Storage) -> None:
    for email in ("out1@example.org", "out2@example.org", "old@example.org"):
        store.subscribers.add(sub(email, "rl"), DEFAULTS)
    store.subscribers.set_status("out1@example.org", "unsubscribed")
    store.subscribers.set_status("out2@example.org", "bounced")
    rows = [
        sub("new@example.org", "rl"),  # a new address first: the rest are still read
        sub("out1@example.org", "nlp"),
        sub("out2@example.org", "nlp"),
        sub("old@example.org", "nlp"),
    ]
    report = store.subscribers.import_rows(rows, DEFAULTS)
    assert (report.created, report.updated, report.unchanged, report.kept) == (1, 1, 0, 2)
    assert store.subscribers.get("old@example.org").topics == ("nlp",)
    assert store.subscribers.get("out1@example.org").topics == ("rl",), "an opt-out is kept"


def test_an_imported_status_carries_its_consent_dates(store: Storage) -> None:
    """What `export` wrote comes back as it was: an active or paused row is confirmed, an
    opted-out row is dated (so no older confirmation link can undo it), a pending one is
    neither, and a row without a status is an active subscriber."""
    statuses = ("active", "paused", "pending", "unsubscribed", "bounced", None)
    store.subscribers.import_rows(
        [sub(f"{status}@example.org", "rl", status=status) for status in statuses], DEFAULTS
    )
    with store.db.session() as session:
        dated = {
            row.email.split("@")[0]: (
                row.status,
                row.confirmed_at is not None,
                row.unsubscribed_at is not None,
            )
            for row in session.scalars(select(Subscriber))
        }
    assert dated == {
        "active": ("active", True, False),
        "paused": ("paused", True, False),
        "pending": ("pending", False, False),
        "unsubscribed": ("unsubscribed", False, True),
        "bounced": ("bounced", False, True),
        "none": ("active", True, False),  # the address is lower-cased
    }


def test_import_dry_run_changes_nothing(store: Storage) -> None:
    report = store.subscribers.import_rows([sub("a@example.org", "rl")], DEFAULTS, dry_run=True)
    assert report.created == 1
    assert store.subscribers.find() == []
    assert store.topics.counts() == []


@pytest.mark.parametrize("status", ["pending", "active", "paused", "unsubscribed", "bounced"])
def test_only_unconfirmed_sign_ups_expire(store: Storage, status: str) -> None:
    store.subscribers.add(sub("old@example.org", "rl"), DEFAULTS, status=status)
    store.subscribers.add(sub("new@example.org", "rl"), DEFAULTS, status="pending")
    month_ago = dt.datetime(2026, 10, 1)
    with store.db.session() as session:
        session.query(Subscriber).filter_by(email="old@example.org").update(
            {"created_at": month_ago, "updated_at": month_ago}
        )
    assert store.subscribers.delete_expired_pending(month_ago) == 0, (
        "a sign-up exactly that old stays"
    )
    deleted = store.subscribers.delete_expired_pending(dt.datetime(2026, 10, 20))
    left = {s.email for s in store.subscribers.find()}
    assert deleted == (1 if status == "pending" else 0)
    assert left == (
        {"new@example.org"} if status == "pending" else {"old@example.org", "new@example.org"}
    )


def test_a_sign_up_stays_pending_and_a_second_one_replaces_its_settings(store: Storage) -> None:
    first, needs_confirming = store.subscribers.request_subscription(
        sub("ada@example.org", "rl", timezone="Europe/Paris", send_hour=8), DEFAULTS
    )
    assert needs_confirming and first.status == "pending" and first.confirmed_at is None
    assert first.created_at is not None
    again, needs_confirming = store.subscribers.request_subscription(
        sub("ada@example.org", "gnn", send_hour=9, max_papers=3), DEFAULTS
    )
    assert needs_confirming, "a pending address gets a new confirmation mail"
    assert (again.id, again.status, again.topics) == (first.id, "pending", ("gnn",))
    assert (again.timezone, again.send_hour, again.max_papers) == ("UTC", 9, 3)
    assert store.topics.counts() == [], "a pending sign-up follows nothing yet"


def test_confirming_activates_that_sign_up_alone_with_the_links_settings(store: Storage) -> None:
    ada, _ = store.subscribers.request_subscription(sub("ada@example.org", "rl"), DEFAULTS)
    store.subscribers.request_subscription(sub("bob@example.org", "rl"), DEFAULTS)
    link_settings = sub("ada@example.org", "gnn", timezone="Asia/Tokyo", send_hour=6)
    confirmed = store.subscribers.confirm_subscription(ada.id, link_settings, DEFAULTS, utcnow())
    assert (confirmed.status, confirmed.topics) == ("active", ("gnn",))
    assert (confirmed.timezone, confirmed.send_hour) == ("Asia/Tokyo", 6)
    assert confirmed.confirmed_at is not None
    assert store.subscribers.get("bob@example.org").status == "pending", "only the link's owner"
    assert (
        store.subscribers.confirm_subscription(ada.id + 1000, link_settings, DEFAULTS, utcnow())
        is None
    )


def test_an_old_confirmation_link_never_resumes_a_paused_subscriber(store: Storage) -> None:
    ada, _ = store.subscribers.request_subscription(sub("ada@example.org", "rl"), DEFAULTS)
    issued = utcnow()
    store.subscribers.confirm_subscription(ada.id, sub("ada@example.org", "rl"), DEFAULTS, issued)
    store.subscribers.set_status("ada@example.org", "paused")
    again = store.subscribers.confirm_subscription(
        ada.id, sub("ada@example.org", "gnn"), DEFAULTS, issued
    )
    assert (again.status, again.topics) == ("paused", ("rl",))


def test_only_a_link_sent_after_an_opt_out_renews_consent(store: Storage) -> None:
    ada = store.subscribers.add(sub("ada@example.org", "rl"), DEFAULTS)
    bounced_at = dt.datetime(2026, 11, 30, 9, 0, 0)
    with store.db.session() as session:
        row = session.get(Subscriber, ada.id)
        row.status, row.unsubscribed_at, row.hard_bounces = "bounced", bounced_at, 3
    renewal = sub("ada@example.org", "gnn", send_hour=9, max_papers=3, timezone="Asia/Tokyo")
    for issued in (bounced_at - dt.timedelta(seconds=1), bounced_at):
        kept = store.subscribers.confirm_subscription(ada.id, renewal, DEFAULTS, issued)
        assert (kept.status, kept.topics) == ("bounced", ("rl",)), issued
    renewed = store.subscribers.confirm_subscription(
        ada.id, renewal, DEFAULTS, bounced_at + dt.timedelta(seconds=1)
    )
    assert (renewed.status, renewed.topics) == ("active", ("gnn",))
    assert (renewed.timezone, renewed.send_hour, renewed.max_papers) == ("Asia/Tokyo", 9, 3)
    assert renewed.confirmed_at > ada.confirmed_at, "confirmed anew"
    with store.db.session() as session:
        assert session.get(Subscriber, ada.id).hard_bounces == 0, "a fresh start"


def test_two_sign_ups_of_one_new_address_at_once_both_succeed(store: Storage) -> None:
    both_looked = threading.Barrier(2)
    real_scalar = Session.scalar

    def look_then_wait(self, statement, *args, **kwargs):
        found = real_scalar(self, statement, *args, **kwargs)
        if "subscribers.email" in str(statement) and not both_looked.broken:
            try:
                both_looked.wait(5)  # both see no row before either inserts (first try only)
                both_looked.abort()
            except threading.BrokenBarrierError:
                pass
        return found

    Session.scalar = look_then_wait
    try:
        results, errors = run_at_once(
            lambda _: store.subscribers.request_subscription(sub("ada@example.org", "rl"), DEFAULTS)
        )
    finally:
        Session.scalar = real_scalar
    assert errors == [] and len(results) == 2
    with store.db.session() as session:
        assert session.query(Subscriber).count() == 1


def test_due_subscribers_are_the_active_ones_whose_local_hour_came_as_get_subscriber_sees_them(
    store: Storage,
) -> None:
    """The daily run reads subscribers in bulk, not one by one: both reads must agree, every
    field and the topics in the subscriber's own order."""
    people = {  # name: (time zone, send hour, topics)
        "ada": ("UTC", 6, ("reinforcement learning", "agents")),
        "bob": ("UTC", 7, ("rl",)),  # 06:30 UTC: not yet
        "cy": ("Asia/Tokyo", 9, ("zebrafish", "alignment", "mixture of experts")),
        "dan": ("America/Los_Angeles", 6, ("rl",)),  # 23:30 the day before, past 6 there
        "eve": ("UTC", 6, ("rl",)),  # paused
        "fay": ("UTC", 6, ("rl",)),  # already has today's edition
        "gil": ("UTC", 6, ("world models", "agents")),
    }
    for name, (zone, hour, topics) in people.items():
        store.subscribers.add(
            sub(f"{name}@example.org", *topics, timezone=zone, send_hour=hour), DEFAULTS
        )
    store.subscribers.set_status("eve@example.org", "paused")
    store.subscribers.update("gil@example.org", show_trending=False)
    record = {name: store.subscribers.get(f"{name}@example.org") for name in people}
    now = dt.datetime(2026, 7, 13, 6, 30)
    store.deliveries.create([NewDelivery(record["fay"].id, now.date(), [])])

    def due(**options: bool) -> dict[str, tuple]:
        return {r.email.split("@")[0]: (r, day) for r, day in store.subscribers.due(now, **options)}

    today, yesterday = now.date(), now.date() - dt.timedelta(days=1)
    expected = {"ada": today, "cy": today, "dan": yesterday, "gil": today}
    assert due() == {name: (record[name], day) for name, day in expected.items()}
    assert record["cy"].topics == ("zebrafish", "alignment", "mixture of experts")
    assert set(due(ignore_send_hour=True)) == {*expected, "bob"}


@pytest.mark.postgres
def test_two_sign_ups_creating_the_same_new_topic_at_once_both_succeed(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both see the topic missing, both insert it: the second insert waits for the first and
    skips it, and must then look up the id the first made. (SQLite lets one writer at a
    time, so only PostgreSQL can interleave them.)"""
    store = Storage.from_url(pg_url)
    store.db.upgrade()
    real_insert = topics_module.insert_ignoring_duplicates
    both_looked = threading.Barrier(2)

    def insert_after_both_looked(session, model, *args):  # noqa: ANN001, ANN202
        if model is Topic:
            both_looked.wait(10)
        return real_insert(session, model, *args)

    monkeypatch.setattr(topics_module, "insert_ignoring_duplicates", insert_after_both_looked)
    readers = iter(["ada@example.org", "bob@example.org"])
    _, errors = run_at_once(
        lambda _: store.subscribers.add(sub(next(readers), "quantum error correction"), DEFAULTS)
    )
    assert errors == []
    assert store.topics.counts() == [("quantum error correction", 2)]


def test_a_topic_no_one_follows_any_more_is_dropped(store: Storage) -> None:
    """Topics are rows readers share: the last follower leaving removes the row, so the
    table holds only what someone follows."""
    store.subscribers.add(sub("ada@example.org", "rl", "agents"), DEFAULTS)
    store.subscribers.update("ada@example.org", topics=["agents", "world models"])
    with store.db.session() as session:
        assert sorted(session.scalars(select(Topic.name))) == ["agents", "world models"]
