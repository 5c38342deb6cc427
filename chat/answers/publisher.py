"""Appends an answer's deltas to the room log, merging the ones that arrive while an append
is in flight: no latency is added when the log keeps up, and fewer, larger events are written
when it does not (the protocol allows merging consecutive deltas of one answer).

The same merge is the answer's buffer through a room-log outage: while an append waits for
Redis to come back (`append_patiently`), the LLM's deltas gather here, in order, and go out as
one delta when it returns. Nothing is dropped: a chunk whose append failed for good stays
pending, and the failure is raised by `drain`, never left in a task nobody awaits.

When nothing is in flight and the log can append at once (the memory log: `append_now`), a
delta is appended right away, with no task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from chat.realtime.log import AppendsLater


class DeltaPublisher:
    """Owns the order of one answer's deltas; `text` is exactly what was appended."""

    def __init__(
        self,
        append: Callable[[str], Awaitable[object]],
        append_now: Callable[[str], object] | None = None,
    ) -> None:
        self._append = append
        # Appends before returning, or raises AppendsLater (RoomLog.append_now).
        self._append_now = append_now
        self._pending: list[str] = []
        self._sent: list[str] = []
        self._pump: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def add(self, text: str) -> None:
        idle = self._pump is None or self._pump.done()
        if self._append_now is not None and idle and not self._pending and self._error is None:
            try:
                self._append_now(text)
            except AppendsLater:
                pass  # through the pump below
            except Exception as err:
                # As a failed append in the pump: kept, and raised by `drain`.
                self._pending.append(text)
                self._error = err
                return
            else:
                self._sent.append(text)
                return
        self._pending.append(text)
        if self._error is None and (self._pump is None or self._pump.done()):
            self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending and self._error is None:
            chunk = "".join(self._pending)
            self._pending.clear()
            try:
                await self._append(chunk)
            except Exception as err:
                # Kept for `drain` to raise; the chunk goes back in front of what came since.
                self._pending.insert(0, chunk)
                self._error = err
                return
            self._sent.append(chunk)

    async def drain(self) -> None:
        """Wait until every delta added so far is appended; raise the append failure, if one
        stopped them."""
        while self._pump is not None and not self._pump.done():
            # Shielded: a second cancel of the answer must not cut a half-sent delta.
            await asyncio.shield(self._pump)
        if self._error is None and self._pending:
            self._pump = None
            await self._run()
        if self._error is not None:
            raise self._error

    @property
    def text(self) -> str:
        """What the room was sent (the end's text must be exactly this)."""
        return "".join(self._sent)
