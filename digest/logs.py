"""Log lines for people (text) or for log collectors (DIGEST_LOG_FORMAT=json).

A tiny :class:`logging.Formatter` rather than python-json-logger: the service logs a
message, a level and a time, and a dependency for ten lines is not worth its upgrades."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def formatter(log_format: str | None = None) -> logging.Formatter:
    """The formatter DIGEST_LOG_FORMAT asks for (``json`` or the default ``text``)."""
    chosen = log_format or os.environ.get("DIGEST_LOG_FORMAT", "text")
    return JsonFormatter() if chosen.strip().lower() == "json" else logging.Formatter(TEXT)


def setup(level: int, log_format: str | None = None) -> None:
    """The root logger on stderr, in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])


def reformat(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of ``logger`` the chosen format (Celery sets up its own)."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(log_format))
