"""Subscribers: sign-up and consent, their settings and topics, bulk import, and who is due.

Consent is the delicate part: an unsubscribed or bounced row is history that no sign-up,
import or stale confirmation link may overwrite (see :meth:`Subscribers.request_subscription`
and :meth:`Subscribers.confirm_subscription`)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.models import Delivery, Subscriber, SubscriberTopic, Topic, utcnow
from digest.records import ChangeReport, SubscriberDefaults, SubscriberRecord
from digest.storage.database import Database, StorageError, changed_rows, chunks
from digest.storage.rows import subscriber_record, subscriber_records
from digest.storage.topics import drop_unused_topics, set_topics
from digest.subscriptions import OPTED_OUT, SubscriberInput


class Subscribers:
    """Everyone who signed up, one short transaction per call; records in and out."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _get(self, session: Session, email: str) -> Subscriber:
        sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
        if sub is None:
            raise StorageError(f"no subscriber with email {email}")
        return sub

    def get(self, email: str) -> SubscriberRecord | None:
        with self._db.session() as session:
            sub = session.scalar(select(Subscriber).where(Subscriber.email == email))
            return subscriber_record(sub) if sub else None

    def require(self, email: str) -> SubscriberRecord:
        """The subscriber, or a StorageError that says there is none."""
        with self._db.session() as session:
            return subscriber_record(self._get(session, email))

    def get_by_id(self, subscriber_id: int) -> SubscriberRecord | None:
        with self._db.session() as session:
            sub = session.get(Subscriber, subscriber_id)
            return subscriber_record(sub) if sub else None

    def add(
        self, data: SubscriberInput, defaults: SubscriberDefaults, status: str = "active"
    ) -> SubscriberRecord:
        with self._db.session() as session:
            existing = session.scalar(
                select(Subscriber.status).where(Subscriber.email == data.email)
            )
            if existing in OPTED_OUT:
                raise StorageError(
                    f"{data.email} is {existing}: they asked to stop, or their mailbox refused "
                    f"our mail. Only with their consent: digest subscribers resume --force {data.email}"
                )
            if existing:
                raise StorageError(
                    f"{data.email} is already subscribed (use `digest subscribers set` to change it)"
                )
            sub = Subscriber(
                email=data.email,
                status=status,
                confirmed_at=utcnow() if status == "active" else None,
                **defaults.schedule_of(data),
            )
            session.add(sub)
            session.flush()
            set_topics(session, {sub.id: data.topics})
            session.refresh(sub)
            return subscriber_record(sub)

    def request_subscription(
        self, data: SubscriberInput, defaults: SubscriberDefaults
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
            return self._request_subscription(data, defaults)
        except IntegrityError:
            return self._request_subscription(data, defaults)

    def _request_subscription(
        self, data: SubscriberInput, defaults: SubscriberDefaults
    ) -> tuple[SubscriberRecord, bool]:
        with self._db.session() as session:
            sub = session.scalar(select(Subscriber).where(Subscriber.email == data.email))
            if sub is not None and sub.status != "pending":
                return subscriber_record(sub), sub.status in OPTED_OUT
            if sub is None:
                sub = Subscriber(email=data.email, status="pending")
                session.add(sub)
            for name, value in defaults.schedule_of(data).items():
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

    def remove(self, email: str) -> None:
        """Delete the subscriber and everything about them (their deliveries cascade)."""
        with self._db.session() as session:
            session.delete(self._get(session, email))
            session.flush()
            drop_unused_topics(session)

    def set_status(
        self, email: str, status: str, allowed_from: Sequence[str] | None = None
    ) -> SubscriberRecord:
        with self._db.session() as session:
            sub = self._get(session, email)
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
    ) -> SubscriberRecord:
        with self._db.session() as session:
            sub = self._get(session, email)
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

    def find(self, status: str | None = None, topic: str | None = None) -> list[SubscriberRecord]:
        with self._db.session() as session:
            query = select(Subscriber).order_by(Subscriber.email)
            if status:
                query = query.where(Subscriber.status == status)
            if topic:
                query = query.join(SubscriberTopic).join(Topic).where(Topic.name == topic)
            return [subscriber_record(sub) for sub in session.scalars(query)]

    def counts(self) -> dict[str, int]:
        with self._db.session() as session:
            rows = session.execute(
                select(Subscriber.status, func.count()).group_by(Subscriber.status)
            )
            return dict(rows.all())

    def import_rows(
        self, rows: Sequence[SubscriberInput], defaults: SubscriberDefaults, dry_run: bool = False
    ) -> ChangeReport:
        """Create new subscribers and update changed ones, in bulk; identical rows are no-ops.

        A row's blank optional fields leave an existing subscriber's value alone; its status
        (as `export` writes it) is applied, except that an unsubscribed or bounced subscriber
        is never changed by an import: those are counted as ``kept``. With ``dry_run`` the
        transaction is rolled back, so the report shows what would happen.
        """
        report = ChangeReport()
        session = self._db.sessions()
        try:
            existing = self._existing_by_email(session, [row.email for row in rows])
            new_rows = [row for row in rows if row.email not in existing]
            changed_topics: dict[int, Sequence[str]] = {}
            for row in rows:
                sub = existing.get(row.email)
                if sub is None:
                    continue
                if sub.status in OPTED_OUT:
                    report.kept += 1
                elif self._apply_row(sub, row, changed_topics):
                    report.updated += 1
                else:
                    report.unchanged += 1
            created_ids = self._insert_subscribers(session, new_rows, defaults)
            changed_topics.update({created_ids[row.email]: row.topics for row in new_rows})
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
    def _existing_by_email(session: Session, emails: Sequence[str]) -> dict[str, Subscriber]:
        found: dict[str, Subscriber] = {}
        for chunk in chunks(list(emails)):
            for sub in session.scalars(select(Subscriber).where(Subscriber.email.in_(chunk))):
                found[sub.email] = sub
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
        session: Session, rows: Sequence[SubscriberInput], defaults: SubscriberDefaults
    ) -> dict[str, int]:
        now = utcnow()
        ids: dict[str, int] = {}
        values = [
            {
                "email": row.email,
                "status": row.status or "active",
                **defaults.schedule_of(row),
                "confirmed_at": now if (row.status or "active") in ("active", "paused") else None,
                "unsubscribed_at": now if row.status in OPTED_OUT else None,
            }
            for row in rows
        ]
        for chunk in chunks(values):
            result = session.execute(
                insert(Subscriber).returning(Subscriber.email, Subscriber.id), list(chunk)
            )
            ids.update(result.all())
        return ids

    def due(
        self, now: dt.datetime, ignore_send_hour: bool = False
    ) -> list[tuple[SubscriberRecord, dt.date]]:
        """Active subscribers whose local send hour has come and who have no edition for
        their local date yet. Grouped by (time zone, hour) so the clock maths runs per group,
        not per subscriber."""
        aware_now = now.replace(tzinfo=dt.UTC)
        due: list[tuple[SubscriberRecord, dt.date]] = []
        with self._db.session() as session:
            groups = session.execute(
                select(Subscriber.timezone, Subscriber.send_hour)
                .where(Subscriber.status == "active")
                .distinct()
            ).all()
            for tz_name, hour in groups:
                local = aware_now.astimezone(_zone(tz_name))
                if local.hour < hour and not ignore_send_hour:
                    continue
                edition = local.date()
                already = exists().where(
                    and_(Delivery.subscriber_id == Subscriber.id, Delivery.edition == edition)
                )
                condition = and_(
                    Subscriber.status == "active",
                    Subscriber.timezone == tz_name,
                    Subscriber.send_hour == hour,
                    ~already,
                )
                due.extend((sub, edition) for sub in subscriber_records(session, condition))
        return due


def _zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC
