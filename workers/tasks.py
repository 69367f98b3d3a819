"""Celery tasks: thin wrappers that hand work to digest.pipeline and digest.delivery.

``tick`` (beat, every DIGEST_TICK_SECONDS): requeue stale claims, fetch when due, plan the
editions of subscribers whose local send hour has come, and fan out ``send_batch`` tasks
of DIGEST_BATCH_SIZE deliveries. ``send_batch``: one SMTP connection for the batch, the
shared Redis rate limit, and the delivery state machine; idempotent, so redelivery is safe.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_init

from digest import logs
from digest.delivery import send_deliveries
from digest.limits import RateLimiter, redis_client
from digest.models import utcnow
from digest.pipeline import run_tick
from digest.receipts import record_batch
from digest.runs import BEAT
from digest.storage import Storage
from digest.transports import make_transport
from workers.celery_app import app, settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def store() -> Storage:
    """One engine per worker process (created after fork, never shared across processes)."""
    return Storage.open(settings.resolved_database_url, settings.db_connect_timeout)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    store.cache_clear()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_: object) -> None:
    logs.reformat(logger, settings.log_format)


@app.task(name="workers.tasks.tick")
def tick() -> dict[str, int]:
    """One run: its batches carry its id, so their outcomes land on its receipt."""
    now = utcnow()
    run_id = store().runs.start(BEAT, now)
    report = run_tick(
        store(), settings, now, lambda batch: send_batch.delay(batch, run_id), run_id=run_id
    )
    return {"due": report.due, "created": report.created, "enqueued": report.enqueued}


@app.task(name="workers.tasks.send_batch")
def send_batch(delivery_ids: list[int], run_id: int | None = None) -> dict[str, int]:
    limiter = RateLimiter(settings.rate_limit_per_second, redis_client(settings))
    with make_transport(settings) as transport:
        report = send_deliveries(
            store().deliveries,
            store().papers,
            settings,
            delivery_ids,
            transport,
            limiter,
            lists=store().lists,
        )
    record_batch(store().runs, run_id, report)
    log.info(
        "run %s batch of %d: sent %d, retry %d, failed %d, bounced %d, skipped %d",
        run_id,
        len(delivery_ids),
        report.sent,
        report.retried,
        report.failed,
        report.bounced,
        report.skipped,
    )
    return {"sent": report.sent, "retried": report.retried, "failed": report.failed}
