"""Celery shell around digest.pipeline and digest.delivery: the app, the tasks, the beat schedule."""
