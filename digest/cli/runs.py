"""What the service has been doing: `digest runs` (every run's receipt) and `digest status`
(one screen of health; `--check` for cron jobs and monitoring)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from digest.cli.common import AppContext, pass_app

if TYPE_CHECKING:
    from digest.runs import RunRecord


@click.group(invoke_without_command=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.pass_context
def runs(ctx: click.Context, fmt: str, limit: int) -> None:
    """Every run (tick or `run --now`), newest first: what triggered it, how it ended.

    \b
    Example:
      digest runs
      digest runs --format json --limit 1
      digest runs show 42
    """
    if ctx.invoked_subcommand is not None:
        return
    from digest.cli.output import format_table

    app = ctx.find_object(AppContext)
    assert app is not None  # the root group `cli` puts it on the context
    found = app.store.runs.newest(limit)
    if fmt == "json":
        click.echo(json.dumps([r.as_json() for r in found], indent=2))
        return
    click.echo(
        format_table(
            (
                "id",
                "started (UTC)",
                "trigger",
                "status",
                "sources ok/failed",
                "planned",
                "sent",
                "failed",
            ),
            [
                (
                    r.id,
                    f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                    r.trigger,
                    r.status,
                    f"{r.sources_ok}/{r.sources_failed}",
                    r.counts.planned,
                    r.counts.sent,
                    r.counts.failed + r.counts.bounced,
                )
                for r in found
            ],
        )
    )


@runs.command()
@click.argument("run_id", type=int)
@pass_app
def show(app: AppContext, run_id: int) -> None:
    """Everything one run recorded: its sources, its plan, what became of its sends.

    Then per list, the digests it planned and where each stands now.

    \b
    Example:
      digest runs show 42
    """
    from digest.models import utcnow

    record = app.store.runs.get(run_id)
    if record is None:
        raise click.ClickException(f"no run {run_id} (kept for DIGEST_RUN_HISTORY_DAYS)")
    click.echo(describe(record))
    span = (record.started_at, record.ended_at or utcnow())
    by_list = app.store.deliveries.counts_by_list(created=span)
    for listed in app.store.lists.all():
        if counts := by_list.get(listed.id):
            shown = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
            click.echo(f"  list {listed.slug}: the digests it planned, now: {shown}")


def describe(record: RunRecord) -> str:
    lines = [
        f"run {record.id}: {record.status} ({record.trigger}), started "
        f"{record.started_at:%Y-%m-%d %H:%M:%S} UTC"
        + (f", took {record.seconds:.1f} s" if record.seconds is not None else ", still running"),
    ]
    if record.error:
        lines.append(f"error: {record.error}")
    for s in record.sources:
        outcome = "ok" if s.ok else f"ERROR {s.error}"
        lines.append(
            f"  source {s.source:<10} {outcome}; HTTP {s.http_status or '-'}, seen {s.seen}, "
            f"new {s.new}, {s.seconds:.2f} s  {s.url}"
        )
    c = record.counts
    lines += [
        f"  readers due {c.due}; planned {c.planned}; sent {c.sent}, retrying {c.retrying}, "
        f"failed {c.failed}, bounced {c.bounced}",
        f"  skipped: nothing new {c.skipped_nothing_new}, paused {c.skipped_paused}, "
        f"already sent {c.skipped_already_sent}; held back (every source down) "
        f"{c.held_sources_down}",
    ]
    return "\n".join(lines)


@click.command()
@click.option("--check", is_flag=True, help="Print one line per problem; exit 1 if there is any.")
@pass_app
def status(app: AppContext, check: bool) -> None:
    """The service's health on one screen; `--check` is what cron or monitoring calls.

    \b
    Problems --check reports: the last run failed or was partial, no run for two tick
    intervals (is beat running?), a source failing DIGEST_ALERT_AFTER_RUNS runs in a row,
    retries piling up (DIGEST_ALERT_RETRIES_WAITING, or one waiting over a day).

    \b
    Example:
      digest status --check || echo "look at digest status"
    """
    from digest.alerts import thresholds
    from digest.models import utcnow
    from digest.runs import problems

    store = app.store
    health = store.runs.health(utcnow())
    found = problems(health, thresholds(app.settings))
    if check:
        for problem in found:
            click.echo(problem.text)
        if found:
            raise SystemExit(1)
        click.echo("ok")
        return
    run = health.last_run
    click.echo(f"last run: {describe(run) if run else 'none yet'}")
    for source in health.sources:
        when = f"{source.last_ok_at:%Y-%m-%d %H:%M} UTC" if source.last_ok_at else "never"
        failing = f", failing {source.failing_runs} runs in a row" if source.failing_runs else ""
        click.echo(f"source {source.source}: last success {when}{failing}")
    waiting = store.runs.waiting_deliveries()
    click.echo(
        f"queue: {waiting['queued']} queued, {waiting['sending']} sending, "
        f"{waiting['retrying']} waiting for a retry"
        + (
            f" (the oldest due {health.oldest_waiting_at:%Y-%m-%d %H:%M} UTC)"
            if health.oldest_waiting_at
            else ""
        )
    )
    counts = store.runs.subscriber_counts()
    click.echo("subscribers: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    click.echo("problems: " + ("; ".join(p.text for p in found) if found else "none"))
