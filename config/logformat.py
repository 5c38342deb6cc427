"""Log records with where they come from, as text (one line, as always) or JSON (one object
a line, CHAT_LOG_FORMAT=json) for a log collector."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from chat.observability import context

# The fields every JSON line has (null when not known), after time, level, logger, message.
CONTEXT_FIELDS = ("room", "answer_id", "user_id", "worker", "request_id")


class AddContext(logging.Filter):
    """Puts the current room, answer, user and request ids (chat.observability.context) and
    the worker's id on each record, as it is made: a record handled later, or by another
    thread, keeps the ids of the work that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = context.current()
        record.room = current.room
        record.answer_id = current.answer_id
        record.user_id = current.user_id
        record.request_id = current.request_id
        record.worker = context.worker()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the context
    fields, `fields` a call gave with `extra={"fields": {...}}`, and a traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            line[name] = getattr(record, name, "") or None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(str(key), value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
