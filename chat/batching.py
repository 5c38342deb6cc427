"""Micro-batching: many concurrent callers, one call of the work for all of them.

A burst of questions embeds each query; the embedding model computes a batch in about the time
of its slowest members, and every separate call costs a trip to a thread that competes with the
event loop. So callers `submit` one item each and wait; the first of a quiet moment starts a
batch on the next turn of the event loop (the callers of the same turn join it: no waiting
when there is no burst), and whoever comes while a batch runs waits for the next one, made of
everything that came meanwhile. One batch runs at a time: the work (a model already using every
core, a database thread) would only contend with itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from chat.background import start_detached

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Waiter(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class MicroBatcher(Generic[T, R]):
    """Runs `work(items)` (its results in the items' order) for the items submitted together.

    A failure of the work is raised to every caller of its batch. A caller that is cancelled
    leaves: its item is dropped if its batch has not started, and its result unread if it has;
    the other callers of the batch get theirs.
    """

    def __init__(
        self, work: Callable[[list[T]], Awaitable[list[R]]], *, max_batch: int = 64
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._work = work
        self._max_batch = max_batch
        self._waiting: list[_Waiter[T, R]] = []
        self._runner: asyncio.Task[None] | None = None
        # The loop the waiting callers belong to (tests run one loop per test).
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: T) -> R:
        """`item`'s result, computed in a batch with whatever else is submitted meanwhile."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Callers of a loop that is gone cannot be answered; start afresh on this one.
            self._loop, self._waiting, self._runner = loop, [], None
        waiter: _Waiter[T, R] = _Waiter(item, loop.create_future())
        self._waiting.append(waiter)
        if self._runner is None or self._runner.done():
            # Detached: the runner serves every caller, so it must not run (and reach the
            # database) in the context of whichever caller happened to start it.
            self._runner = start_detached(self._run(), name="micro-batch")
        # Cancelling this await cancels the future: the runner skips it.
        return await waiter.future

    async def _run(self) -> None:
        # One turn of the loop: the callers of this same turn join the first batch.
        await asyncio.sleep(0)
        while self._waiting:
            batch = [w for w in self._waiting[: self._max_batch] if not w.future.done()]
            del self._waiting[: self._max_batch]
            if batch:
                await self._one(batch)

    async def _one(self, batch: list[_Waiter[T, R]]) -> None:
        try:
            results = await self._work([waiter.item for waiter in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except asyncio.CancelledError:
            # The runner itself was cancelled (the loop is closing): nobody will answer them.
            for waiter in [*batch, *self._waiting]:
                waiter.future.cancel()
            self._waiting.clear()
            raise
        except Exception as err:
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(err)
            return
        for waiter, result in zip(batch, results, strict=True):
            if not waiter.future.done():
                waiter.future.set_result(result)
