"""Logging filters named in settings.LOGGING."""

from __future__ import annotations

import logging


class ClientErrorsAtInfo(logging.Filter):
    """Django logs every 4xx response at WARNING. A refused request is the client's mistake,
    already answered with a clear error: keep it in the log at INFO, and keep WARNING and
    above for what an operator must look at (5xx stay ERROR)."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and record.levelno > logging.INFO:
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True
