"""A member's outbox: the bounded send buffer in front of one socket (or SSE stream).

Frames are queued and written by one writer task, in order; a frame pushed while nothing waits
before it goes out at once when the server can take it so (`send_now`). The writer task and the
queue exist only while frames wait: an idle connection holds neither (memory per idle socket,
docs/benchmarks.md). The bound covers what
waits in our queue plus what the server's transport still holds unsent (daphne exposes it; see
`config.asgi.transport_probe`): a client too slow to read is closed with 4008 and resumes with
`after`, so memory stays bounded and nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from chat.observability import metrics
from chat.protocol import CLOSE_TOO_SLOW

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
# Sends a frame before returning; False when it cannot now (then `SendText` is used).
SendNow = Callable[[str], bool]
CloseSocket = Callable[[int], Coroutine[Any, Any, None]]
PendingBytes = Callable[[], int]


class Outbox:
    """Outgoing frames of one member's connection, written in order by one writer task.
    `cursor` is the last room seq queued to it."""

    # One per open socket: no instance dictionary.
    __slots__ = (
        "_close",
        "_max_bytes",
        "_queue",
        "_queued_bytes",
        "_send",
        "_send_now",
        "_sending",
        "_transport_pending",
        "_writer",
        "closing",
        "cursor",
        "label",
        "user_id",
    )

    def __init__(
        self,
        *,
        send: SendText,
        close: CloseSocket,
        max_bytes: int,
        transport_pending: PendingBytes | None = None,
        send_now: SendNow | None = None,
        label: str = "",
        user_id: str = "",
    ) -> None:
        self._send = send
        # When the server can take a frame at once (daphne: config.asgi), a frame pushed while
        # nothing waits before it goes straight out, with no writer task woken for it.
        self._send_now = send_now
        self._sending = False  # the writer is in the middle of a send
        self._close = close
        self._max_bytes = max_bytes
        self._transport_pending = transport_pending
        self._queue: deque[str] | None = None  # made when a frame first has to wait
        self._queued_bytes = 0
        self._writer: asyncio.Task[None] | None = None  # running while frames wait
        self.closing = False
        self.cursor = 0
        self.label = label
        # Whose connection this is (the protocol's user id): a removed person's are closed.
        self.user_id = user_id

    @property
    def max_bytes(self) -> int:
        """The bound of this connection's send buffer (CHAT_SEND_BUFFER_BYTES)."""
        return self._max_bytes

    def push(self, frame: str) -> bool:
        """Queue a frame; False (and the connection closes with 4008) when over the bound."""
        if self.closing:
            return False
        size = len(frame)
        pending = self._transport_pending() if self._transport_pending is not None else 0
        backlog = self._queued_bytes + pending
        # A lone frame is always taken (a big `welcome` must not loop a client through
        # close-and-resume); the bound is about a backlog the client does not read.
        if backlog and backlog + size > self._max_bytes:
            logger.warning(
                "Closing %s: send buffer over %d bytes (queued %d, transport %d)",
                self.label,
                self._max_bytes,
                self._queued_bytes,
                pending,
            )
            self.close_soon(CLOSE_TOO_SLOW)
            return False
        if self._send_now is not None and not self._queue and not self._sending:
            try:
                if self._send_now(frame):
                    return True
            except Exception as err:
                self._stop_writing(err)
                return False
        if self._queue is None:
            self._queue = deque()
        self._queue.append(frame)
        self._queued_bytes += size
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name=f"writer {self.label}")
        return True

    def close_soon(self, code: int) -> None:
        """Stop sending and close the socket with `code` after what is already written."""
        if self.closing:
            return
        self.closing = True
        metrics.socket_closed(code)
        self._queue = None
        self._queued_bytes = 0
        task = asyncio.create_task(self._close(code), name=f"close {self.label}")
        task.add_done_callback(_log_failure)

    async def _write_loop(self) -> None:
        """Write what waits, in order, then end: the next frame that has to wait starts a new
        writer (no await between the queue found empty and the writer let go)."""
        try:
            while self._queue and not self.closing:
                frame = self._queue.popleft()
                self._queued_bytes -= len(frame)
                self._sending = True
                try:
                    await self._send(frame)
                except Exception as err:
                    self._stop_writing(err)
                    return
                finally:
                    self._sending = False
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
            if not self._queue:
                self._queue = None

    def _stop_writing(self, err: Exception) -> None:
        # The client went away while we wrote ("Attempt to send on a closed protocol"): not
        # an error of ours. Stop writing; the disconnect that follows makes the member leave.
        logger.debug("Stopped writing to %s: %r", self.label, err)
        self.closing = True
        self._queue = None
        self._queued_bytes = 0

    async def stop(self) -> None:
        """Stop the writer (the socket is gone). Never raises: whatever state the writer is
        in, the caller must go on to leave the room (a raise here once left ghost members)."""
        self.closing = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.cancel()
        try:
            await writer
        except asyncio.CancelledError:
            # Ours, unless the task running stop() is itself being cancelled: then pass it on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception as err:
            logger.debug("Writer of %s had failed: %r", self.label, err)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Closing a socket failed: %r", task.exception())
