"""How ``vrm serve`` and ``vrm worker`` write their log lines: plain text (uvicorn's default)
or, with ``VRM_LOG_FORMAT=json``, one JSON object per line for a log collector."""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}``, plus ``request_id`` when the line names a
    request. A line is only what the code chose to log, which is never personal data; an
    exception adds its type and frames, never its text (which can carry bound SQL
    parameters)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["frames"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str) -> None:
    """Apply ``VRM_LOG_FORMAT`` to this process (``vrm worker``; ``vrm serve`` hands
    :func:`json_log_config` to uvicorn instead). ``text`` leaves logging as it is."""
    if log_format == "json":
        logging.config.dictConfig(json_log_config())


def json_log_config() -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (and uvicorn ``log_config``) that writes every line,
    the server's and the service's, as JSON to stderr."""
    handler = {"handlers": ["json"], "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "vrm.logs.JsonFormatter"}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {**handler, "level": "INFO"},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {**handler, "level": "INFO"},
            "vrm": {**handler, "level": "INFO"},
        },
        "root": {"handlers": ["json"], "level": "WARNING"},
    }
