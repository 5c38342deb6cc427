"""Retrying a database write that must not be lost, while the database is away.

Used for what the room already saw but the database could not store (an answer's end written
during an outage): the write is retried with exponential backoff until the database answers,
for a bounded time, with one log line when it gets through and one if it gives up (the caller
logs the first failure)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from channels.db import database_sync_to_async
from django.db import Error as DatabaseError

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.5
MAX_DELAY = 10.0


async def retry_write(
    write: Callable[[], T],
    *,
    what: str,
    budget: float,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
    failing_since: float | None = None,
) -> tuple[bool, T | None]:
    """Call the synchronous `write` (in the database thread) after a failure: first after
    `first_delay`, the delay doubling up to `max_delay`, until it returns or `budget` seconds
    have passed since the failure (`failing_since`, a `time.monotonic()`; default: now).
    `(True, result)` once it went through; `(False, None)` when it gave up.

    Only database errors are retried; any other error is a bug and is raised at once. `write`
    should make a new connection when the old one broke (see `storage.store_logged_end`):
    one that died in the outage fails every call made on it."""
    began = time.monotonic() if failing_since is None else failing_since
    deadline = began + budget
    delay = first_delay
    attempts = 0
    while True:
        # Never sleep past the deadline: the last try is made at it.
        await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        attempts += 1
        try:
            result = await database_sync_to_async(write)()
        except DatabaseError as err:
            if time.monotonic() >= deadline:
                logger.error(
                    "Gave up storing %s after %.0f s (%s; last error: %s)",
                    what,
                    time.monotonic() - began,
                    _tries(attempts),
                    (str(err).strip() or type(err).__name__).splitlines()[0],
                )
                return False, None
            logger.debug("Storing %s failed again: %s", what, err)
            delay = min(delay * 2, max_delay)
            continue
        logger.warning(
            "Stored %s after %.1f s (%s)", what, time.monotonic() - began, _tries(attempts)
        )
        return True, result


def _tries(count: int) -> str:
    return "1 try" if count == 1 else f"{count} tries"
