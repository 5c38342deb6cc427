"""`MicroBatcher`: concurrent callers share one call of the work, in order, with failures and
cancellations kept to whom they concern. The work here is a real coroutine that records each
batch it gets and can be held, so the tests decide what arrives while a batch runs."""

from __future__ import annotations

import asyncio

import pytest

from chat.batching import MicroBatcher


class Work:
    """Doubles its items; records every batch; `gate` holds a batch until it is set."""

    def __init__(self, *, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        await self.gate.wait()
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot do {self.fail_on}")
        return [item * 2 for item in items]


async def test_callers_of_the_same_moment_share_one_batch_in_order() -> None:
    work = Work()
    batcher = MicroBatcher(work)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert work.batches == [[0, 1, 2, 3, 4]]


async def test_callers_arriving_while_a_batch_runs_make_the_next_batch() -> None:
    work = Work()
    work.gate.clear()
    batcher = MicroBatcher(work)
    first = asyncio.ensure_future(batcher.submit(1))
    await work.started.wait()
    later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert work.batches == [[1]]  # one batch at a time: the others wait for it
    work.gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [4, 6, 8]
    assert work.batches == [[1], [2, 3, 4]]


async def test_a_batch_is_bounded_and_the_rest_follow() -> None:
    work = Work()
    batcher = MicroBatcher(work, max_batch=2)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert work.batches == [[0, 1], [2, 3], [4]]


async def test_a_failure_reaches_every_caller_of_its_batch_and_no_other() -> None:
    work = Work(fail_on=3)
    work.gate.clear()
    batcher = MicroBatcher(work)
    first = asyncio.ensure_future(batcher.submit(1))
    await work.started.wait()
    failing = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    work.gate.set()
    assert await first == 2
    for caller in failing:
        with pytest.raises(ValueError, match="cannot do 3"):
            await caller
    # The batcher goes on after a failed batch.
    assert await batcher.submit(5) == 10


async def test_a_cancelled_caller_leaves_and_the_others_get_their_results() -> None:
    work = Work()
    work.gate.clear()
    batcher = MicroBatcher(work)
    running = [asyncio.ensure_future(batcher.submit(n)) for n in (1, 2)]
    await work.started.wait()
    queued = [asyncio.ensure_future(batcher.submit(n)) for n in (3, 4)]
    await asyncio.sleep(0)
    running[0].cancel()  # its batch has started: its result is dropped
    queued[0].cancel()  # its batch has not: its item is never worked on
    await asyncio.sleep(0)
    work.gate.set()
    assert await running[1] == 4
    assert await queued[1] == 8
    assert running[0].cancelled() and queued[0].cancelled()
    assert work.batches == [[1, 2], [4]]


async def test_a_wrong_number_of_results_is_an_error_for_the_batch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher = MicroBatcher(short)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


def test_each_event_loop_gets_its_own_batches() -> None:
    """A batcher outlives a loop (the retriever is process-wide; tests run a loop each): a
    caller on a new loop is answered on it."""
    work = Work()
    batcher = MicroBatcher(work)
    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(2)) == 4


def test_max_batch_must_be_positive() -> None:
    async def nothing(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError):
        MicroBatcher(nothing, max_batch=0)
