"""What every command module shares: the lazily built context, the error rule, shared options.

Nothing here imports more than click at import time: `digest --help` loads every command
module, so settings, storage and the rest are imported only by the code that uses them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from digest.ranking import Encoder
    from digest.settings import Settings
    from digest.storage import Storage


@dataclass
class AppContext:
    """What every command needs, built lazily so `--help` works without a database."""

    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Settings:
        from digest.settings import load_settings

        return load_settings(**self.overrides)

    @cached_property
    def store(self) -> Storage:
        return self.open_store()

    def open_store(self, statement_timeout: float | None = None) -> Storage:
        from digest.storage import Storage

        return Storage.open(
            self.settings.resolved_database_url, self.settings.db_connect_timeout, statement_timeout
        )

    @cached_property
    def ranking(self) -> tuple[Encoder | None, float]:
        """(encoder, threshold) for ranking stored papers, as the daily run does."""
        from digest import semantic

        return semantic.ranking_mode(self.settings, self.store.papers)


class DigestGroup(click.Group):
    """Turns the project's user-facing exceptions into clean ``Error:`` lines."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # one rule for scripts: 0 worked, 1 did not
            exc.exit_code = 1  # type: ignore[misc]  # click types it a ClassVar, yet reads it per instance
            raise
        except Exception as exc:
            message = user_error_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None


def user_error_message(exc: Exception) -> str | None:
    """The one line an expected failure ends as, or None for click's own exits and for bugs
    (which keep their traceback). The exception classes are imported only once something
    failed, so that a command's import does not load SQLAlchemy and settings."""
    if isinstance(exc, click.ClickException | click.exceptions.Exit | click.Abort):
        return None
    from sqlalchemy.exc import OperationalError

    from digest.settings import SettingsError
    from digest.storage import StorageError
    from digest.subscriptions import InvalidInput

    if isinstance(exc, InvalidInput | StorageError | SettingsError):
        return str(exc)
    if isinstance(exc, OperationalError):
        return f"database error: {exc.orig}"
    return None


pass_app = click.make_pass_decorator(AppContext)


def setup_logging(verbose: int) -> None:
    from digest import logs

    logs.setup(logging.WARNING - 10 * verbose)


class LazyChoice(click.Choice[str]):
    """A choice among names another module defines, read only when a command parses its
    options or shows its own help: the modules that define them are slow to import."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self.load = load
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.load())

    @choices.setter
    def choices(self, _value: Sequence[str]) -> None:
        """click.Choice sets its choices in __init__; here they come from ``load``."""


def constant(module: str, name: str) -> Callable[[], Any]:
    """A loader for ``module.name``, imported when first called."""
    return lambda: getattr(importlib.import_module(module), name)


SUBSCRIBER_STATUS = LazyChoice(constant("digest.subscriptions", "SUBSCRIBER_STATUSES"))

topic_option = click.option(
    "--topic",
    "-t",
    "topics",
    multiple=True,
    metavar="TOPIC",
    help='A topic, e.g. -t "graph neural networks". Repeat for several.',
)

list_option = click.option(
    "--list",
    "list_slug",
    metavar="SLUG",
    help="The list (see `digest lists`); default: the default list.",
)
