"""`digest-eval`: ranking quality on a papers file, apart from the operator's `digest`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import click

from digest import semantic
from digest.cli.common import DigestGroup
from digest.cli.output import format_table
from digest.evaluation import (
    Qrels,
    load_papers_file,
    load_profile_votes,
    load_profiles_file,
    load_qrels,
    merge_unrelated_profiles,
    random_vote_split,
    score_run,
    simulate_votes,
    topic_coverage,
)
from digest.ranking import plain_bm25_ranking, rank_profiles
from digest.records import Votes
from digest.sources import PaperRecord


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="paper-digest")
def cli() -> None:
    """Measure Paper Digest's ranking on a papers file and graded judgments (no database needed).

    \b
    Example:
      digest-eval rank-eval --papers ranking-dev/papers.json --profiles ranking-dev/topics.json --qrels ranking-dev/qrels
    """


def main() -> None:
    cli(prog_name="digest-eval")


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
      digest-eval rank --papers papers.json --profiles topics.json --format json
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
@click.option(
    "--seeds",
    type=int,
    default=10,
    show_default=True,
    help="Random vote draws for the feedback trial (0: skip it).",
)
def rank_eval(
    papers_path: Path, profiles_path: Path, qrels_path: Path, use_semantic: bool, seeds: int
) -> None:
    """Measure ranking quality against graded judgments (nDCG@10, recall@10, P@5).

    Per profile and their mean, for the digest's ranking (words + MiniLM), its words-only
    half, and a plain BM25 baseline, all computed in the same run.

    \b
    Example:
      digest-eval rank-eval --papers ranking-dev/papers.json --profiles ranking-dev/topics.json --qrels ranking-dev/qrels
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
    if seeds > 0:
        _vote_splits_report(papers_list, profiles, qrels, encoder, seeds)
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
    """Two (then three) unrelated profiles as one subscriber: nDCG@10 of their ten best papers,
    and whether a digest of five papers holds a relevant one for each part (coverage@5). Three
    profiles may hold six topics for five slots: there each interest must still get one."""
    for size, what in ((2, "pairs"), (3, "triples")):
        merged = merge_unrelated_profiles(profiles, qrels, size)
        if not merged.profiles:
            continue
        runs = _ranking_runs(papers_list, merged.profiles, encoder)
        digests = _ranking_runs(papers_list, merged.profiles, encoder, top=5)
        rows = []
        for name, run in runs.items():
            coverage, eligible = topic_coverage(digests[name], merged)
            ndcg10 = score_run(run, merged.qrels)["mean"].ndcg10
            rows.append([name, f"{ndcg10:.3f}", f"{coverage:.3f}"])
        click.echo(
            f"\nMerged profiles: {len(merged.profiles)} {what} of unrelated profiles as one "
            f"subscriber each (coverage over the {eligible} where every part has a relevant paper)"
        )
        click.echo(format_table(["run", "nDCG@10", "coverage@5"], rows))


def _vote_splits_report(
    papers_list: list[PaperRecord],
    profiles: dict[str, list[str]],
    qrels: Qrels,
    encoder: Any,
    seeds: int,
) -> None:
    """Votes drawn at random (:func:`random_vote_split`), ``seeds`` draws, 2 and 4 per side:
    nDCG@10 on the papers left, without votes (the voted ones left out) and with them; the mean
    over draws, their spread (sd), and the change per draw (mean, worst)."""
    shown = {
        q: [p.arxiv_id for p in ps]
        for q, ps in rank_profiles(papers_list, profiles, 20, encoder=encoder).items()
    }
    full = rank_profiles(papers_list, profiles, len(papers_list), encoder=encoder)
    rows = []
    for per_side in (2, 4):
        before, after = [], []
        for seed in range(seeds):
            trial = random_vote_split(shown, qrels, per_side, seed)
            votes = {q: trial.votes[q] for q in profiles if q in trial.votes}
            left_out = {
                q: [p.arxiv_id for p in ps if p.arxiv_id not in votes.get(q, Votes()).papers][:10]
                for q, ps in full.items()
            }
            taught = rank_profiles(papers_list, profiles, 10, encoder=encoder, votes=votes)
            with_votes = {q: [p.arxiv_id for p in ps] for q, ps in taught.items()}
            judged = {q: trial.qrels.get(q, {}) for q in profiles}
            before.append(score_run(left_out, judged)["mean"].ndcg10)
            after.append(score_run(with_votes, judged)["mean"].ndcg10)
        change = [b - a for a, b in zip(before, after, strict=True)]
        rows.append(
            [
                f"{per_side} + {per_side}",
                f"{statistics.mean(before):.3f} ± {statistics.pstdev(before):.3f}",
                f"{statistics.mean(after):.3f} ± {statistics.pstdev(after):.3f}",
                f"{statistics.mean(change):+.3f} ± {statistics.pstdev(change):.3f}",
                f"{min(change):+.3f}",
            ]
        )
    click.echo(
        f"\nFeedback, random votes: per profile N relevant papers liked and N irrelevant ones of"
        f" its top 20 disliked, {seeds} seeds (0-{seeds - 1}), judged without them (nDCG@10,"
        " mean ± sd over seeds)"
    )
    click.echo(
        format_table(["votes", "no votes, voted left out", "with votes", "change", "worst"], rows)
    )


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


if __name__ == "__main__":
    main()
