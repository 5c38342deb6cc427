"""Queries embedded ahead of their search.

An ask's question is searched only after its database write (which also reads the room's
settings: which collection, how many passages). Embedding the query is most of a search, and
needs nothing but its text and the process's embedding function: admission starts it when the
question arrives (`prefetch`), so it runs while the question is stored, and the search that
follows takes the vector. Measured by `bench ttfd` and `bench burst` (docs/benchmarks.md).

Entries are kept a few seconds by text, so that the searches of one question (a room searching
its own documents beside the shared ones makes two) share the vector; concurrent prefetches are
embedded in one batch, like the searches (`chat.batching`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from chat.batching import MicroBatcher

logger = logging.getLogger(__name__)

# How long an embedded query waits for its search; the search comes within a database write.
KEEP_SECONDS = 5.0
# The most queries held at once (a burst larger than this loses only the oldest's head start).
MAX_AHEAD = 256

Vector = Any  # what the embedding function returns for one text (a numpy array)


class QueriesAhead:
    """Embeddings started before their search, by query text."""

    def __init__(
        self,
        # None for a text: not embedded ahead (its search embeds it).
        embed: Callable[[list[str]], Awaitable[list[Vector | None]]],
        *,
        max_batch: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.max_ahead = MAX_AHEAD
        self._embedder: MicroBatcher[str, Vector | None] = MicroBatcher(embed, max_batch=max_batch)
        # text -> (when it was started, monotonic; its embedding), oldest first.
        self._ahead: OrderedDict[str, tuple[float, asyncio.Future[Vector | None]]] = OrderedDict()
        # The loop the futures belong to (tests run one loop per test).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._ahead)

    def prefetch(self, query: str) -> None:
        """Start embedding `query`, unless it is blank or already under way."""
        if not query.strip():
            return
        self._forget_old()
        if query in self._ahead:
            return
        future = asyncio.ensure_future(self._embedder.submit(query))
        # Read by a search, or by nobody (its search never came, or failed first): never an
        # "exception was never retrieved" warning for a failure the search reports itself.
        future.add_done_callback(_retrieved)
        self._ahead[query] = (self._clock(), future)
        while len(self._ahead) > self.max_ahead:
            self._ahead.popitem(last=False)

    async def vector(self, query: str) -> Vector | None:
        """The embedding of `query` if it was prefetched (waiting for it if it is still under
        way); None if it was not, or if embedding it failed (the search embeds it again and
        reports the failure as its own)."""
        self._forget_old()
        entry = self._ahead.get(query)
        if entry is None:
            return None
        future = entry[1]
        try:
            # Shielded: this search being cancelled must not cancel the embedding another
            # search of the same question waits for.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.cancelled():
                raise  # this search was cancelled
            return None  # the embedding was (its loop is closing)
        except Exception:
            return None

    def _forget_old(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._ahead.clear()
            return
        oldest = self._clock() - KEEP_SECONDS
        while self._ahead:
            started, _ = next(iter(self._ahead.values()))
            if started >= oldest:
                break
            self._ahead.popitem(last=False)


def _retrieved(future: asyncio.Future[Vector | None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.debug("A query embedded ahead failed: its search will say why")
