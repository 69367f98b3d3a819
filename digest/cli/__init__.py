"""The ``digest`` admin command line: a thin shell over storage, ingestion, ranking and delivery.

One module per command group; this one holds the top-level group and ``main``. Every
expected failure (bad input, unknown subscriber, invalid setting, outage) ends as a
one-line ``Error: ...`` and a non-zero exit code, never a traceback. The command modules
import only click at import time, so that ``digest --help`` answers at once. Ranking
evaluation is a separate command, ``digest-eval`` (:mod:`digest.cli.evaluation`).
"""

from __future__ import annotations

import click

from digest.cli.common import AppContext, DigestGroup, setup_logging
from digest.cli.db import db
from digest.cli.deliveries import deliveries, retry_failed
from digest.cli.doctor import doctor
from digest.cli.feedback import feedback
from digest.cli.lists import lists
from digest.cli.papers import fetch, papers
from digest.cli.run import preview, run, send_test
from digest.cli.runs import runs, status
from digest.cli.serve import smtp_sink, web
from digest.cli.subscribers import subscribers
from digest.cli.topics import topics

COMMANDS = (
    db,
    deliveries,
    doctor,
    feedback,
    fetch,
    lists,
    papers,
    preview,
    retry_failed,
    run,
    runs,
    send_test,
    smtp_sink,
    status,
    subscribers,
    topics,
    web,
)


@click.group(cls=DigestGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.option(
    "--database-url", metavar="URL", help="Override DIGEST_DATABASE_URL for this command."
)
@click.version_option(package_name="paper-digest")
@click.pass_context
def cli(ctx: click.Context, verbose: int, database_url: str | None) -> None:
    """Paper Digest: a daily email of the trending research papers that match each subscriber's topics.

    Configuration comes from DIGEST_* environment variables (or a .env file); see
    config/example.env. With no configuration, everything runs locally: a SQLite database
    in ~/.local/share/paper-digest, and digests written as .eml files to its outbox/
    folder, whichever folder you run digest from (DIGEST_DATA_DIR moves it).

    \b
    Start here:
      digest run --now                      fetch, rank and send today's digests
      digest subscribers add a@b.org --topic "graph neural networks"
      digest subscribers import people.csv  bulk add or update from CSV
      digest preview a@b.org --out d.html   see what someone would receive
    """
    setup_logging(verbose)
    ctx.obj = AppContext({"database_url": database_url} if database_url else {})


for command in COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="digest")
