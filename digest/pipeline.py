"""The daily job, wired: fetch -> plan the editions due -> delivery rows -> send batches.

``run_tick`` is what Celery beat triggers every few minutes (workers/tasks.py hands it an
``enqueue`` that fans batches out to Celery); ``digest run --now`` calls the same pieces in
one process and sends the batches itself. Every step is idempotent: running a tick twice
creates no second delivery and sends nothing twice.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from digest import alerts, receipts
from digest.announcements import announced_recently
from digest.editions import CANDIDATE_WINDOW, EditionPlan, digest_content, plan_edition
from digest.ingestion import SourceReport, fetch_all, ingest_bundled_sample
from digest.lists import (
    DAILY_WINDOW,
    DEFAULT_LIST,
    candidate_window,
    fetch_plan,
    from_sources,
    titles,
    window_span,
)
from digest.models import utcnow
from digest.ranking import paper_passage
from digest.records import ListRecord, NewDelivery, SubscriberRecord
from digest.rendering import DigestContent
from digest.runs import BEAT, RunCounts, all_sources_down
from digest.semantic import ranking_mode
from digest.settings import Settings
from digest.sources import PaperRecord
from digest.storage import Storage
from digest.subscriptions import papers_of_topics

VECTOR_RETENTION = dt.timedelta(days=30)  # stored embeddings: papers are candidates for 2 days

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    fetched: list[SourceReport] = field(default_factory=list)
    due: int = 0
    created: int = 0
    skipped: int = 0  # due, but nothing to send (no match and nothing trending)
    held: int = 0  # due, nothing matched, and every source was down: not "nothing new"
    requeued_stale: int = 0
    batches: int = 0
    enqueued: int = 0
    run_id: int = 0  # its receipt (`digest runs show`)
    status: str = ""

    def counts(self) -> RunCounts:
        """The plan's side of the receipt; its batches add the sends."""
        return RunCounts(
            due=self.due,
            planned=self.enqueued,
            skipped_nothing_new=self.skipped,
            held_sources_down=self.held,
        )


@dataclass(frozen=True)
class Scope:
    """What a group of subscriptions picks from: their list's sources, and their cadence's
    window (a weekly edition is the best of the week). Planning ranks each scope's
    subscriptions at once, as it ranked everyone when there was one list."""

    sources: tuple[str, ...] = ()
    window: str = DAILY_WINDOW


def scope_of(sub: SubscriberRecord, lists: Mapping[int, ListRecord]) -> Scope:
    listed = lists.get(sub.list_id)
    if listed is None:
        return Scope()
    return Scope(listed.sources, candidate_window(sub.cadence or listed.cadence))


def by_scope(
    due: Sequence[tuple[SubscriberRecord, dt.date]], lists: Mapping[int, ListRecord]
) -> dict[Scope, list[tuple[SubscriberRecord, dt.date]]]:
    """The subscriptions due, grouped by what they pick from, in the order they came."""
    groups: dict[Scope, list[tuple[SubscriberRecord, dt.date]]] = {}
    for sub, edition in due:
        groups.setdefault(scope_of(sub, lists), []).append((sub, edition))
    return groups


def batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def fetch_papers(store: Storage, settings: Settings) -> list[SourceReport]:
    """Live sources unless offline, so that every list has its papers (the settings'
    categories and every list's, and each list's arXiv queries); the bundled sample when
    nothing could be fetched and the store is empty (the embedded default must work without
    a network)."""
    reports = []
    if not settings.offline:
        categories, queries = fetch_plan(store.lists.all(), settings.category_list)
        reports = fetch_all(store.papers, settings, categories=categories, queries=queries)
    landed = any(r.error is None and (r.new or r.updated or r.not_modified) for r in reports)
    if not landed and store.papers.count() == 0:
        log.warning(
            "no papers could be fetched and none are stored: using the bundled sample papers"
        )
        reports += ingest_bundled_sample(store.papers, settings.announce_types)
    return reports


def candidate_papers(
    store: Storage, settings: Settings, now: dt.datetime, scope: Scope | None = None
) -> list[PaperRecord]:
    """Today's candidates for ``scope`` (None: a daily list without sources of its own):
    its list's papers first seen within the candidate window that were announced recently
    (:mod:`digest.announcements`), so a search's old results are not news. A weekly
    edition's window is a week longer (:func:`digest.lists.window_span`)."""
    scope = scope or Scope()
    seen_within, days = window_span(scope.window, CANDIDATE_WINDOW, settings.new_paper_days)
    seen = from_sources(store.papers.find(since=now - seen_within), scope.sources)
    return announced_recently(seen, now, days, settings.holidays)


