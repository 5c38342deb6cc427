"""A room member that is not a WebSocket: an SSE reader, or the `ask` command with `--room`.

It joins through `Membership` exactly as `chat.consumers.ChatConsumer` does (presence,
`welcome`, resume with `after`), behind the same bounded `Outbox`. The outbox's writer hands
each frame to a one-slot queue that the member's reader drains, so frames wait (and are counted
against the send-buffer bound) in the `Outbox`, and a reader too slow to keep up is ended with
4008 like a socket, to resume from its last seq.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Final

from django.conf import settings

from chat.background import detached
from chat.identity import Identity
from chat.observability import metrics
from chat.queues import items_or_idle
from chat.realtime.membership import Membership
from chat.realtime.outbox import Outbox, PendingBytes

logger = logging.getLogger(__name__)


class _Closed:
    """Put in the queue by `close_soon`: the stream ends after what is already read."""


_CLOSED: Final = _Closed()


class RoomMember:
    """One reader's membership of one room; iterate `frames()` to join, read and leave."""

    def __init__(
        self,
        membership: Membership,
        room: str,
        identity: Identity,
        *,
        after: int | None,
        transport_pending: PendingBytes | None = None,
        label: str = "",
        admitted_at: float | None = None,
        access: dict[str, Any] | None = None,
        room_info: dict[str, Any] | None = None,
        transport: str = "sse",
    ) -> None:
        self._membership = membership
        # How it is connected, for the open-connections metric: `sse` or `command`.
        self._open = metrics.CONNECTIONS_BY_TRANSPORT[transport]
        self.admitted_at = admitted_at  # see Membership.join
        self.access = access
        self.room = room
        self.identity = identity
        self.after = after
        self.room_info = room_info
        self.conn_id = secrets.token_hex(8)
        # The close code the hub asked for (4008 too slow, 1012 restart), once it did.
        self.close_code: int | None = None
        self._frames: asyncio.Queue[str | _Closed] = asyncio.Queue(maxsize=1)
        self.conn = Outbox(
            send=self._frames.put,
            close=self._close,
            max_bytes=settings.CHAT_SEND_BUFFER_BYTES,
            transport_pending=transport_pending,
            label=label or f"{room}/{identity.name}",
            user_id=identity.id,
        )

    async def frames(self, *, idle: float | None = None) -> AsyncGenerator[str | None, None]:
        """Join, then yield each frame (JSON text) from `welcome` on; None after `idle` seconds
        without one (time for a keep-alive). Ends when the hub closes the member; leaving
        happens in `finally`, so closing or cancelling the iterator leaves the room."""
        self._open.inc()
        try:
            # Joining may start long-lived tasks (a room log reader): not in the request's
            # context (chat.background).
            await detached(self._join())
            async with aclosing(items_or_idle(self._frames, end=_CLOSED, idle=idle)) as frames:
                async for frame in frames:
                    yield frame
        finally:
            # Runs on cancellation too (the client went away): each step is cheap and local.
            self._open.dec()
            await self._leave()

    async def _join(self) -> None:
        """The consumer's `connect`, after its checks."""
        await self._membership.join(
            self.room,
            self.identity,
            self.conn,
            conn_id=self.conn_id,
            after=self.after,
            admitted_at=self.admitted_at,
            access=self.access,
            room_info=self.room_info,
        )

    async def _leave(self) -> None:
        """The consumer's `disconnect`: drop the reader only; answers keep running."""
        await self._membership.leave(self.room, self.conn, conn_id=self.conn_id)

    async def _close(self, code: int) -> None:
        """`Outbox.close_soon`: end the stream. The frame waiting in the slot (if any) is
        dropped; the reader resumes after the last id it got, so nothing is lost."""
        self.close_code = code
        while not self._frames.empty():
            self._frames.get_nowait()
        self._frames.put_nowait(_CLOSED)
