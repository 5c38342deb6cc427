"""Appends an answer's deltas to the room log, merging the ones that arrive while an append
is in flight: no latency is added when the log keeps up, and fewer, larger events are written
when it does not (the protocol allows merging consecutive deltas of one answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class DeltaPublisher:
    """Owns the order of one answer's deltas; `text` is exactly what was appended."""

    def __init__(self, append: Callable[[str], Awaitable[object]]) -> None:
        self._append = append
        self._pending: list[str] = []
        self._sent: list[str] = []
        self._pump: asyncio.Task[None] | None = None

    def add(self, text: str) -> None:
        self._pending.append(text)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            chunk = "".join(self._pending)
            self._pending.clear()
            await self._append(chunk)
            self._sent.append(chunk)

    async def drain(self) -> None:
        """Wait until every delta added so far is appended (re-raises an append failure)."""
        while self._pump is not None and not self._pump.done():
            # Shielded: a second cancel of the answer must not cut a half-sent delta.
            await asyncio.shield(self._pump)
        if self._pump is not None and self._pump.exception() is not None:
            raise self._pump.exception()  # type: ignore[misc]
        if self._pending:
            self._pump = None
            await self._run()

    @property
    def text(self) -> str:
        return "".join(self._sent)
