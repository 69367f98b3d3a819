"""Migration 0013 turns a one-list database, made by the previous release's migrations and
holding readers, deliveries and votes, into the same behaviour on one list (#34)."""

from __future__ import annotations

import datetime as dt

from alembic import command
from conftest import DEFAULTS, sub
from sqlalchemy import text

from digest.storage import Storage
from digest.storage.database import alembic_config

NOW = dt.datetime(2026, 12, 7, 9, 0)  # a Monday, past the readers' hour


def _release_0012(db_url: str) -> Storage:
    """A database as the previous release left it, with rows in it."""
    store = Storage.from_url(db_url)
    command.upgrade(alembic_config(store.db.engine), "0012")
    with store.db.engine.begin() as conn:
        for sid, email, status in [
            (1, "ada@example.org", "active"),
            (2, "bob@example.org", "unsubscribed"),
            (3, "cy@example.org", "active"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, status, timezone, send_hour, max_papers,"
                    " hard_bounces, show_trending, created_at, updated_at)"
                    " VALUES (:id, :email, :status, 'UTC', 7, 5, 0, :yes, :t, :t)"
                ),
                {"id": sid, "email": email, "status": status, "yes": True, "t": NOW},
            )
        conn.execute(text("INSERT INTO topics (id, name) VALUES (1, 'robotics')"))
        conn.execute(
            text(
                "INSERT INTO subscriber_topics (subscriber_id, topic_id, position)"
                " VALUES (1, 1, 0), (3, 1, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO deliveries (id, subscriber_id, edition, status, picks, quiet_topics,"
                " attempts, resent, created_at) VALUES (1, 3, :day, 'sent', '[]', '[]', 1, :no, :t)"
            ),
            {"day": NOW.date(), "no": False, "t": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO votes (subscriber_id, arxiv_id, value, created_at)"
                " VALUES (1, '2612.00001', 1, :t)"
            ),
            {"t": NOW},
        )
        if conn.dialect.name == "postgresql":  # ids given by hand: move the sequences past them
            conn.execute(text("SELECT setval('subscribers_id_seq', 3)"))
            conn.execute(text("SELECT setval('deliveries_id_seq', 1)"))
            conn.execute(text("SELECT setval('topics_id_seq', 1)"))
    return store


def test_an_existing_database_keeps_its_readers_on_one_default_list(db_url: str) -> None:
    store = _release_0012(db_url)
    store.db.upgrade()

    (only,) = store.lists.all()
    assert (only.slug, only.title, only.cadence, only.sources) == (
        "daily",
        "Paper Digest",
        "daily",
        (),
    )
    ada = store.subscribers.require("ada@example.org")
    assert (ada.id, ada.list_id, ada.topics, ada.status) == (1, only.id, ("robotics",), "active")
    assert store.subscribers.require("bob@example.org").status == "unsubscribed"
    assert store.feedback.reader_votes([1])[1].liked == ("2612.00001",)
    # behaviour: ada is due today; cy already had today's edition; bob asked to stop
    assert [(s.email, day) for s, day in store.subscribers.due(NOW)] == [
        ("ada@example.org", NOW.date())
    ]
    store.db.engine.dispose()


def test_after_the_migration_one_address_may_join_a_second_list(db_url: str) -> None:
    store = _release_0012(db_url)
    store.db.upgrade()
    weekly = store.lists.add("weekly", "ML Weekly", cadence="weekly:mon")
    store.subscribers.add(sub("ada@example.org", "agents"), DEFAULTS, list_id=weekly.id)
    assert [s.list_id for s in store.subscribers.of_address("ada@example.org")] == [
        store.lists.default().id,
        weekly.id,
    ]
    store.db.engine.dispose()


def test_the_migration_goes_down_again_keeping_the_default_lists_readers(db_url: str) -> None:
    store = _release_0012(db_url)
    store.db.upgrade()
    command.downgrade(alembic_config(store.db.engine), "0012")
    with store.db.engine.connect() as conn:
        emails = conn.execute(text("SELECT email FROM subscribers ORDER BY id")).scalars().all()
        delivered = conn.execute(text("SELECT count(*) FROM deliveries")).scalar()
    assert emails == ["ada@example.org", "bob@example.org", "cy@example.org"]
    assert delivered == 1
    store.db.engine.dispose()
