"""Logging setup: one line per event, `event key=value …` or JSON.

Call sites log an event name and fields: ``log.info("poll.member", extra=fields(
member="kobe", outcome="ok"))``. Secrets never reach a log: config hands out
`Secret` objects whose str() is ``***``.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

FIELDS = "kairan_fields"
LOGGER_NAME = "kairan"


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra=`` of a log call: the event's key=value fields."""
    return {FIELDS: values}


def quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname.lower()
        head = f"{self.formatTime(record)} {level} {record.getMessage()}"
        values: dict[str, Any] = getattr(record, FIELDS, {})
        parts = [head, *(f"{k}={quote(v)}" for k, v in values.items())]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, FIELDS, {}),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def setup(level: str = "info", fmt: str = "kv", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
