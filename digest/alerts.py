"""The admin alert: a mail to DIGEST_ADMIN_EMAIL when the last run failed or a source has
failed DIGEST_ALERT_AFTER_RUNS runs in a row, each problem at most once a day (the
database remembers which were mailed, so several workers and `run --now` agree)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Protocol

from digest import emails
from digest.messages import wire_address
from digest.runs import Health, Problem, Thresholds, problems
from digest.settings import Settings
from digest.transports import PermanentError, TransientError, make_transport

log = logging.getLogger(__name__)
RETRY_AGE = dt.timedelta(days=1)  # a retry waiting longer than this is a problem
ALERTED = ("run-failed", "source-")  # what mails; the rest only shows in `status --check`


class AlertStore(Protocol):
    """:class:`digest.storage.Runs` as the alert uses it."""

    def health(self, now: dt.datetime) -> Health: ...

    def claim_alert(self, problem: str, day: dt.date) -> bool: ...

    def forget_alert(self, problem: str, day: dt.date) -> None: ...


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        dt.timedelta(seconds=settings.tick_seconds),
        settings.alert_after_runs,
        settings.alert_retries_waiting,
        RETRY_AGE,
    )


def alert_if_needed(runs: AlertStore, settings: Settings, now: dt.datetime) -> list[Problem]:
    """Mail the problems not mailed yet today; returns those mailed."""
    if not settings.admin_email:
        return []
    health = runs.health(now)
    found = [p for p in problems(health, thresholds(settings)) if p.key.startswith(ALERTED)]
    fresh = [p for p in found if runs.claim_alert(p.key, now.date())]
    if not fresh:
        return []
    run_id = health.last_run.id if health.last_run else 0
    message = emails.admin_alert([p.text for p in fresh], run_id, settings, now)
    try:
        with make_transport(settings) as transport:
            transport.send(message, settings.sender, wire_address(settings.admin_email))
    except (TransientError, PermanentError, OSError) as exc:
        for problem in fresh:
            runs.forget_alert(problem.key, now.date())
        log.error("could not mail the admin alert to %s: %s", settings.admin_email, exc)
        return []
    log.warning("alert mailed to %s: %s", settings.admin_email, "; ".join(p.text for p in fresh))
    return fresh
