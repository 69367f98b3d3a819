"""`digest feedback`: what readers told their digests with their votes."""

from __future__ import annotations

import datetime as dt

import click

from digest.cli.common import AppContext, pass_app
from digest.cli.output import format_table


@click.command()
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Votes cast in the last N days.",
)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--list", "list_slug", metavar="SLUG", help="Only the votes of this list's readers.")
@pass_app
def feedback(app: AppContext, days: int, top: int, list_slug: str | None) -> None:
    """What readers told their digests: votes per topic and the most liked papers.

    A vote counts under the topic its paper was sent for; "(trending)" are votes on papers
    from the Trending today section or the archive.

    \b
    Example:
      digest feedback --days 7 --top 10
    """
    from digest.models import utcnow

    since = utcnow() - dt.timedelta(days=days)
    list_id = app.store.lists.require(list_slug).id if list_slug else None
    on = f" on {list_slug}" if list_slug else ""
    by_topic = app.store.feedback.votes_by_topic(since, list_id)
    if not by_topic:
        click.echo(f"no votes{on} in the last {days} days")
        return
    click.echo(f"Votes{on} in the last {days} days, by topic:")
    click.echo(
        format_table(
            ["topic", "more like this", "less like this"],
            [[topic, up, down] for topic, up, down in by_topic],
        )
    )
    liked = app.store.feedback.most_liked_papers(since, top, list_id)
    if liked:
        click.echo("\nMost liked papers:")
        click.echo(
            format_table(
                ["arxiv id", "likes", "dislikes", "title"],
                [[pid, up, down, title] for pid, title, up, down in liked],
            )
        )
