"""The ``digest`` admin command line: a thin shell over storage, ingestion, ranking and delivery.

Every expected failure (bad input, unknown subscriber, invalid setting, outage) ends as a
one-line ``Error: ...`` and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from digest import semantic
from digest.delivery import BatchReport, send_deliveries
from digest.editions import digest_message
from digest.evaluation import (
    Qrels,
    load_papers_file,
    load_profile_votes,
    load_profiles_file,
    load_qrels,
    merge_unrelated_profiles,
    score_run,
    simulate_votes,
    topic_coverage,
)
from digest.ingestion import (
    LIVE_SOURCES,
    fetch_all,
    ingest_bytes,
    look_up_papers,
    require_topic_papers,
)
from digest.limits import RateLimiter
from digest.messages import wire_address
from digest.models import DELIVERY_STATUSES, SUBSCRIBER_STATUSES, utcnow
from digest.pipeline import candidate_papers, embed_papers, run_tick, todays_digest
from digest.ranking import Encoder, plain_bm25_ranking, rank_profiles
from digest.records import ChangeReport, SubscriberRecord
from digest.rendering import render_digest
from digest.settings import Settings, SettingsError, load_settings
from digest.sources import HF_RSS, PaperRecord
from digest.storage import Storage, StorageError
from digest.subscriptions import (
    OPTED_OUT,
    InvalidInput,
    ParsedCsv,
    build_subscriber_input,
    format_subscriber_csv,
    normalize_email,
    normalize_topic,
    papers_of_topics,
    parse_subscriber_csv,
)
from digest.transports import PermanentError, TransientError, make_transport

log = logging.getLogger("digest.cli")
IMPORT_BATCH = 1000
PORT = click.IntRange(1, 65535)
SHOWN_REJECTIONS = 20
USER_ERRORS = (InvalidInput, StorageError, SettingsError)


@dataclass
class AppContext:
    """What every command needs, built lazily so `--help` works without a database."""

    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(**self.overrides)

    @cached_property
    def store(self) -> Storage:
        return self.open_store()

    def open_store(self, statement_timeout: float | None = None) -> Storage:
        return Storage.open(
            self.settings.resolved_database_url, self.settings.db_connect_timeout, statement_timeout
        )

    @cached_property
    def ranking(self) -> tuple[Encoder | None, float]:
        """(encoder, threshold) for ranking stored papers, as the daily run does."""
        return semantic.ranking_mode(self.settings, self.store.papers)


class DigestGroup(click.Group):
    """Turns the project's user-facing exceptions into clean ``Error:`` lines."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = 1  # one rule for scripts: 0 worked, 1 did not
            raise
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except OperationalError as exc:
            raise click.ClickException(f"database error: {exc.orig}") from None


pass_app = click.make_pass_decorator(AppContext)


def setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.option(
    "--database-url", metavar="URL", help="Override DIGEST_DATABASE_URL for this command."
)
@click.version_option(package_name="paper-digest")
@click.pass_context
def cli(ctx: click.Context, verbose: int, database_url: str | None) -> None:
    """Paper Digest: a daily email of the trending research papers that match each subscriber's topics.

    Configuration comes from DIGEST_* environment variables (or a .env file); see
    config/example.env. With no configuration, everything runs locally: a SQLite database
    in ~/.local/share/paper-digest, and digests written as .eml files to its outbox/
    folder, whichever folder you run digest from (DIGEST_DATA_DIR moves it).

    \b
    Start here:
      digest run --now                      fetch, rank and send today's digests
      digest subscribers add a@b.org --topic "graph neural networks"
      digest subscribers import people.csv  bulk add or update from CSV
      digest preview a@b.org --out d.html   see what someone would receive
    """
    setup_logging(verbose)
    ctx.obj = AppContext({"database_url": database_url} if database_url else {})


def main() -> None:
    cli(prog_name="digest")


# -- db ------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema management (Alembic migrations).

    \b
    Example:
      digest db upgrade
    """


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Apply all pending migrations (after every upgrade of Paper Digest, on PostgreSQL).

    \b
    Example:
      DIGEST_DATABASE_URL=postgresql+psycopg://user@host/digest digest db upgrade
    """
    store = Storage.from_url(app.settings.resolved_database_url)
    before = store.db.schema_revision()
    store.db.upgrade()
    after = store.db.schema_revision()
    click.echo(f"database at revision {after} (was {before or 'empty'})")


@db.command("current")
@pass_app
def db_current(app: AppContext) -> None:
    """Show the database's schema revision and the newest this version knows.

    \b
    Example:
      digest db current
    """
    store = Storage.from_url(app.settings.resolved_database_url)
    click.echo(
        f"current: {store.db.schema_revision() or 'empty'}  head: {store.db.head_revision()}"
    )


# -- subscribers ---------------------------------------------------------------------------


@cli.group()
def subscribers() -> None:
    """Add, change, remove, import and export subscribers.

    Emails are validated and normalised (case, IDN domains); topics are free text,
    normalised to lower case, at most 5 per subscriber.

    \b
    Example:
      digest subscribers list --status active
    """


