"""`digest fetch` and `digest papers`: bring papers into the store and list them."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from digest.cli.common import AppContext, LazyChoice, pass_app
from digest.cli.output import format_table, progress_bar

if TYPE_CHECKING:
    from digest.sources import PaperRecord


def source_names() -> list[str]:
    """What `fetch --source` accepts: every source, each live one, or Hugging Face's RSS."""
    from digest.ingestion import LIVE_SOURCES
    from digest.sources import HF_RSS

    return ["all", *LIVE_SOURCES, HF_RSS]


@click.command()
@click.option(
    "--source",
    "source",
    type=LazyChoice(source_names),
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
    from digest.ingestion import LIVE_SOURCES, fetch_all, ingest_bytes
    from digest.models import utcnow
    from digest.pipeline import candidate_papers

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
    embed_with_progress(app, candidate_papers(app.store, app.settings, utcnow()))
    if any(report.error for report in reports):
        sys.exit(1)


def embed_with_progress(app: AppContext, papers: Sequence[PaperRecord]) -> None:
    """Embed (and store) the papers' vectors under a progress bar on stderr: a fresh
    folder's first papers take a while, and a silent command looks hung."""
    from digest.pipeline import embed_papers

    with progress_bar(length=len(papers), label="embedding candidate papers") as bar:
        embed_papers(app.store, app.settings, papers, bar.update)


@click.command()
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
    from digest.ranking import rank_profiles
    from digest.subscriptions import normalize_topic

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
