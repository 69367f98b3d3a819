"""The Celery app: Redis broker from DIGEST_REDIS_URL, reliability settings, beat schedule.

    celery -A workers.celery_app worker --loglevel=info      # as many as you like, any machine
    celery -A workers.celery_app beat --loglevel=info        # exactly one

Reliability: ``acks_late`` + ``task_reject_on_worker_lost`` put a killed worker's batch back
on the queue; the delivery state machine in the database makes the rerun skip what was
sent. Results are not stored (the database is the record). The visibility timeout is
longer than any batch can take, so a slow batch is not handed to a second worker while
the first still works on it.
"""

from __future__ import annotations

from celery import Celery

from digest.settings import load_settings

settings = load_settings()

app = Celery("paper_digest", broker=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 4 * 3600},
    timezone="UTC",
    beat_schedule={
        "daily-job-tick": {"task": "workers.tasks.tick", "schedule": float(settings.tick_seconds)},
    },
)