def _echo_subscriber(sub: SubscriberRecord) -> None:
    click.echo(f"{sub.email}  [{sub.status}]")
    click.echo(f"  topics:     {'; '.join(sub.topics)}")
    click.echo(f"  send at:    {sub.send_hour:02d}:00 {sub.timezone}")
    click.echo(f"  max papers: {sub.max_papers}")
    click.echo(f"  since:      {sub.created_at:%Y-%m-%d}")


topic_option = click.option(
    "--topic",
    "-t",
    "topics",
    multiple=True,
    metavar="TOPIC",
    help='A topic, e.g. -t "graph neural networks". Repeat for several.',
)
timezone_option = click.option(
    "--timezone", metavar="TZ", help="IANA time zone, e.g. Europe/Paris."
)
send_hour_option = click.option(
    "--send-hour", type=int, metavar="H", help="Local hour 0-23 to send."
)
max_papers_option = click.option(
    "--max-papers", type=int, metavar="N", help="Papers per digest, 1-50."
)


def subscriber_options(command: Any) -> Any:
    """EMAIL plus every per-subscriber option: the shape of `subscribers add` and `set`."""
    for decorate in (
        pass_app,
        max_papers_option,
        send_hour_option,
        timezone_option,
        topic_option,
        click.argument("email"),
    ):
        command = decorate(command)
    return command


@subscribers.command("add")
@subscriber_options
def subscribers_add(
    app: AppContext,
    email: str,
    topics: Sequence[str],
    timezone: str | None,
    send_hour: int | None,
    max_papers: int | None,
) -> None:
    """Subscribe EMAIL (active at once: admins vouch for the address).

    \b
    Example:
      digest subscribers add ada@example.org -t "efficient attention" -t "state space models"
    """
    data = build_subscriber_input(email, topics, timezone, send_hour, max_papers)
    require_topic_papers(app.store.papers, app.settings, data.topics)
    sub = app.store.subscribers.add(data, app.settings.subscriber_defaults)
    click.echo(f"added {sub.email} with topics: {'; '.join(sub.topics)}")


@subscribers.command("set")
@subscriber_options
def subscribers_set(
    app: AppContext,
    email: str,
    topics: Sequence[str],
    timezone: str | None,
    send_hour: int | None,
    max_papers: int | None,
) -> None:
    """Change a subscriber's topics (all of them), time zone, hour or digest size.

    \b
    Example:
      digest subscribers set ada@example.org -t "speech recognition" --send-hour 8
    """
    current = app.store.subscribers.require(normalize_email(email))
    data = build_subscriber_input(email, topics or current.topics, timezone, send_hour, max_papers)
    require_topic_papers(app.store.papers, app.settings, data.topics)
    sub = app.store.subscribers.update(
        data.email,
        list(data.topics) if topics else None,
        data.timezone,
        data.send_hour,
        data.max_papers,
    )
    _echo_subscriber(sub)


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def subscribers_remove(app: AppContext, email: str, yes: bool) -> None:
    """Delete EMAIL and its history for good (to stop mails but keep history: pause).

    \b
    Example:
      digest subscribers remove ada@example.org --yes
    """
    address = normalize_email(email)
    if not yes:
        click.confirm(f"Delete {address} and its history?", abort=True)
    app.store.subscribers.remove(address)
    click.echo(f"removed {address}")


@subscribers.command("pause")
@click.argument("email")
@pass_app
def subscribers_pause(app: AppContext, email: str) -> None:
    """Stop sending to EMAIL until `resume`.

    \b
    Example:
      digest subscribers pause ada@example.org
    """
    sub = app.store.subscribers.set_status(
        normalize_email(email), "paused", allowed_from=("active", "paused")
    )
    click.echo(f"{sub.email} is {sub.status}")


@subscribers.command("resume")
@click.argument("email")
@click.option("--force", is_flag=True, help="Also re-activate an unsubscribed or bounced address.")
@pass_app
def subscribers_resume(app: AppContext, email: str, force: bool) -> None:
    """Start sending to a paused EMAIL again.

    An unsubscribed address asked us to stop, and a bounced one does not receive mail:
    resuming either needs --force, and the person's own say-so (or a working mailbox).

    \b
    Example:
      digest subscribers resume ada@example.org
    """
    address = normalize_email(email)
    current = app.store.subscribers.require(address)
    if current.status in OPTED_OUT and not force:
        raise StorageError(
            f"{address} is {current.status}: they asked to stop, or their mailbox refused our mail. "
            "Resume only with their consent: digest subscribers resume --force " + address
        )
    sub = app.store.subscribers.set_status(address, "active")
    click.echo(f"{sub.email} is {sub.status}")


@subscribers.command("show")
@click.argument("email")
@pass_app
def subscribers_show(app: AppContext, email: str) -> None:
    """Show one subscriber.

    \b
    Example:
      digest subscribers show ada@example.org
    """
    _echo_subscriber(app.store.subscribers.require(normalize_email(email)))


