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
    counts = app.store.deliveries.counts(edition, status)
    click.echo("totals: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))


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
