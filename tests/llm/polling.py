"""Waiting for something that cannot be awaited directly (another process's or server's state)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(
    predicate: Callable[[], bool], *, within: float = 5.0, interval: float = 0.02
) -> None:
    """Poll `predicate` until it is true; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {within} s")
        await asyncio.sleep(interval)