FORMATS = click.Choice(["table", "csv", "json"])


def _print_subscribers(subs: list[SubscriberRecord], fmt: str) -> None:
    rows = [sub.as_row() for sub in subs]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(format_subscriber_csv(rows), nl=False)
    else:
        click.echo(
            format_table(
                ["email", "status", "topics", "tz", "hour", "max"],
                [
                    [s.email, s.status, "; ".join(s.topics), s.timezone, s.send_hour, s.max_papers]
                    for s in subs
                ],
            )
        )
        click.echo(f"{len(subs)} subscriber(s)")


@subscribers.command("list")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES))
@click.option("--topic", help="Only subscribers following this topic.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@pass_app
def subscribers_list(app: AppContext, status: str | None, topic: str | None, fmt: str) -> None:
    """List subscribers, optionally filtered by status and topic.

    \b
    Example:
      digest subscribers list --topic "efficient attention" --format csv
    """
    subs = app.store.subscribers.find(
        status=status, topic=normalize_topic(topic) if topic else None
    )
    _print_subscribers(subs, fmt)


@subscribers.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES))
@pass_app
def subscribers_export(app: AppContext, output: Path | None, status: str | None) -> None:
    """Export subscribers as CSV in the format `import` reads back.

    \b
    Example:
      digest subscribers export -o backup.csv
    """
    text = format_subscriber_csv(
        [sub.as_row() for sub in app.store.subscribers.find(status=status)]
    )
    if output:
        write_output(output, text)
        click.echo(f"wrote {text.count(chr(10)) - 1} subscriber(s) to {output}", err=True)
    else:
        click.echo(text, nl=False)


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and report, but change nothing.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help=f"Write every rejected line here (the screen shows the first {SHOWN_REJECTIONS}).",
)
@pass_app
def subscribers_import(
    app: AppContext, csv_file: Path, dry_run: bool, report_path: Path | None
) -> None:
    """Add or update subscribers from CSV_FILE.

    \b
    The first row is a header naming the columns: email, topics (separated by ';'),
      and optionally timezone, send_hour, max_papers, status (what `export` writes).
    A file:
      email,topics,timezone
      ada@example.org,graph neural networks;efficient attention,Europe/London
    Example:
      digest subscribers import people.csv --dry-run --report rejected.txt

    Existing subscribers are updated, identical rows change nothing, so re-running an
    import is safe. Every rejected row is reported with its line number and reason;
    the exit code is 1 when any row was rejected.
    """
    parsed = parse_subscriber_csv(read_utf8_text(csv_file))
    store = app.store
    rejected = _rows_naming_unknown_papers(app, parsed)
    total = ChangeReport()
    batches = [parsed.rows[i : i + IMPORT_BATCH] for i in range(0, len(parsed.rows), IMPORT_BATCH)]
    with progress_bar(
        batches, label="importing", item_show_func=lambda b: f"{len(b)} rows" if b else ""
    ) as bar:
        for batch in bar:
            report = store.subscribers.import_rows(
                batch, app.settings.subscriber_defaults, dry_run=dry_run
            )
            total.add(report)
    lines = [f"line {r.line}: rejected: {r.reason}" for r in parsed.rejections] + rejected
    for line in lines[:SHOWN_REJECTIONS]:
        click.echo(line, err=True)
    if len(lines) > SHOWN_REJECTIONS:
        more = f"... and {len(lines) - SHOWN_REJECTIONS} more rejected lines"
        click.echo(
            more + (f" (all in {report_path})" if report_path else " (--report FILE lists all)"),
            err=True,
        )
    if report_path:
        write_output(report_path, "".join(f"{line}\n" for line in lines))
    prefix = "dry run, nothing changed: would have " if dry_run else ""
    click.echo(
        f"{prefix}created {total.created}, updated {total.updated}, "
        f"unchanged {total.unchanged}, rejected {len(lines)} "
        f"(of {parsed.lines} data lines)"
        + (
            f"; kept {total.kept} (unsubscribed or bounced: an import never re-subscribes them)"
            if total.kept
            else ""
        )
    )
    if lines:
        sys.exit(1)


def _rows_naming_unknown_papers(app: AppContext, parsed: ParsedCsv) -> list[str]:
    """Look up the papers the file's topics name, at once; the rows naming one arXiv does not
    have are taken out of ``parsed`` and reported, one line each."""
    unknown = look_up_papers(
        app.store.papers,
        app.settings,
        papers_of_topics(t for row in parsed.rows for t in row.topics),
    )
    if not unknown:
        return []
    bad = [row for row in parsed.rows if papers_of_topics(row.topics) & unknown]
    parsed.rows = [row for row in parsed.rows if not papers_of_topics(row.topics) & unknown]
    return [
        f"{row.email}: rejected: arXiv has no paper {', '.join(sorted(papers_of_topics(row.topics) & unknown))}"
        for row in bad
    ]


