"""Running work that outlives a request in a clean `contextvars` context.

The answer runner and the runtime start every long-lived task through `start_detached`, so no
caller's context (a request's, a test's) can leak into them; HTTP views use `detached` too.

Every HTTP request of this project reaches its async view through asgiref's `AsyncToSync`
(WhiteNoise is a sync-only middleware), so the view's context points at that request's thread
executors, which are gone when the request ends. A task started from it (an answer task, the
worker's background loops, a room log reader) inherits that context, and its later
`database_sync_to_async` calls fail ("CurrentThreadExecutor already quit", "ThreadSensitiveContext
has exited").

So work that may start such tasks runs in a fresh context whose thread-sensitive calls go to one
long-lived thread of their own (`_BACKGROUND`, never entered nor exited). Not the process's
shared single thread: the request's own sync middleware may be running there (Django's test
client does not give each request its own), waiting for this very work: a deadlock.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync, ThreadSensitiveContext

logger = logging.getLogger(__name__)

T = TypeVar("T")

# asgiref gives each ThreadSensitiveContext one worker thread, created on first use and kept
# while the context lives: this one lives as long as the process.
_BACKGROUND = ThreadSensitiveContext()


def _fresh_context() -> contextvars.Context:
    context = contextvars.Context()
    context.run(SyncToAsync.thread_sensitive_context.set, _BACKGROUND)
    return context


async def detached(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` as a task in a fresh context; cancelling the caller cancels it too."""
    return await asyncio.create_task(coro, context=_fresh_context())


def start_detached(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Start `coro` as a task in a fresh context; the caller keeps a reference to it."""
    return asyncio.create_task(coro, name=name, context=_fresh_context())


def keep_until_done(tasks: set[asyncio.Task[Any]], task: asyncio.Task[Any], *, what: str) -> None:
    """Hold a reference to `task` in `tasks` until it ends (the event loop keeps only a weak
    one), then log its failure, if any, as `what` failed."""
    tasks.add(task)

    def done(finished: asyncio.Task[Any]) -> None:
        tasks.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            logger.warning("%s failed: %r", what, finished.exception())

    task.add_done_callback(done)
