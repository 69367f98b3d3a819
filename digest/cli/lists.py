"""`digest lists`: the digests this install runs, each with its sources, cadence and sender."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from digest.cli.common import AppContext, pass_app
from digest.cli.output import format_table

if TYPE_CHECKING:
    from digest.records import ListRecord

STATUS_ORDER = ("active", "pending", "paused", "unsubscribed", "bounced")


@click.group(invoke_without_command=True)
@click.pass_context
def lists(ctx: click.Context) -> None:
    """List the lists (digests) this install runs; add, show, change or remove one.

    Each list has its own sources, cadence (daily, weekdays or weekly:DAY), sender and
    readers. The first list is the default: commands without --list mean it.

    \b
    Example:
      digest lists
      digest lists add robotics --title "Robotics Weekly" --cadence weekly:fri --source arxiv:cs.RO
    """
    if ctx.invoked_subcommand is None:
        app: AppContext = ctx.obj
        readers = app.store.lists.readers()
        rows = [
            [
                listed.slug,
                listed.title,
                listed.cadence,
                " ".join(_sources(app, listed)),
                _readers(readers.get(listed.id, {})),
            ]
            for listed in app.store.lists.all()
        ]
        click.echo(format_table(["slug", "title", "cadence", "sources", "readers"], rows))


def _sources(app: AppContext, listed: ListRecord) -> list[str]:
    from digest.lists import shown_sources

    return shown_sources(listed, app.settings.category_list)


def _readers(counts: dict[str, int]) -> str:
    """ "3 active, 1 unsubscribed", the statuses in a fixed order; "none" for none."""
    shown = [f"{counts[s]} {s}" for s in STATUS_ORDER if counts.get(s)]
    return ", ".join(shown) or "none"


def list_options(command: Any) -> Any:
    """Every option of a list but its title: the shape of `lists add` and `lists set`."""
    for decorate in (
        click.option("--topic", "-t", "topics", multiple=True, metavar="TOPIC",
                     help="A topic the sign-up page suggests. Repeat for several."),
        click.option("--max-papers", type=int, metavar="N",
                     help="Papers per digest for its new readers, 1-50."),
        click.option("--sender", metavar='"NAME <ADDR>"',
                     help="Who its digests are from (default: DIGEST_SENDER)."),
        click.option("--source", "sources", multiple=True, metavar="SOURCE",
                     help='hf, arxiv:CATEGORY or "arxiv-query:QUERY". Repeat for several.'),
        click.option("--cadence", metavar="CADENCE",
                     help="daily, weekdays or weekly:DAY (mon..sun)."),
        click.option("--description", metavar="TEXT", help="A line for its sign-up page."),
    ):  # fmt: skip
        command = decorate(command)
    return command


def _fields(
    description: str | None,
    cadence: str | None,
    sources: tuple[str, ...],
    sender: str | None,
    max_papers: int | None,
    topics: tuple[str, ...],
) -> dict[str, Any]:
    """The options given, validated, as :class:`digest.storage.Lists` takes them."""
    from digest.lists import validate_cadence, validate_sender, validate_source
    from digest.subscriptions import normalize_topic, validate_max_papers

    fields: dict[str, Any] = {}
    if description is not None:
        fields["description"] = description.strip()
    if cadence is not None:
        fields["cadence"] = validate_cadence(cadence)
    if sources:  # --source "" alone: back to what the settings fetch
        fields["sources"] = list(dict.fromkeys(validate_source(s) for s in sources if s))
    if sender is not None:
        fields["sender"] = validate_sender(sender) if sender.strip() else None
    if max_papers is not None:
        fields["max_papers"] = validate_max_papers(max_papers)
    if topics:  # --topic "" alone: back to the settings' suggestions
        fields["suggested_topics"] = list(dict.fromkeys(normalize_topic(t) for t in topics if t))
    return fields


def _echo_list(app: AppContext, listed: ListRecord) -> None:
    click.echo(f"{listed.slug}: {listed.title}  [{'public' if listed.public else 'private'}]")
    if listed.description:
        click.echo(f"  description: {listed.description}")
    click.echo(f"  cadence:     {listed.cadence}")
    own = "" if listed.sources else "  (the settings')"
    click.echo(f"  sources:     {' '.join(_sources(app, listed))}{own}")
    click.echo(f"  sender:      {listed.sender or app.settings.sender}")
    click.echo(f"  max papers:  {listed.max_papers or app.settings.max_papers}")
    topics = listed.suggested_topics or app.settings.suggestion_list
    click.echo(f"  suggests:    {'; '.join(topics)}")
    counts = app.store.lists.readers().get(listed.id, {})
    click.echo(f"  readers:     {_readers(counts)}")


@lists.command("add")
@click.argument("slug")
@click.option("--title", required=True, help="Its name, in every digest's heading.")
@list_options
@click.option("--private", is_flag=True, help="No sign-up page: admins add its readers.")
@pass_app
def lists_add(
    app: AppContext,
    /,
    slug: str,
    title: str,
    private: bool,
    **options: Any,
) -> None:
    """Add the list SLUG (its sign-up page is /l/SLUG).

    Without --source it draws on what the settings fetch (Hugging Face and
    DIGEST_ARXIV_CATEGORIES); without --cadence it is daily.

    \b
    Example:
      digest lists add ml-weekly --title "ML Weekly" --cadence weekly:mon \\
        --source hf --source arxiv:cs.LG --sender "ML Weekly <ml@example.org>"
    """
    from digest.lists import validate_title
    from digest.subscriptions import validate_slug

    fields = _fields(**options)
    listed = app.store.lists.add(
        validate_slug(slug), validate_title(title), public=not private, **fields
    )
    click.echo(f"added list {listed.slug} ({listed.title}), {listed.cadence}")


@lists.command("show")
@click.argument("slug")
@pass_app
def lists_show(app: AppContext, slug: str) -> None:
    """Show the list SLUG: sources, cadence, sender, readers.

    \b
    Example:
      digest lists show daily
    """
    _echo_list(app, app.store.lists.require(slug))


@lists.command("set")
@click.argument("slug")
@click.option("--title", help="Its name, in every digest's heading.")
@click.option("--slug", "new_slug", metavar="NEW", help="Rename the slug (its page moves).")
@list_options
@click.option("--public/--private", "public", default=None, help="Whether it has a sign-up page.")
@pass_app
def lists_set(
    app: AppContext,
    /,
    slug: str,
    title: str | None,
    new_slug: str | None,
    public: bool | None,
    **options: Any,
) -> None:
    """Change the list SLUG: its title, sources, cadence, sender, size or page.

    Each --source (or --topic) given replaces them all; --source "" goes back to
    what the settings fetch, --topic "" to their suggestions, --sender "" to
    DIGEST_SENDER.

    \b
    Example:
      digest lists set robotics --cadence weekly:mon --source arxiv:cs.RO --source hf
    """
    from digest.lists import validate_title
    from digest.subscriptions import validate_slug

    fields = _fields(**options)
    if title is not None:
        fields["title"] = validate_title(title)
    if public is not None:
        fields["public"] = public
    renamed = validate_slug(new_slug) if new_slug is not None else None
    _echo_list(app, app.store.lists.update(slug, renamed, **fields))


@lists.command("remove")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Also when it has readers: their subscriptions go too.")
@pass_app
def lists_remove(app: AppContext, slug: str, yes: bool) -> None:
    """Remove the list SLUG. While it has readers this is refused unless --yes, which
    deletes their subscriptions to it and its history (their other lists stay).

    \b
    Example:
      digest lists remove robotics --yes
    """
    listed = app.store.lists.require(slug)
    readers = sum(app.store.lists.readers().get(listed.id, {}).values())
    if readers and not yes:
        raise click.ClickException(
            f"{slug} has {readers} reader(s) (every status counted); "
            f"`digest lists remove {slug} --yes` deletes their subscriptions to it"
        )
    gone = app.store.lists.remove(slug)
    click.echo(f"removed list {slug} and {gone} subscription(s)")