# -- topics --------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@click.pass_context
def topics(ctx: click.Context) -> None:
    """List topics with their number of active subscribers; rename or merge topics.

    \b
    Example:
      digest topics
    """
    if ctx.invoked_subcommand is None:
        app: AppContext = ctx.obj
        rows = app.store.topics.counts()
        click.echo(format_table(["topic", "subscribers"], [[name, n] for name, n in rows]))


@topics.command("rename")
@click.argument("old")
@click.argument("new")
@pass_app
def topics_rename(app: AppContext, old: str, new: str) -> None:
    """Rename topic OLD to NEW for every subscriber; merges into NEW when it exists.

    \b
    Example:
      digest topics rename "gnn" "graph neural networks"
    """
    old_name, new_name = normalize_topic(old), normalize_topic(new)
    if old_name == new_name:
        raise InvalidInput("the old and new topic are the same")
    affected = app.store.topics.rename(old_name, new_name)
    click.echo(f"{affected} subscriber(s) moved from {old_name!r} to {new_name!r}")


@topics.command("merge")
@click.argument("sources", nargs=-1, required=True)
@click.argument("target")
@pass_app
def topics_merge(app: AppContext, sources: Sequence[str], target: str) -> None:
    """Merge every topic in SOURCES into TARGET (the last argument).

    \b
    Example:
      digest topics merge gnn gnns "graph neural networks"
    """
    target_name = normalize_topic(target)
    for source in sources:
        source_name = normalize_topic(source)
        if source_name != target_name:
            affected = app.store.topics.rename(source_name, target_name)
            click.echo(f"{affected} subscriber(s) moved from {source_name!r} to {target_name!r}")


# -- papers --------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--source",
    "source",
    type=click.Choice(["all", *LIVE_SOURCES, HF_RSS]),
    default="all",
    show_default=True,
    help="Which source to fetch; with --from-file, forces the format.",
)
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Papers of this day (default: latest)."
)
@click.option(
    "--categories", help="arXiv categories joined by '+', e.g. cs.LG+cs.CL (default: settings)."
)
@click.option(
    "--from-file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Ingest a saved response instead of fetching; repeatable.",
)
@pass_app
def fetch(
    app: AppContext, source: str, day: Any, categories: str | None, files: Sequence[Path]
) -> None:
    """Fetch new papers and merge them into the store (by arXiv id; re-running is safe).

    \b
    Examples:
      digest fetch                                  all live sources
      digest fetch --source arxiv-rss --categories cs.LG+cs.CL
      digest fetch --from-file hf_daily_papers.json offline, format detected

    Prints one line per source; exits 1 if any source failed (the others still land).
    """
    settings, store = app.settings, app.store
    forced = None if source == "all" else source
    if files:
        reports = [
            ingest_bytes(store.papers, f.read_bytes(), f.name, settings.announce_types, forced)
            for f in files
        ]
    else:
        wanted = LIVE_SOURCES if source == "all" else (source,)
        cats = [c for c in categories.split("+") if c] if categories else None
        reports = fetch_all(store.papers, settings, wanted, day.date() if day else None, cats)
    for report in reports:
        click.echo(report.summary())
    candidates = candidate_papers(app.store, utcnow())
    with progress_bar(length=len(candidates), label="embedding candidate papers") as bar:
        embed_papers(app.store, app.settings, candidates, bar.update)
    if any(report.error for report in reports):
        sys.exit(1)


