"""Daphne's input queue of a socket, trimmed to what daphne uses of it.

Daphne gives every connection an `asyncio.Queue()` (the application's `receive` is its `get`)
and only ever calls `put_nowait` and `get`. An unbounded queue's putters never wait and nobody
joins daphne's queues, yet each keeps a deque for putters and an `Event` (with a deque of its
own) for `join()`: about 1.5 KiB of every idle socket's memory (docs/benchmarks.md, "Memory per
idle connection"), a deque allocating a 512-byte block even when empty.
"""

from __future__ import annotations

import asyncio
from typing import Any

# No putter ever waits on an unbounded queue: `put` appends to `_putters` only when the queue
# is full, and `get` wakes putters with `while putters: ...`, which finds none in this.
_NO_PUTTERS: tuple[()] = ()
# Cleared by `put_nowait` and set by `task_done`, never awaited: `join()` is not used on
# daphne's queues. One for all of them.
_NEVER_JOINED = asyncio.Event()


def trim_input_queue(receive: Any) -> None:
    """Drop the putters' deque and the `join()` event of `receive`'s queue when it is a plain
    unbounded `asyncio.Queue` nothing has used yet; anything else is left as it is."""
    queue = getattr(receive, "__self__", None)
    if type(queue) is not asyncio.Queue or queue.maxsize > 0:
        return
    putters = getattr(queue, "_putters", None)
    finished = getattr(queue, "_finished", None)
    if putters or not isinstance(finished, asyncio.Event) or queue._unfinished_tasks:  # type: ignore[attr-defined]
        return
    queue._putters = _NO_PUTTERS  # type: ignore[attr-defined]
    queue._finished = _NEVER_JOINED  # type: ignore[attr-defined]
