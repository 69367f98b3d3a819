"""The digests themselves: `digest run` sends today's, `preview` shows one, `send-test` mails a sample."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from digest.cli.common import AppContext, list_option, pass_app, topic_option
from digest.cli.output import progress_bar, write_output
from digest.cli.papers import embed_with_progress


@click.command()
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
@list_option
@pass_app
def preview(
    app: AppContext,
    email: str,
    day: Any,
    out: Path | None,
    eml: Path | None,
    list_slug: str | None,
) -> None:
    """Show the digest EMAIL would get from the stored papers, without sending or recording it.

    With --list, their digest of that list (default: the default list).

    \b
    Example:
      digest preview ada@example.org --out /tmp/digest.html --eml /tmp/digest.eml
      digest preview ada@example.org --list robotics
    """
    from digest.emails import digest as digest_message
    from digest.models import utcnow
    from digest.pipeline import todays_digest
    from digest.rendering import render_digest
    from digest.subscriptions import normalize_email

    settings, store = app.settings, app.store
    listed = store.lists.require(list_slug)
    sub = store.subscribers.require(normalize_email(email), listed.id)
    now = dt.datetime.combine(day.date(), dt.time(23, 59)) if day else utcnow()
    content, candidates = todays_digest(store, settings, sub, now, listed=listed)
    install = store.deliveries.install_id()
    message = digest_message(content, settings, 0, now, install, listed=listed)
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


DEMO_SUBSCRIBER = (
    "demo@example.org",
    ("large language model agents", "reinforcement learning", "medical imaging"),
)


def _seed_demo_subscriber(app: AppContext) -> None:
    """The embedded default with no subscribers yet: add one, so the first run shows a digest."""
    from digest.subscriptions import build_subscriber_input

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


@click.command()
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
@click.option("--list", "list_slug", metavar="SLUG", help="Only this list's digests.")
@pass_app
def run(app: AppContext, now_flag: bool, offline: bool, list_slug: str | None) -> None:
    """Fetch, rank, render and send today's digests now, in this process.

    Every list's readers whose cadence sends today get theirs, whatever their send hour
    (a weekly list's on its day only); --list: one list's.

    The same pipeline the Celery workers run, without a broker: sends through
    DIGEST_SMTP_HOST when set, else writes .eml files to the outbox. Safe to re-run: a
    subscriber gets one digest per day, and papers they were sent are never sent again.

    \b
    Example:
      digest run --now --offline
    """
    from digest.alerts import alert_if_needed
    from digest.delivery import BatchReport, send_deliveries
    from digest.limits import RateLimiter
    from digest.models import utcnow
    from digest.pipeline import run_tick
    from digest.receipts import record_batch
    from digest.runs import COMMAND
    from digest.transports import make_transport

    settings = app.settings.model_copy(update={"offline": True}) if offline else app.settings
    store = app.store
    only = store.lists.require(list_slug).id if list_slug else None
    _seed_demo_subscriber(app)
    pending: list[list[int]] = []
    report = run_tick(
        store,
        settings,
        utcnow(),
        pending.append,
        fetch_every=dt.timedelta(0),
        everyone=True,
        trigger=COMMAND,
        embed_new=lambda papers: embed_with_progress(app, papers),
        list_id=only,
    )
    for source in report.fetched:
        click.echo(f"fetch: {source.summary()}")
    totals = BatchReport()
    with (
        make_transport(settings) as transport,
        progress_bar(pending, label="sending", show_pos=True) as bar,
    ):
        for batch in bar:
            sent = send_deliveries(
                store.deliveries,
                store.papers,
                settings,
                batch,
                transport,
                RateLimiter(settings.rate_limit_per_second, None),
                lists=store.lists,
            )
            record_batch(store.runs, report.run_id, sent)
            totals.add(sent)
    alert_if_needed(store.runs, settings, utcnow())
    status = store.runs.get(report.run_id)
    click.echo(
        f"run {report.run_id} {status.status if status else report.status}: "
        f"subscribers due: {report.due}, digests sent: {totals.sent}, skipped: {report.skipped} "
        f"(nothing to send), failed: {totals.failed + totals.bounced}, to retry: {totals.retried}"
        + (f", held back (every source down): {report.held}" if report.held else "")
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
            + f": see `digest runs show {report.run_id}` and `digest deliveries --status failed`"
        )
    if report.held:
        raise click.ClickException(
            f"every source failed: {report.held} digest(s) held back rather than sent as "
            f'"nothing new"; see `digest runs show {report.run_id}`'
        )
    where = (
        f"SMTP server {settings.smtp_host}:{settings.smtp_port}"
        if settings.smtp_host
        else f"the outbox: {settings.outbox_dir.resolve()}"
    )
    click.echo(f"messages went to {where}; see `digest deliveries` for each one")


@click.command("send-test")
@click.argument("email")
@topic_option
@pass_app
def send_test(app: AppContext, email: str, topics: tuple[str, ...]) -> None:
    """Send a sample digest to EMAIL now (not recorded as a delivery).

    Uses the subscriber's topics when EMAIL is subscribed, else the --topic options.

    \b
    Example:
      digest send-test me@example.org -t "graph neural networks"
    """
    from digest.emails import digest as digest_message
    from digest.messages import wire_address
    from digest.models import utcnow
    from digest.pipeline import todays_digest
    from digest.records import SubscriberRecord
    from digest.subscriptions import build_subscriber_input, normalize_email
    from digest.transports import PermanentError, TransientError, make_transport

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