def rank_today(
    store: Storage,
    settings: Settings,
    subscribers: Sequence[SubscriberRecord],
    now: dt.datetime,
    remember: bool = True,
    fresh: bool = False,
    scope: Scope | None = None,
) -> EditionPlan:
    """Every subscriber's picks among today's candidates, as the daily run makes them: the
    tick, `preview`, `send-test` and the web preview all rank through here. Papers a
    subscriber was already sent are left out, unless ``fresh`` (a test send, a visitor's
    preview: what someone new would get). ``remember`` off: embeddings of new texts are not
    stored (anonymous web previews). Each reader's votes reorder their picks. Every
    subscriber picks from ``scope`` (None: the first one's list and cadence)."""
    encoder, threshold = ranking_mode(settings, store.papers, remember)
    if scope is None and subscribers:
        scope = scope_of(subscribers[0], store.lists.by_id())
    candidates = candidate_papers(store, settings, now, scope)
    ids = [sub.id for sub in subscribers if sub.id]
    already_sent = (
        {} if fresh else store.archive.sent_paper_ids(ids, [p.arxiv_id for p in candidates])
    )
    votes = store.feedback.reader_votes(ids)
    named = {pid for said in votes.values() for pid in said.papers}
    named |= papers_of_topics({t for sub in subscribers for t in sub.topics})
    return plan_edition(
        candidates,
        subscribers,
        already_sent,
        now,
        threshold,
        encoder,
        votes,
        {p.arxiv_id: p for p in store.papers.find(ids=sorted(named))} if named else {},
    )


def todays_digest(
    store: Storage,
    settings: Settings,
    sub: SubscriberRecord,
    now: dt.datetime,
    fresh: bool = False,
    listed: ListRecord = DEFAULT_LIST,
) -> tuple[DigestContent, int]:
    """What ``sub`` would get from the stored papers at ``now`` on its list (``listed``:
    its title), and from how many candidates (``fresh``: as if they had been sent nothing
    yet)."""
    plan = rank_today(store, settings, [sub], now, fresh=fresh)
    content = digest_content(
        sub,
        plan.picks[sub.id],
        plan.papers,
        now.date(),
        settings.tokens,
        settings.base_url,
        plan.quiet[sub.id],
        titles(listed, settings.sender),
    )
    return content, plan.candidates


def embed_papers(
    store: Storage,
    settings: Settings,
    papers: Sequence[PaperRecord],
    progress: Callable[[int], None] = lambda _done: None,
    chunk: int = 64,
) -> None:
    """Embed papers now (once each, stored), so the next daily run and the web preview only
    read vectors instead of spending ~70 ms of CPU per new paper; ``progress`` hears of
    each chunk of papers done."""
    encoder, _ = ranking_mode(settings, store.papers)
    if encoder is None:
        return
    passages = [paper_passage(p) for p in papers]
    for start in range(0, len(passages), chunk):
        encoder.encode(passages[start : start + chunk])
        progress(min(chunk, len(passages) - start))


class PlannedDeliveries:
    """One delivery row per subscriber due, made as they are read: storage streams them into
    the database while the next are explained. Can be read more than once (storage re-reads
    them when some rows already exist), and counts the rows with nothing to send."""

    def __init__(self, plan: EditionPlan, editions: Sequence[dt.date]) -> None:
        self.plan, self.editions = plan, editions
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.editions)

    def __iter__(self) -> Iterator[NewDelivery]:
        self.skipped = 0
        for (sub, picks, quiet), edition in zip(self.plan.digests(), self.editions, strict=True):
            self.skipped += not picks
            yield NewDelivery(
                sub.id, edition, picks, "queued" if picks else "skipped", tuple(quiet)
            )


def matched_only(
    store: Storage,
    settings: Settings,
    due: Sequence[tuple[SubscriberRecord, dt.date]],
    now: dt.datetime,
) -> list[tuple[SubscriberRecord, dt.date]]:
    """The subscribers due whose digest matched a paper on their topics. When every source
    failed, the others are left unplanned (a later tick plans them once a source is back):
    a "nothing new" digest would pretend the day was quiet."""
    matched = set()
    for scope, group in by_scope(due, store.lists.by_id()).items():
        plan = rank_today(store, settings, [sub for sub, _ in group], now, scope=scope)
        matched |= {s.id for s, picks, _ in plan.digests() if any(p.get("topic") for p in picks)}
    return [(sub, edition) for sub, edition in due if sub.id in matched]


def plan_deliveries(
    store: Storage,
    settings: Settings,
    due: Sequence[tuple[SubscriberRecord, dt.date]],
    now: dt.datetime,
) -> tuple[int, int, list[int]]:
    """Rank the candidates for everyone due and write one delivery row each, a scope (list
    and window) at a time.

    Returns (created, skipped, the new queued ids, already marked handed out: the caller
    enqueues them). A subscriber with nothing to send gets a 'skipped' row, so they are not
    planned again every tick of the same day.
    """
    created, skipped, queued = 0, 0, list[int]()
    for scope, group in by_scope(due, store.lists.by_id()).items():
        plan = rank_today(store, settings, [sub for sub, _ in group], now, scope=scope)
        rows = PlannedDeliveries(plan, [edition for _, edition in group])
        made, handed_out = store.deliveries.create(rows, handed_out_at=now)
        created, skipped, queued = created + made, skipped + rows.skipped, queued + handed_out
    return created, skipped, queued


