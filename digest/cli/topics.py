"""`digest topics`: the topics subscribers follow, counted, renamed and merged."""

from __future__ import annotations

from collections.abc import Sequence

import click

from digest.cli.common import AppContext, pass_app
from digest.cli.output import format_table


@click.group(invoke_without_command=True)
@click.option("--list", "list_slug", metavar="SLUG", help="Only this list's readers.")
@click.pass_context
def topics(ctx: click.Context, list_slug: str | None) -> None:
    """List topics with their number of active subscribers; rename or merge topics.

    \b
    Examples:
      digest topics
      digest topics --list ml-weekly
    """
    if ctx.invoked_subcommand is None:
        app: AppContext = ctx.obj
        only = app.store.lists.require(list_slug).id if list_slug else None
        rows = app.store.topics.counts(only)
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
    from digest.subscriptions import InvalidInput, normalize_topic

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
    from digest.subscriptions import normalize_topic

    target_name = normalize_topic(target)
    for source in sources:
        source_name = normalize_topic(source)
        if source_name != target_name:
            affected = app.store.topics.rename(source_name, target_name)
            click.echo(f"{affected} subscriber(s) moved from {source_name!r} to {target_name!r}")
