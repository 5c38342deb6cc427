"""Client processes: the load comes from separate processes (this machine has two cores, and a
client loop must not be what limits the server), coordinated step by step with the
orchestrator through a `Barrier`."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from bench.procstat import raise_open_files_limit

T = TypeVar("T")


class Barrier:
    """Numbered steps shared by client jobs and the orchestrator: each job `arrive`s at a step
    (with a small report) and waits until the orchestrator, having heard from every job and
    measured what it needs, `release`s it."""

    def __init__(self, manager: Any, steps: int) -> None:
        self._queue = manager.Queue()
        self._events = [manager.Event() for _ in range(steps)]

    async def arrive(self, step: int, report: Any = None, timeout: float = 600.0) -> None:
        self._queue.put((step, report))
        released = await asyncio.to_thread(self._events[step].wait, timeout)
        if not released:
            raise TimeoutError(f"the orchestrator did not release step {step}")

    def gather(
        self, step: int, count: int, futures: Sequence[Future[Any]], timeout: float
    ) -> list[Any]:
        """The reports of `count` jobs at `step`; raises a job's exception if one failed first."""
        reports: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(reports) < count:
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise RuntimeError("a client job failed") from future.exception()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {len(reports)} of {count} client jobs reached step {step}"
                )
            try:
                got_step, report = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if got_step != step:
                raise RuntimeError(f"a client job reported step {got_step} while at {step}")
            reports.append(report)
        return reports

    def release(self, step: int) -> None:
        self._events[step].set()


def _init_client() -> None:
    raise_open_files_limit()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a client job's coroutine on uvloop when installed (a cheaper client loop leaves more
    of the two cores to the processes under test), else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


class ClientPool:
    """A pool of spawned client processes, kept for the whole run (imports paid once)."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.processes = processes
        self._manager = context.Manager()
        self._executor = ProcessPoolExecutor(
            processes, mp_context=context, initializer=_init_client
        )

    def barrier(self, steps: int) -> Barrier:
        return Barrier(self._manager, steps)

    def queue(self) -> Any:
        """A queue the client jobs can put reports on while they run (the soak's progress)."""
        return self._manager.Queue()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._executor.submit(fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._manager.shutdown()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split(items: Sequence[T], parts: int) -> list[list[T]]:
    """`items` dealt round-robin into at most `parts` non-empty lists."""
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]
