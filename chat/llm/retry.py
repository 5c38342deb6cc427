"""When to try an LLM request again, and how long to wait first."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

# Never wait longer than this for one retry, whatever the server's Retry-After says: a person
# is watching the answer's spinner.
RETRY_AFTER_CAP = 20.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0


def is_retryable_status(status: int) -> bool:
    """429 and 5xx may succeed later; any other 4xx will fail the same way again."""
    return status == 429 or status >= 500


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI's) or `Retry-After` (seconds or an HTTP
    date); None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Exponential backoff with jitter for retry number `attempt` (0-based): spreads the retries of
    many answers that failed together."""
    return min(cap, base * 2**attempt) * random.uniform(0.5, 1.0)


def retry_delay(
    attempt: int,
    headers: Mapping[str, str] | None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = RETRY_AFTER_CAP,
) -> float:
    """The server's Retry-After when it sent one (capped), else backoff."""
    retry_after = parse_retry_after(headers) if headers is not None else None
    if retry_after is not None:
        return min(cap, retry_after)
    return backoff_delay(attempt, base=base)