@cli.command()
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Only papers first seen on or after this day.",
)
@click.option(
    "--topic",
    help="Only papers relevant to this topic (same threshold as the digests), best first.",
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_app
def papers(app: AppContext, since: Any, topic: str | None, limit: int, fmt: str) -> None:
    """List stored papers, most recently seen first (or most relevant first with --topic).

    \b
    Example:
      digest papers --since 2026-11-20 --topic "efficient attention"
    """
    found = app.store.papers.find(since=since, limit=None if topic else limit)
    if topic:
        wanted = normalize_topic(topic)
        encoder, threshold = app.ranking
        picks = rank_profiles(found, {"topic": [wanted]}, limit, threshold, encoder)["topic"]
        by_id = {p.arxiv_id: p for p in found}
        found = [by_id[pick.arxiv_id] for pick in picks]
    if fmt == "json":
        click.echo(json.dumps([paper_json(p) for p in found], indent=2, default=str))
        return
    click.echo(
        format_table(
            ["arxiv id", "upvotes", "sources", "title"],
            [
                [p.arxiv_id, "" if p.upvotes is None else p.upvotes, ",".join(p.sources), p.title]
                for p in found
            ],
        )
    )
    click.echo(f"{len(found)} paper(s) shown, {app.store.papers.count()} stored")


def paper_json(paper: PaperRecord) -> dict[str, Any]:
    return {**dataclasses.asdict(paper), "abs_url": paper.abs_url, "pdf_url": paper.pdf_url}


# -- preview -------------------------------------------------------------------------------


@cli.command()
@click.argument("email")
@click.option(
    "--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Edition date (default: today, UTC)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML part here."
)
@click.option(
    "--eml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the whole message (.eml) here.",
)
@pass_app
def preview(app: AppContext, email: str, day: Any, out: Path | None, eml: Path | None) -> None:
    """Show the digest EMAIL would get from the stored papers, without sending or recording it.

    \b
    Example:
      digest preview ada@example.org --out /tmp/digest.html --eml /tmp/digest.eml
    """
    settings, store = app.settings, app.store
    sub = store.subscribers.require(normalize_email(email))
    now = dt.datetime.combine(day.date(), dt.time(23, 59)) if day else utcnow()
    content, candidates = todays_digest(store, settings, sub, now)
    message = digest_message(content, settings, 0, now, store.deliveries.install_id())
    click.echo(f"Subject: {message['Subject']}")
    click.echo(
        f"{len(content.items)} matched paper(s) from {candidates} candidate(s)"
        + (
            f", {len(content.trending)} trending shown instead"
            if content.trending and not content.items
            else ""
        )
    )
    for n, item in enumerate(content.items, 1):
        click.echo(f"  {n}. {item.title[:80]}\n     {item.reason}")
    if out:
        write_output(out, render_digest(content).html)
        click.echo(f"HTML written to {out}")
    if eml:
        write_output(eml, message.as_bytes())
        click.echo(f"message written to {eml}")


# -- the daily run ---------------------------------------------------------------------------

DEMO_SUBSCRIBER = (
    "demo@example.org",
    ("large language model agents", "reinforcement learning", "medical imaging"),
)


def _seed_demo_subscriber(app: AppContext) -> None:
    """The embedded default with no subscribers yet: add one, so the first run shows a digest."""
    if app.settings.database_url or app.store.subscribers.counts():
        return
    email, demo_topics = DEMO_SUBSCRIBER
    app.store.subscribers.add(
        build_subscriber_input(email, demo_topics), app.settings.subscriber_defaults
    )
    click.echo(
        f"no subscribers yet: added {email} ({'; '.join(demo_topics)}) to show a digest; "
        f"remove it with `digest subscribers remove {email} --yes`"
    )


@cli.command()
@click.option(
    "--now",
    "now_flag",
    is_flag=True,
    required=True,
    help="Run the whole daily job now, in this process (required, to avoid surprises).",
)
@click.option(
    "--offline", is_flag=True, help="Do not fetch; use stored papers (or the bundled sample)."
)
@pass_app
def run(app: AppContext, now_flag: bool, offline: bool) -> None:
    """Fetch, rank, render and send today's digests now, in this process.

    The same pipeline the Celery workers run, without a broker: sends through
    DIGEST_SMTP_HOST when set, else writes .eml files to the outbox. Safe to re-run: a
    subscriber gets one digest per day, and papers they were sent are never sent again.

    \b
    Example:
      digest run --now --offline
    """
    settings = app.settings.model_copy(update={"offline": True}) if offline else app.settings
    store = app.store
    _seed_demo_subscriber(app)
    pending: list[list[int]] = []
    report = run_tick(
        store, settings, utcnow(), pending.append, fetch_every=dt.timedelta(0), everyone=True
    )
    for source in report.fetched:
        click.echo(f"fetch: {source.summary()}")
    totals = BatchReport()
    with (
        make_transport(settings) as transport,
        progress_bar(pending, label="sending", show_pos=True) as bar,
    ):
        for batch in bar:
            totals.add(
                send_deliveries(
                    store.deliveries,
                    store.papers,
                    settings,
                    batch,
                    transport,
                    RateLimiter(settings.rate_limit_per_second, None),
                )
            )
    click.echo(
        f"subscribers due: {report.due}, digests sent: {totals.sent}, skipped: {report.skipped} "
        f"(nothing to send), failed: {totals.failed + totals.bounced}, to retry: {totals.retried}"
    )
    for error in totals.errors[:10]:
        click.echo(f"  error: {error}", err=True)
    if totals.failed or totals.bounced or totals.retried:
        retry = store.deliveries.next_retry_at()
        raise click.ClickException(
            f"{totals.failed + totals.bounced} digest(s) failed and {totals.retried} wait for a retry"
            + (
                f"; next retry at {retry:%Y-%m-%d %H:%M} UTC (run again then, or let the workers)"
                if retry
                else ""
            )
            + ": see `digest deliveries --status queued` and `--status failed`"
        )
    where = (
        f"SMTP server {settings.smtp_host}:{settings.smtp_port}"
        if settings.smtp_host
        else f"the outbox: {settings.outbox_dir.resolve()}"
    )
    click.echo(f"messages went to {where}; see `digest deliveries` for each one")


@cli.command("send-test")
@click.argument("email")
@topic_option
@pass_app
def send_test(app: AppContext, email: str, topics: Sequence[str]) -> None:
    """Send a sample digest to EMAIL now (not recorded as a delivery).

    Uses the subscriber's topics when EMAIL is subscribed, else the --topic options.

    \b
    Example:
      digest send-test me@example.org -t "graph neural networks"
    """
    settings, store = app.settings, app.store
    address = normalize_email(email)
    sub = store.subscribers.get(address)
    if sub is None:
        data = build_subscriber_input(address, topics)
        sub = SubscriberRecord(
            0, address, "active", data.topics, "UTC", 7, settings.max_papers, utcnow(), None
        )
    now = utcnow()
    message = digest_message(
        todays_digest(store, settings, sub, now, fresh=True)[0],
        settings,
        int(now.timestamp()),
        now,
        store.deliveries.install_id(),
    )
    try:
        with make_transport(settings) as transport:
            transport.send(message, settings.sender, wire_address(address))
    except (TransientError, PermanentError) as exc:
        raise click.ClickException(f"sending failed: {exc}") from None
    click.echo(f'sent "{message["Subject"]}" to {address}')


@cli.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Only this edition.")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES))
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@pass_app
def deliveries(app: AppContext, day: Any, status: str | None, limit: int) -> None:
    """Delivery status: one line per digest, with attempts and the last error.

    \b
    Example:
      digest deliveries --status failed --date 2026-11-25
    """
    edition = day.date() if day else None
    rows = app.store.deliveries.find(edition=edition, status=status, limit=limit)
    click.echo(
        format_table(
            [
                "edition",
                "email",
                "status",
                "papers",
                "attempts",
                "sent at / next try",
                "last error",
                "note",
            ],
            [
                [
                    d.edition,
                    d.email,
                    d.status,
                    len(d.picks),
                    d.attempts,
                    f"{d.sent_at:%H:%M:%S}"
                    if d.sent_at
                    else (f"retry {d.next_try_at:%H:%M}" if d.next_try_at else ""),
                    d.last_error or "",
                    "possible duplicate" if d.resent else "",
                ]
                for d in rows
            ],
        )
    )
    counts = app.store.deliveries.counts(edition, status)
    click.echo("totals: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))


@cli.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Votes cast in the last N days.",
)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@pass_app
def feedback(app: AppContext, days: int, top: int) -> None:
    """What readers told their digests: votes per topic and the most liked papers.

    A vote counts under the topic its paper was sent for; "(trending)" are votes on papers
    from the Trending today section or the archive.

    \b
    Example:
      digest feedback --days 7 --top 10
    """
    since = utcnow() - dt.timedelta(days=days)
    by_topic = app.store.feedback.votes_by_topic(since)
    if not by_topic:
        click.echo(f"no votes in the last {days} days")
        return
    click.echo(f"Votes in the last {days} days, by topic:")
    click.echo(
        format_table(
            ["topic", "more like this", "less like this"],
            [[topic, up, down] for topic, up, down in by_topic],
        )
    )
    liked = app.store.feedback.most_liked_papers(since, top)
    if liked:
        click.echo("\nMost liked papers:")
        click.echo(
            format_table(
                ["arxiv id", "likes", "dislikes", "title"],
                [[pid, up, down, title] for pid, title, up, down in liked],
            )
        )


@cli.command("retry-failed")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Only this edition.")
@pass_app
def retry_failed(app: AppContext, day: Any) -> None:
    """Queue failed deliveries again (bounced ones stay bounced).

    \b
    Example:
      digest retry-failed --date 2026-11-25
    """
    count = app.store.deliveries.retry_failed(day.date() if day else None)
    click.echo(f"{count} failed deliveries queued again")


@cli.command()
@pass_app
def doctor(app: AppContext) -> None:
    """Check this installation can send: settings, data, database, Redis, SMTP, model.

    Prints the settings in force (secrets masked), then one line per check: ok, warn (works,
    but look) or FAIL (fix it; the exit code is then 1).

    \b
    Example:
      digest doctor
    """
    from digest.doctor import examine, masked_settings

    click.echo("settings in force:")
    for name, value in masked_settings(app.settings).items():
        click.echo(f"  DIGEST_{name.upper()}={value}")
    click.echo("checks:")
    findings = list(examine(app.settings))
    for finding in findings:
        click.echo(f"  {finding.level:<4}  {finding.check:<14} {finding.detail}")
    failed = [f.check for f in findings if f.level == "FAIL"]
    if failed:
        raise click.ClickException(
            f"{len(failed)} check(s) failed ({', '.join(failed)}): see above"
        )


@cli.command("smtp-sink")
@click.option("--port", type=PORT, default=1025, show_default=True)
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also keep each message here.",
)
def smtp_sink(port: int, maildir: Path | None) -> None:
    """A local SMTP server that accepts everything, for demos and tests (Ctrl-C stops).

    Point Paper Digest at it with DIGEST_SMTP_HOST=127.0.0.1 DIGEST_SMTP_PORT=1025.

    \b
    Example:
      digest smtp-sink --port 1025
    """
    from digest.smtp_sink import PortBusy, run_sink

    try:
        run_sink("127.0.0.1", port, maildir)
    except PortBusy as exc:
        raise InvalidInput(str(exc)) from None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=PORT, default=8000, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True)
