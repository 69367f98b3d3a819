"""`digest subscribers`: add, change, remove, list, import and export subscribers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.cli.common import (
    SUBSCRIBER_STATUS,
    AppContext,
    list_option,
    pass_app,
    topic_option,
)
from digest.cli.output import format_table, progress_bar, read_utf8_text, write_output

if TYPE_CHECKING:
    from digest.records import ListRecord, SubscriberRecord
    from digest.subscriptions import ParsedCsv

IMPORT_BATCH = 1000
SHOWN_REJECTIONS = 20


@click.group()
def subscribers() -> None:
    """Add, change, remove, import and export subscribers.

    Emails are validated and normalised (case, IDN domains); topics are free text,
    normalised to lower case, at most 5 per subscriber. A row is one subscription: an
    address on one list (--list SLUG; without it, the default list), with its own topics.

    \b
    Example:
      digest subscribers list --status active
    """


def _echo_subscriber(sub: SubscriberRecord, listed: ListRecord) -> None:
    click.echo(f"{sub.email}  [{sub.status}]")
    click.echo(f"  list:       {listed.slug} ({listed.title})")
    click.echo(
        f"  cadence:    {sub.cadence or listed.cadence}{'' if sub.cadence else ' (the list’s)'}"
    )
    click.echo(f"  topics:     {'; '.join(sub.topics)}")
    click.echo(f"  send at:    {sub.send_hour:02d}:00 {sub.timezone}")
    click.echo(f"  max papers: {sub.max_papers}")
    click.echo(f"  since:      {sub.created_at:%Y-%m-%d}")


timezone_option = click.option(
    "--timezone", metavar="TZ", help="IANA time zone, e.g. Europe/Paris."
)
send_hour_option = click.option(
    "--send-hour", type=int, metavar="H", help="Local hour 0-23 to send."
)
max_papers_option = click.option(
    "--max-papers", type=int, metavar="N", help="Papers per digest, 1-50."
)
cadence_option = click.option(
    "--cadence",
    metavar="CADENCE",
    help='Their own: daily, weekdays or weekly:DAY ("list": the list\'s again).',
)


def subscriber_options(command: Any) -> Any:
    """EMAIL plus every per-subscription option: the shape of `subscribers add` and `set`."""
    for decorate in (
        pass_app,
        list_option,
        cadence_option,
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
    topics: tuple[str, ...],
    timezone: str | None,
    send_hour: int | None,
    max_papers: int | None,
    cadence: str | None,
    list_slug: str | None,
) -> None:
    """Subscribe EMAIL to a list (active at once: admins vouch for the address).

    \b
    Example:
      digest subscribers add ada@example.org -t "efficient attention" -t "state space models"
      digest subscribers add ada@example.org --list robotics -t "legged robots"
    """
    from digest.ingestion import require_topic_papers
    from digest.subscriptions import build_subscriber_input

    listed = app.store.lists.require(list_slug)
    data = build_subscriber_input(email, topics, timezone, send_hour, max_papers)
    own = _own_cadence(cadence)
    require_topic_papers(app.store.papers, app.settings, data.topics)
    sub = app.store.subscribers.add(
        data, app.settings.subscriber_defaults, list_id=listed.id, cadence=own or None
    )
    click.echo(f"added {sub.email} to {listed.slug} with topics: {'; '.join(sub.topics)}")


def _own_cadence(raw: str | None) -> str | None:
    """A reader's own cadence, validated; "" for "list" (follow the list's); None: not given."""
    from digest.lists import validate_cadence

    if raw is None:
        return None
    return "" if raw.strip().lower() == "list" else validate_cadence(raw)


@subscribers.command("set")
@subscriber_options
def subscribers_set(
    app: AppContext,
    email: str,
    topics: tuple[str, ...],
    timezone: str | None,
    send_hour: int | None,
    max_papers: int | None,
    cadence: str | None,
    list_slug: str | None,
) -> None:
    """Change a subscription's topics (all of them), time zone, hour, size or cadence.

    \b
    Example:
      digest subscribers set ada@example.org -t "speech recognition" --send-hour 8
      digest subscribers set ada@example.org --list daily --cadence weekly:mon
    """
    from digest.ingestion import require_topic_papers
    from digest.subscriptions import build_subscriber_input, normalize_email

    listed = app.store.lists.require(list_slug)
    current = app.store.subscribers.require(normalize_email(email), listed.id)
    data = build_subscriber_input(email, topics or current.topics, timezone, send_hour, max_papers)
    own = _own_cadence(cadence)
    require_topic_papers(app.store.papers, app.settings, data.topics)
    sub = app.store.subscribers.update(
        data.email,
        list(data.topics) if topics else None,
        data.timezone,
        data.send_hour,
        data.max_papers,
        list_id=listed.id,
        cadence=own,
    )
    _echo_subscriber(sub, listed)


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@list_option
@pass_app
def subscribers_remove(app: AppContext, email: str, yes: bool, list_slug: str | None) -> None:
    """Delete EMAIL's subscription and its history for good (to keep history: pause).

    Only the list named by --list (default: the default list); their other lists stay.

    \b
    Example:
      digest subscribers remove ada@example.org --yes
    """
    from digest.subscriptions import normalize_email

    listed = app.store.lists.require(list_slug)
    address = normalize_email(email)
    if not yes:
        click.confirm(f"Delete {address} from {listed.slug}, and its history?", abort=True)
    app.store.subscribers.remove(address, listed.id)
    click.echo(f"removed {address} from {listed.slug}")


@subscribers.command("pause")
@click.argument("email")
@list_option
@pass_app
def subscribers_pause(app: AppContext, email: str, list_slug: str | None) -> None:
    """Stop sending a list to EMAIL until `resume`.

    \b
    Example:
      digest subscribers pause ada@example.org
    """
    from digest.subscriptions import normalize_email

    listed = app.store.lists.require(list_slug)
    sub = app.store.subscribers.set_status(
        normalize_email(email), "paused", allowed_from=("active", "paused"), list_id=listed.id
    )
    click.echo(f"{sub.email} is {sub.status} on {listed.slug}")


@subscribers.command("resume")
@click.argument("email")
@click.option("--force", is_flag=True, help="Also re-activate an unsubscribed or bounced address.")
@list_option
@pass_app
def subscribers_resume(app: AppContext, email: str, force: bool, list_slug: str | None) -> None:
    """Start sending to a paused EMAIL again.

    An unsubscribed address asked us to stop, and a bounced one does not receive mail:
    resuming either needs --force, and the person's own say-so (or a working mailbox).

    \b
    Example:
      digest subscribers resume ada@example.org
    """
    from digest.storage import StorageError
    from digest.subscriptions import OPTED_OUT, normalize_email

    listed = app.store.lists.require(list_slug)
    address = normalize_email(email)
    current = app.store.subscribers.require(address, listed.id)
    if current.status in OPTED_OUT and not force:
        raise StorageError(
            f"{address} is {current.status}: they asked to stop, or their mailbox refused our mail. "
            "Resume only with their consent: digest subscribers resume --force " + address
        )
    sub = app.store.subscribers.set_status(address, "active", list_id=listed.id)
    click.echo(f"{sub.email} is {sub.status} on {listed.slug}")


@subscribers.command("show")
@click.argument("email")
@list_option
@pass_app
def subscribers_show(app: AppContext, email: str, list_slug: str | None) -> None:
    """Show one subscriber.

    \b
    Example:
      digest subscribers show ada@example.org
    """
    from digest.subscriptions import normalize_email

    listed = app.store.lists.require(list_slug)
    _echo_subscriber(app.store.subscribers.require(normalize_email(email), listed.id), listed)


FORMATS = click.Choice(["table", "csv", "json"])


def _slugs(app: AppContext) -> dict[int, str]:
    return {listed.id: listed.slug for listed in app.store.lists.all()}


def _find(app: AppContext, list_slug: str | None, **filters: str | None) -> list[SubscriberRecord]:
    """The subscriptions matching ``filters``, on the list named (None: on every list)."""
    list_id = app.store.lists.require(list_slug).id if list_slug else None
    return app.store.subscribers.find(list_id=list_id, **filters)


def _print_subscribers(subs: list[SubscriberRecord], fmt: str, slugs: dict[int, str]) -> None:
    from digest.subscriptions import format_subscriber_csv

    rows = [sub.as_row(slugs.get(sub.list_id, "")) for sub in subs]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        click.echo(format_subscriber_csv(rows), nl=False)
    else:
        click.echo(
            format_table(
                ["email", "list", "status", "topics", "tz", "hour", "max"],
                [
                    [s.email, slugs.get(s.list_id, "")]
                    + [s.status, "; ".join(s.topics), s.timezone, s.send_hour, s.max_papers]
                    for s in subs
                ],
            )
        )
        click.echo(f"{len(subs)} subscriber(s)")


@subscribers.command("list")
@click.option("--status", type=SUBSCRIBER_STATUS)
@click.option("--topic", help="Only subscribers following this topic.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option(
    "--list", "list_slug", metavar="SLUG", help="Only this list's (default: every list's)."
)
@pass_app
def subscribers_list(
    app: AppContext, status: str | None, topic: str | None, fmt: str, list_slug: str | None
) -> None:
    """List subscriptions, optionally filtered by list, status and topic.

    \b
    Example:
      digest subscribers list --topic "efficient attention" --format csv
    """
    from digest.subscriptions import normalize_topic

    subs = _find(app, list_slug, status=status, topic=normalize_topic(topic) if topic else None)
    _print_subscribers(subs, fmt, _slugs(app))


@subscribers.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File (default stdout)."
)
@click.option("--status", type=SUBSCRIBER_STATUS)
@click.option(
    "--list", "list_slug", metavar="SLUG", help="Only this list's (default: every list's)."
)
@pass_app
def subscribers_export(
    app: AppContext, output: Path | None, status: str | None, list_slug: str | None
) -> None:
    """Export subscriptions as CSV in the format `import` reads back.

    One row per address and list, its consent state included, so a backup restores every
    list's readers.

    \b
    Example:
      digest subscribers export -o backup.csv
    """
    from digest.subscriptions import format_subscriber_csv

    slugs = _slugs(app)
    text = format_subscriber_csv(
        [sub.as_row(slugs[sub.list_id]) for sub in _find(app, list_slug, status=status)]
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
      and optionally timezone, send_hour, max_papers, status, list (what `export`
      writes; a row without a list goes to the default list).
    A file:
      email,topics,timezone
      ada@example.org,graph neural networks;efficient attention,Europe/London
    Example:
      digest subscribers import people.csv --dry-run --report rejected.txt

    Existing subscribers are updated, identical rows change nothing, so re-running an
    import is safe. Every rejected row is reported with its line number and reason;
    the exit code is 1 when any row was rejected.
    """
    from digest.records import ChangeReport
    from digest.subscriptions import parse_subscriber_csv

    parsed = parse_subscriber_csv(read_utf8_text(csv_file))
    store = app.store
    list_ids = {listed.slug: listed.id for listed in store.lists.all()}  # the default first
    rejected = _rows_on_unknown_lists(parsed, list_ids) + _rows_naming_unknown_papers(app, parsed)
    total = ChangeReport()
    batches = [parsed.rows[i : i + IMPORT_BATCH] for i in range(0, len(parsed.rows), IMPORT_BATCH)]
    with progress_bar(
        batches, label="importing", item_show_func=lambda b: f"{len(b)} rows" if b else ""
    ) as bar:
        for batch in bar:
            report = store.subscribers.import_rows(
                batch, app.settings.subscriber_defaults, dry_run=dry_run, list_ids=list_ids
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


def _rows_on_unknown_lists(parsed: ParsedCsv, list_ids: dict[str, int]) -> list[str]:
    """The rows naming a list this install does not have, and a second row for a subscription
    (the default list named once by its slug and once by a blank), are taken out of ``parsed``
    and reported, one line each (make a missing list first: `digest lists add`)."""
    default = next(iter(list_ids))  # the oldest list: what a blank means
    lines, kept, seen = [], [], set()
    for row in parsed.rows:
        slug = row.list_slug or default
        if slug not in list_ids:
            lines.append(f"{row.email}: rejected: no list named {slug!r} (`digest lists add` it)")
        elif (row.email, slug) in seen:
            lines.append(f"{row.email}: rejected: a second row for the list {slug}")
        else:
            seen.add((row.email, slug))
            kept.append(row)
    parsed.rows = kept
    return lines


def _rows_naming_unknown_papers(app: AppContext, parsed: ParsedCsv) -> list[str]:
    """Look up the papers the file's topics name, at once; the rows naming one arXiv does not
    have are taken out of ``parsed`` and reported, one line each."""
    from digest.ingestion import look_up_papers
    from digest.subscriptions import papers_of_topics

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