@contextmanager
def collector_paused() -> Iterator[None]:
    """Planning a million subscribers makes tens of millions of objects that all live until
    the delivery rows are written, and nearly none of them in cycles; Python's cyclic
    collector walked all of them again and again (measured: 16.8 -> 10.6 s reading the due
    subscribers at 1M, 56 -> 45 s ranking them). Reference counting still frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_tick(
    store: Storage,
    settings: Settings,
    now: dt.datetime,
    enqueue: Callable[[list[int]], object],
    fetch_every: dt.timedelta | None = None,
    everyone: bool = False,
    run_id: int | None = None,
    trigger: str = BEAT,
    embed_new: Callable[[Sequence[PaperRecord]], None] | None = None,
    list_id: int | None = None,
) -> TickReport:
    """One wake-up of the daily job, with its receipt in ``store.runs`` (``run_id``: one the
    caller started, so the batches it enqueues can name it; else one is started here).

    Papers are fetched when someone is due and the last successful fetch is older than
    ``fetch_every`` (default: DIGEST_FETCH_INTERVAL_MINUTES; ``timedelta(0)`` = always).
    ``everyone`` plans all active subscribers now, whatever their send hour (``run --now``);
    ``list_id``: only that list's (``run --now --list``).
    ``embed_new`` is handed today's candidates after a fetch, before ranking embeds them:
    ``run --now`` embeds them there under a progress bar (minutes, on a slow machine's
    first run), and ranking then reads their vectors.
    """
    report = TickReport(run_id=run_id or store.runs.start(trigger, now))
    try:
        _tick(store, settings, now, enqueue, fetch_every, everyone, report, embed_new, list_id)
    except Exception as exc:
        error = receipts.one_line(exc)
        store.runs.finish(report.run_id, utcnow(), report.counts(), [], error)
        log.error("run %d failed: %s", report.run_id, error)
        raise
    report.status = store.runs.finish(
        report.run_id, utcnow(), report.counts(), receipts.source_runs(report.fetched)
    )
    store.runs.prune(now - dt.timedelta(days=settings.run_history_days))
    alerts.alert_if_needed(store.runs, settings, now)
    log.info(
        "run %d %s: %d due, %d deliveries created, %d skipped, %d held (sources down), "
        "%d enqueued in %d batches",
        report.run_id,
        report.status,
        report.due,
        report.created,
        report.skipped,
        report.held,
        report.enqueued,
        report.batches,
    )
    return report


def _tick(
    store: Storage,
    settings: Settings,
    now: dt.datetime,
    enqueue: Callable[[list[int]], object],
    fetch_every: dt.timedelta | None,
    everyone: bool,
    report: TickReport,
    embed_new: Callable[[Sequence[PaperRecord]], None] | None = None,
    list_id: int | None = None,
) -> None:
    if fetch_every is None:
        fetch_every = dt.timedelta(minutes=settings.fetch_interval_minutes)
    store.subscribers.delete_expired_pending(now - dt.timedelta(days=settings.pending_expiry_days))
    store.papers.prune_vectors(now - VECTOR_RETENTION)
    report.requeued_stale = store.deliveries.requeue_stale_claims(
        now, dt.timedelta(seconds=settings.claim_lease_seconds)
    )
    if report.requeued_stale:
        log.warning("requeued %d deliveries whose worker died mid-send", report.requeued_stale)
    with collector_paused():
        due = store.subscribers.due(now, ignore_send_hour=everyone, list_id=list_id)
        last = store.papers.last_fetched_at()
        if due and (last is None or now - last >= fetch_every):
            report.fetched = fetch_papers(store, settings)
            if embed_new is not None:
                embed_new(candidate_papers(store, settings, now))
        report.due = len(due)
        if due and all_sources_down(receipts.source_runs(report.fetched)):
            kept = matched_only(store, settings, due, now)
            report.held, due = len(due) - len(kept), kept
            log.warning(
                "every source failed: %d digest(s) with nothing matched held back", report.held
            )
        report.created, report.skipped, planned_now = plan_deliveries(store, settings, due, now)
    lease = dt.timedelta(seconds=settings.enqueue_lease_seconds)
    ids = sorted(planned_now + store.deliveries.take_to_send(now, lease))
    planned = batches(ids, settings.batch_size)
    for batch in planned:
        enqueue(batch)
    report.batches, report.enqueued = len(planned), len(ids)