@pass_app
def web(app: AppContext, host: str, port: int, threads: int) -> None:
    """Serve the subscribe, unsubscribe and preferences pages (waitress).

    Links in emails point at DIGEST_BASE_URL: set it to where this server is reachable.

    \b
    Example:
      DIGEST_BASE_URL=https://digest.example.org digest web --port 8000
    """
    from waitress.server import create_server

    from digest.web import create_app

    application = create_app(
        app.settings, app.open_store(statement_timeout=app.settings.web_db_timeout)
    )
    try:
        server = create_server(application, host=host, port=port, threads=threads)
    except OSError as exc:
        raise InvalidInput(
            f"cannot listen on {host}:{port} ({exc.strerror}): is another server there? "
            "Pick another with --port"
        ) from None
    click.echo(f"serving on http://{host}:{port} (links in emails use {app.settings.base_url})")
    server.run()


# -- ranking -------------------------------------------------------------------------------


semantic_option = click.option(
    "--semantic/--no-semantic",
    "use_semantic",
    default=True,
    show_default=True,
    help="Add MiniLM topic-paper similarity to word matching, as the daily run does (DIGEST_SEMANTIC).",
)
papers_file = click.option(
    "--papers",
    "papers_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON list of papers: {id, title, abstract, ...}.",
)
profiles_file = click.option(
    "--profiles",
    "profiles_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON list of profiles: {"qid": "D01", "topics": ["..."]}, optionally with '
    '"liked" and "disliked" lists of paper ids (votes: they teach the ranking and are left out).',
)


