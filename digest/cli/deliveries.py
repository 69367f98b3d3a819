"""`digest deliveries` and `digest retry-failed`: what was sent, and sending what failed again."""

from __future__ import annotations

from typing import Any

import click

from digest.cli.common import AppContext, LazyChoice, constant, pass_app
from digest.cli.output import format_table

DELIVERY_STATUS = LazyChoice(constant("digest.models", "DELIVERY_STATUSES"))


@click.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Only this edition.")
@click.option("--status", type=DELIVERY_STATUS)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--list", "list_slug", metavar="SLUG", help="Only this list's digests.")
@pass_app
def deliveries(
    app: AppContext, day: Any, status: str | None, limit: int, list_slug: str | None
) -> None:
    """Delivery status: one line per digest, with attempts and the last error.

    With more than one list, each line names its list and the totals come per list too.

    \b
    Example:
      digest deliveries --status failed --date 2026-11-25 --list daily
    """
    edition = day.date() if day else None
    lists = app.store.lists.all()
    slugs = {listed.id: listed.slug for listed in lists}
    list_id = app.store.lists.require(list_slug).id if list_slug else None
    rows = app.store.deliveries.find(edition=edition, status=status, limit=limit, list_id=list_id)
    click.echo(
        format_table(
            [
                "edition",
                "email",
                "list",
                "status",
                "papers",
                "trending",
                "attempts",
                "sent at / next try",
                "last error",
                "note",
            ],
            [
                [
                    d.edition,
                    d.email,
                    slugs.get(d.list_id, ""),
                    d.status,
                    d.papers,
                    d.trending,
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
    counts = app.store.deliveries.counts(edition, status, list_id)
    click.echo("totals: " + _counted(counts))
    if len(lists) > 1 and list_id is None:
        by_list = app.store.deliveries.counts_by_list(edition, status)
        for listed in lists:
            click.echo(f"  {listed.slug}: {_counted(by_list.get(listed.id, {}))}")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


@click.command("retry-failed")
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
