"""Subscriptions: sign-up and consent, their settings and topics, bulk import, and who is due.

A row is one subscription: an address on one list (:mod:`digest.storage.lists`). Methods
that take an address take the list too (``list_id``; None: the default list), so the
commands and pages that name no list work as they did before there were lists. Consent is
per subscription: unsubscribing from one list leaves the others; only a hard bounce, which
says the mailbox is gone, stops them all (:meth:`digest.storage.Deliveries.mark_failed`).

Consent is the delicate part: an unsubscribed or bounced row is history that no sign-up,
import or stale confirmation link may overwrite (see :meth:`Subscribers.request_subscription`
and :meth:`Subscribers.confirm_subscription`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.lists import due_edition, slot_start, zone
from digest.models import Delivery, DigestList, Subscriber, SubscriberTopic, Topic, utcnow
from digest.records import ChangeReport, SubscriberDefaults, SubscriberRecord
from digest.storage.database import Database, StorageError, changed_rows, chunks
from digest.storage.lists import default_list_id, list_id_of
from digest.storage.rows import subscriber_record, subscriber_records
from digest.storage.topics import drop_unused_topics, set_topics
from digest.subscriptions import OPTED_OUT, SubscriberInput


class Subscribers:
    """Everyone who signed up, one short transaction per call; records in and out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _get(self, session: Session, email: str, list_id: int | None) -> Subscriber:
        sub = _find(session, email, list_id)
        if sub is None:
            on = "" if list_id is None else f" on list {_slug(session, list_id)}"
            raise StorageError(f"no subscriber with email {email}{on}")
        return sub

    def get(self, email: str, list_id: int | None = None) -> SubscriberRecord | None:
        """The subscription of ``email`` to a list (None: the default list), if any."""
        with self._db.session() as session:
            sub = _find(session, email, list_id)
            return subscriber_record(sub) if sub else None

    def require(self, email: str, list_id: int | None = None) -> SubscriberRecord:
        """The subscription, or a StorageError that says there is none."""
        with self._db.session() as session:
            return subscriber_record(self._get(session, email, list_id))

    def of_address(self, email: str) -> list[SubscriberRecord]:
        """Every subscription of ``email``, one per list, by list."""
        with self._db.session() as session:
            query = select(Subscriber).where(Subscriber.email == email).order_by("list_id")
            return [subscriber_record(sub) for sub in session.scalars(query)]

    def get_by_id(self, subscriber_id: int) -> SubscriberRecord | None:
        with self._db.session() as session:
            sub = session.get(Subscriber, subscriber_id)
            return subscriber_record(sub) if sub else None

    def add(
        self,
        data: SubscriberInput,
        defaults: SubscriberDefaults,
        status: str = "active",
        list_id: int | None = None,
        cadence: str | None = None,
    ) -> SubscriberRecord:
        """Subscribe ``data.email`` to a list (None: the default list)."""
        with self._db.session() as session:
            list_id = list_id_of(session, list_id)
            existing = _find(session, data.email, list_id)
            if existing is not None and existing.status in OPTED_OUT:
                raise StorageError(
                    f"{data.email} is {existing.status}: they asked to stop, or their mailbox "
                    "refused our mail. Only with their consent: digest subscribers resume "
                    f"--force {data.email}"
                )
            if existing is not None:
                raise StorageError(
                    f"{data.email} is already subscribed (use `digest subscribers set` to change it)"
                )
            sub = Subscriber(
                email=data.email,
                list_id=list_id,
                cadence=cadence,
                status=status,
                confirmed_at=utcnow() if status == "active" else None,
                **_list_defaults(session, defaults, list_id).schedule_of(data),
            )
            session.add(sub)
            session.flush()
            set_topics(session, {sub.id: data.topics})
            session.refresh(sub)
            return subscriber_record(sub)

    def request_subscription(
        self, data: SubscriberInput, defaults: SubscriberDefaults, list_id: int | None = None
    ) -> tuple[SubscriberRecord, bool]:
        """A self-service sign-up: returns the subscriber and whether a confirmation is needed.

        A new or still pending address is (or stays) pending with the settings just given. An
        unsubscribed or bounced row is left exactly as it is, history included: the record
        that this person opted out must survive anyone re-typing their address, so the new
        settings travel in the confirmation link and apply only when it is used
        (:meth:`confirm_subscription`). An active or paused subscriber is left as it is too.
        Two sign-ups of one new address at once: the second finds the first's row.
        """
        try:
            return self._request_subscription(data, defaults, list_id)
        except IntegrityError:
            return self._request_subscription(data, defaults, list_id)

    def _request_subscription(
        self, data: SubscriberInput, defaults: SubscriberDefaults, list_id: int | None
    ) -> tuple[SubscriberRecord, bool]:
        with self._db.session() as session:
            list_id = list_id_of(session, list_id)
            sub = _find(session, data.email, list_id)
            if sub is not None and sub.status != "pending":
                return subscriber_record(sub), sub.status in OPTED_OUT
            if sub is None:
                sub = Subscriber(email=data.email, status="pending", list_id=list_id)
                session.add(sub)
            for name, value in _list_defaults(session, defaults, list_id).schedule_of(data).items():
                setattr(sub, name, value)
            session.flush()
            set_topics(session, {sub.id: data.topics})
            session.refresh(sub)
            return subscriber_record(sub), True

    def confirm_subscription(
        self,
        subscriber_id: int,
        data: SubscriberInput,
        defaults: SubscriberDefaults,
        link_issued_at: dt.datetime,
    ) -> SubscriberRecord | None:
        """Activate a sign-up from its confirmation link, with the settings the link carries.

        One conditional UPDATE decides, so two confirmations at once (a person and a mail
        scanner, say) both see an active subscription and only one applies it. A link older
        than the subscriber's last unsubscribe or bounce changes nothing: only a link sent
        after it is fresh consent. Returns the subscriber as it now is (None if gone).
        """
        consent = or_(
            Subscriber.status == "pending",
            and_(
                Subscriber.status.in_(OPTED_OUT),
                or_(
                    Subscriber.unsubscribed_at.is_(None),
                    Subscriber.unsubscribed_at < link_issued_at,
                ),
            ),
        )
        with self._db.session() as session:
            list_id = session.scalar(
                select(Subscriber.list_id).where(Subscriber.id == subscriber_id)
            )
            if list_id is not None:
                defaults = _list_defaults(session, defaults, list_id)
            activated = changed_rows(
                session.execute(
                    update(Subscriber)
                    .where(Subscriber.id == subscriber_id, consent)
                    .values(
                        status="active",
                        confirmed_at=utcnow(),
                        hard_bounces=0,
                        **defaults.schedule_of(data),
                    )
                )
            )
            if activated:
                set_topics(session, {subscriber_id: data.topics})
            sub = session.get(Subscriber, subscriber_id)
            if sub is None:
                return None
            session.refresh(sub)
            return subscriber_record(sub)

    def delete_expired_pending(self, older_than: dt.datetime) -> int:
        """Unconfirmed sign-ups expire: we keep no address that never confirmed."""
        with self._db.session() as session:
            result = session.execute(
                delete(Subscriber).where(
                    Subscriber.status == "pending", Subscriber.updated_at < older_than
                )
            )
            drop_unused_topics(session)
            return changed_rows(result)

    def remove(self, email: str, list_id: int | None = None) -> None:
        """Delete the subscription and everything about it (its deliveries cascade)."""
        with self._db.session() as session:
            session.delete(self._get(session, email, list_id))
            session.flush()
            drop_unused_topics(session)

    def set_status(
        self,
        email: str,
        status: str,
        allowed_from: Sequence[str] | None = None,
        list_id: int | None = None,
    ) -> SubscriberRecord:
        with self._db.session() as session:
            sub = self._get(session, email, list_id)
            if allowed_from is not None and sub.status not in allowed_from:
                raise StorageError(f"{email} is {sub.status}; cannot make it {status}")
            sub.status = status
            if status == "active" and sub.confirmed_at is None:
                sub.confirmed_at = utcnow()
            if status == "unsubscribed":
                sub.unsubscribed_at = utcnow()
            session.flush()
            return subscriber_record(sub)

    def update(
        self,
        email: str,
        topics: Sequence[str] | None = None,
        timezone: str | None = None,
        send_hour: int | None = None,
        max_papers: int | None = None,
        show_trending: bool | None = None,
        list_id: int | None = None,
        cadence: str | None = None,
    ) -> SubscriberRecord:
        """Change what is given; ``cadence`` "" follows the list's again."""
        with self._db.session() as session:
            sub = self._get(session, email, list_id)
            if cadence is not None:
                sub.cadence = cadence or None
            if show_trending is not None:
                sub.show_trending = show_trending
            if timezone is not None:
                sub.timezone = timezone
            if send_hour is not None:
                sub.send_hour = send_hour
            if max_papers is not None:
                sub.max_papers = max_papers
            if topics is not None:
                set_topics(session, {sub.id: list(topics)})
                sub.updated_at = utcnow()
            session.flush()
            session.refresh(sub)
            return subscriber_record(sub)

    def find(
        self, status: str | None = None, topic: str | None = None, list_id: int | None = None
    ) -> list[SubscriberRecord]:
        """Subscriptions by address (then list); ``list_id`` None: every list's."""
        with self._db.session() as session:
            query = select(Subscriber).order_by(Subscriber.email, Subscriber.list_id)
            if list_id is not None:
                query = query.where(Subscriber.list_id == list_id)
            if status:
                query = query.where(Subscriber.status == status)
            if topic:
                query = query.join(SubscriberTopic).join(Topic).where(Topic.name == topic)
            return [subscriber_record(sub) for sub in session.scalars(query)]

    def counts(self, list_id: int | None = None) -> dict[str, int]:
        """Subscriptions by status; ``list_id`` None: every list's."""
        with self._db.session() as session:
            query = select(Subscriber.status, func.count()).group_by(Subscriber.status)
            if list_id is not None:
                query = query.where(Subscriber.list_id == list_id)
            return dict(session.execute(query).all())

    def import_rows(
        self,
        rows: Sequence[SubscriberInput],
        defaults: SubscriberDefaults,
        dry_run: bool = False,
        list_ids: Mapping[str, int] | None = None,
    ) -> ChangeReport:
        """Create new subscriptions and update changed ones, in bulk; identical rows are no-ops.

        A row goes to the list its ``list_slug`` names (``list_ids``: slug to id; every slug
        must be there), or to the default list. A row's blank optional fields leave an existing subscriber's value alone; its status
        (as `export` writes it) is applied, except that an unsubscribed or bounced subscriber
        is never changed by an import: those are counted as ``kept``. With ``dry_run`` the
        transaction is rolled back, so the report shows what would happen.
        """
        report = ChangeReport()
        session = self._db.sessions()
        try:
            default = default_list_id(session)
            keyed = [((list_ids or {}).get(row.list_slug or "", default), row) for row in rows]
            existing = self._existing(session, keyed)
            new_rows = [(lid, row) for lid, row in keyed if (lid, row.email) not in existing]
            changed_topics: dict[int, Sequence[str]] = {}
            for lid, row in keyed:
                sub = existing.get((lid, row.email))
                if sub is None:
                    continue
                if sub.status in OPTED_OUT:
                    report.kept += 1
                elif self._apply_row(sub, row, changed_topics):
                    report.updated += 1
                else:
                    report.unchanged += 1
            created_ids = self._insert_subscribers(session, new_rows, defaults)
            changed_topics.update(
                {created_ids[(lid, row.email)]: row.topics for lid, row in new_rows}
            )
            set_topics(session, changed_topics)
            report.created = len(new_rows)
            if dry_run:
                session.rollback()
            else:
                session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        return report

    @staticmethod
    def _existing(
        session: Session, keyed: Sequence[tuple[int, SubscriberInput]]
    ) -> dict[tuple[int, str], Subscriber]:
        """The subscriptions the rows name, by (list id, email)."""
        wanted = {(lid, row.email) for lid, row in keyed}
        found: dict[tuple[int, str], Subscriber] = {}
        for chunk in chunks(sorted({email for _, email in wanted})):
            for sub in session.scalars(select(Subscriber).where(Subscriber.email.in_(chunk))):
                if (sub.list_id, sub.email) in wanted:
                    found[(sub.list_id, sub.email)] = sub
        return found

    @staticmethod
    def _apply_row(
        sub: Subscriber, row: SubscriberInput, changed_topics: dict[int, Sequence[str]]
    ) -> bool:
        changed = False
        for attr in ("timezone", "send_hour", "max_papers", "status"):
            value = getattr(row, attr)
            if value is not None and getattr(sub, attr) != value:
                setattr(sub, attr, value)
                changed = True
        if tuple(sub.topics) != row.topics:
            changed_topics[sub.id] = row.topics
            changed = True
        return changed

    @staticmethod
    def _insert_subscribers(
        session: Session, rows: Sequence[tuple[int, SubscriberInput]], defaults: SubscriberDefaults
    ) -> dict[tuple[int, str], int]:
        now = utcnow()
        ids: dict[tuple[int, str], int] = {}
        by_list = {lid: _list_defaults(session, defaults, lid) for lid in {lid for lid, _ in rows}}
        values = [
            {
                "email": row.email,
                "list_id": lid,
                "status": row.status or "active",
                **by_list[lid].schedule_of(row),
                "confirmed_at": now if (row.status or "active") in ("active", "paused") else None,
                "unsubscribed_at": now if row.status in OPTED_OUT else None,
            }
            for lid, row in rows
        ]
        for chunk in chunks(values):
            result = session.execute(
                insert(Subscriber).returning(Subscriber.list_id, Subscriber.email, Subscriber.id),
                list(chunk),
            )
            ids.update({(lid, email): sid for lid, email, sid in result.all()})
        return ids

    def due(
        self, now: dt.datetime, ignore_send_hour: bool = False, list_id: int | None = None
    ) -> list[tuple[SubscriberRecord, dt.date]]:
        """Active subscriptions that owe an edition now (:func:`digest.lists.due_edition`),
        with its date: their local send hour has come on a day their cadence (their own, or
        their list's) sends, and they have no edition of that date or later. Grouped by
        (list, cadence, time zone, hour) so the clock maths runs per group, not per reader.
        ``list_id``: that list's only."""
        aware_now = now.replace(tzinfo=dt.UTC)
        due: list[tuple[SubscriberRecord, dt.date]] = []
        with self._db.session() as session:
            query = (
                select(
                    Subscriber.list_id,
                    DigestList.cadence,
                    Subscriber.cadence,
                    Subscriber.timezone,
                    Subscriber.send_hour,
                )
                .join(DigestList)
                .where(Subscriber.status == "active")
                .distinct()
            )
            if list_id is not None:
                query = query.where(Subscriber.list_id == list_id)
            for lid, list_cadence, own, tz_name, hour in session.execute(query).all():
                place = zone(tz_name)
                local = aware_now.astimezone(place)
                edition = due_edition(own or list_cadence, local, hour, ignore_send_hour)
                if edition is None:
                    continue
                condition = and_(
                    Subscriber.status == "active",
                    Subscriber.list_id == lid,
                    Subscriber.cadence == own if own else Subscriber.cadence.is_(None),
                    Subscriber.timezone == tz_name,
                    Subscriber.send_hour == hour,
                    ~exists().where(
                        and_(Delivery.subscriber_id == Subscriber.id, Delivery.edition >= edition)
                    ),
                )
                if edition < local.date():  # a late weekly edition: owed since its hour came
                    condition = and_(
                        condition, Subscriber.created_at <= slot_start(edition, hour, place)
                    )
                due.extend((sub, edition) for sub in subscriber_records(session, condition))
        return due


def _find(session: Session, email: str, list_id: int | None) -> Subscriber | None:
    return session.scalar(
        select(Subscriber).where(
            Subscriber.email == email, Subscriber.list_id == list_id_of(session, list_id)
        )
    )


def _slug(session: Session, list_id: int) -> str:
    return session.scalar(select(DigestList.slug).where(DigestList.id == list_id)) or "?"


def _list_defaults(
    session: Session, defaults: SubscriberDefaults, list_id: int
) -> SubscriberDefaults:
    """``defaults`` with the list's own digest size, when it has one."""
    size = session.scalar(select(DigestList.max_papers).where(DigestList.id == list_id))
    return dataclasses.replace(defaults, max_papers=size) if size else defaults