@cli.command()
@papers_file
@profiles_file
@click.option("--top", type=int, default=10, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "table"]), default="table", show_default=True
)
@semantic_option
def rank(papers_path: Path, profiles_path: Path, top: int, fmt: str, use_semantic: bool) -> None:
    """Rank a papers file for each topic profile (no database needed).

    With --format json prints {qid: [paper ids, best first]}.

    \b
    Example:
      digest rank --papers papers.json --profiles topics.json --format json
    """
    encoder = semantic.load_encoder() if use_semantic else None
    picks = rank_profiles(
        load_papers_file(papers_path),
        load_profiles_file(profiles_path),
        top,
        encoder=encoder,
        votes=load_profile_votes(profiles_path),
    )
    if fmt == "json":
        click.echo(json.dumps({q: [p.arxiv_id for p in ps] for q, ps in picks.items()}, indent=1))
        return
    for qid, ps in picks.items():
        click.echo(f"{qid}:")
        click.echo(
            format_table(
                ["#", "arxiv id", "score", "why"],
                [[n + 1, p.arxiv_id, f"{p.score:.3f}", p.reason] for n, p in enumerate(ps)],
            )
        )


@cli.command("rank-eval")
@papers_file
@profiles_file
@click.option(
    "--qrels",
    "qrels_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Judgments file or directory of them: {qid: {paper id: grade 0-2}}.",
)
@semantic_option
def rank_eval(papers_path: Path, profiles_path: Path, qrels_path: Path, use_semantic: bool) -> None:
    """Measure ranking quality against graded judgments (nDCG@10, recall@10, P@5).

    Per profile and their mean, for the digest's ranking (words + MiniLM), its words-only
    half, and a plain BM25 baseline, all computed in the same run.

    \b
    Example:
      digest rank-eval --papers ranking-dev/papers.json --profiles ranking-dev/topics.json --qrels ranking-dev/qrels
    """
    papers_list = load_papers_file(papers_path)
    profiles = load_profiles_file(profiles_path)
    qrels = load_qrels(qrels_path)
    encoder = semantic.load_encoder() if use_semantic else None
    runs = _ranking_runs(papers_list, profiles, encoder)
    results = {
        name: score_run(run, {q: qrels.get(q, {}) for q in profiles}) for name, run in runs.items()
    }
    rows = []
    for qid in [*profiles, "mean"]:
        rows.append(
            [
                qid,
                *(
                    f"{getattr(results[n][qid], f):.3f}"
                    for n in runs
                    for f in ("ndcg10", "recall10", "precision5")
                ),
            ]
        )
    headers = ["profile", *(f"{n} {m}" for n in runs for m in ("nDCG@10", "R@10", "P@5"))]
    click.echo(format_table(headers, rows))
    _merged_profiles_report(papers_list, profiles, qrels, encoder)
    _feedback_report(papers_list, profiles, qrels, encoder)
    if encoder is None:
        click.echo(
            f"(digest ranked by words only: {semantic.unavailable_reason() or '--no-semantic'})"
        )


