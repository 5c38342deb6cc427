"""Reading a queue as a stream that says when it has been quiet (time for a keep-alive)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any


async def items_or_idle(
    queue: asyncio.Queue[Any], *, end: object, idle: float | None
) -> AsyncGenerator[Any, None]:
    """Each item of `queue` until `end` is taken from it; None whenever `idle` seconds pass
    without an item (None: never)."""
    while True:
        try:
            async with asyncio.timeout(idle):
                item = await queue.get()
        except TimeoutError:
            yield None
            continue
        if item is end:
            return
        yield item