def _ranking_runs(
    papers_list: list[PaperRecord], profiles: dict[str, list[str]], encoder: Any, top: int = 10
) -> dict[str, dict[str, list[str]]]:
    """The digest's ranking, its words-only half (when it has MiniLM) and plain BM25, as
    {run: {profile: the ``top`` paper ids}}."""
    runs = {"digest": rank_profiles(papers_list, profiles, top, encoder=encoder)}
    if encoder is not None:
        runs["words-only"] = rank_profiles(papers_list, profiles, top)
    ranked = {
        name: {q: [p.arxiv_id for p in ps] for q, ps in run.items()} for name, run in runs.items()
    }
    ranked["plain-bm25"] = plain_bm25_ranking(papers_list, profiles, top)
    return ranked


def _merged_profiles_report(
    papers_list: list[PaperRecord], profiles: dict[str, list[str]], qrels: Qrels, encoder: Any
) -> None:
    """Two unrelated profiles as one subscriber: nDCG@10 of their ten best papers, and whether
    a digest of five papers holds a relevant one for each half (coverage@5)."""
    merged = merge_unrelated_profiles(profiles, qrels)
    if not merged.profiles:
        return
    runs = _ranking_runs(papers_list, merged.profiles, encoder)
    digests = _ranking_runs(papers_list, merged.profiles, encoder, top=5)
    rows = []
    for name, run in runs.items():
        coverage, eligible = topic_coverage(digests[name], merged)
        rows.append([name, f"{score_run(run, merged.qrels)['mean'].ndcg10:.3f}", f"{coverage:.3f}"])
    click.echo(
        f"\nMerged profiles: {len(merged.profiles)} pairs of unrelated profiles as one subscriber"
        f" each (coverage over the {eligible} where both halves have a relevant paper)"
    )
    click.echo(format_table(["run", "nDCG@10", "coverage@5"], rows))


def _feedback_report(
    papers_list: list[PaperRecord], profiles: dict[str, list[str]], qrels: Qrels, encoder: Any
) -> None:
    """Four votes per profile (:func:`simulate_votes`: two relevant papers words alone rank
    low, liked; two irrelevant ones words rank high, disliked), judged without those four:
    the digest's nDCG@10 before the votes, with the voted papers still competing and with them
    left out (what a reader's digest does with papers already sent), then after the votes."""
    words = rank_profiles(papers_list, profiles, len(papers_list))
    trial = simulate_votes({q: [p.arxiv_id for p in ps] for q, ps in words.items()}, qrels)
    profiles = {q: ts for q, ts in profiles.items() if q in trial.votes}
    before = rank_profiles(papers_list, profiles, 10 + 4, encoder=encoder)
    runs = {
        "no votes": {q: [p.arxiv_id for p in ps[:10]] for q, ps in before.items()},
        "no votes, voted left out": {
            q: [p.arxiv_id for p in ps if p.arxiv_id not in trial.votes[q].papers][:10]
            for q, ps in before.items()
        },
        "with votes": {
            q: [p.arxiv_id for p in ps]
            for q, ps in rank_profiles(
                papers_list, profiles, 10, encoder=encoder, votes=trial.votes
            ).items()
        },
    }
    results = {name: score_run(run, trial.qrels) for name, run in runs.items()}
    click.echo(
        "\nFeedback: 2 liked + 2 disliked papers per profile, judged without those 4 (nDCG@10)"
    )
    click.echo(
        format_table(
            ["profile", *runs, "change"],
            [
                [
                    q,
                    *(f"{results[n][q].ndcg10:.3f}" for n in runs),
                    f"{results['with votes'][q].ndcg10 - results['no votes, voted left out'][q].ndcg10:+.3f}",
                ]
                for q in [*profiles, "mean"]
            ],
        )
    )


# -- helpers -------------------------------------------------------------------------------


def progress_bar(iterable: Any = None, label: str = "", **options: Any) -> Any:
    """A progress bar on stderr when it is a terminal; in a log or a pipe, nothing at all
    (click would still print the label there: a stray line in every cron mail)."""
    if sys.stderr.isatty():
        return click.progressbar(iterable, label=label, file=sys.stderr, **options)
    return contextlib.nullcontext(_Silent(iterable))


class _Silent:
    """What a progress bar offers its user (iteration, update), showing nothing."""

    def __init__(self, iterable: Any) -> None:
        self.iterable = iterable if iterable is not None else ()

    def __iter__(self) -> Any:
        return iter(self.iterable)

    def update(self, _steps: int) -> None:
        pass


def read_utf8_text(path: Path) -> str:
    """A text file that must be UTF-8, with a hint for what spreadsheet programs save instead."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:200].count(b"\x00") > 10:
            raise InvalidInput(
                f"{path} is UTF-16 text (what 'Unicode Text' exports save): save it as "
                "'CSV UTF-8' instead"
            ) from None
        raise InvalidInput(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as 'CSV UTF-8'"
        ) from None


def write_output(path: Path, content: str | bytes) -> None:
    """Write a file the user named, or say in one line why it cannot be written."""
    try:
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table; wide cells are cut so each row stays on one line."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: object, limit: int = 60) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
