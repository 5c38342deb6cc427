"""Joining and leaving a room, the same for every kind of member (a WebSocket, an SSE reader,
the `ask` command): presence, then the hub's `welcome`, backlog and live events; on leaving,
only the member goes (answers keep running)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol, rooms
from chat.identity import Identity
from chat.protocol import dumps
from chat.realtime.backends import store_unavailable
from chat.realtime.coordination import Coordinator
from chat.realtime.entry import MAX_BATCH
from chat.realtime.hub import RoomHub
from chat.realtime.outbox import Outbox
from chat.realtime.presence import Presence

logger = logging.getLogger(__name__)

# How long a removal is remembered here, for joins that passed the access check before it and
# reach the room after it: far longer than any join takes.
EXPELLED_MEMORY_SECONDS = 30.0


class Membership:
    """Makes members join and leave the rooms this worker serves."""

    def __init__(self, *, hub: RoomHub, coordinator: Coordinator, presence: Presence) -> None:
        self._hub = hub
        self._coordinator = coordinator
        self._presence = presence
        # (room, user id) -> when they were removed from the room (see EXPELLED_MEMORY_SECONDS).
        self._expelled: dict[tuple[str, str], float] = {}
        # Joins whose access is read again (see `_may_still_enter`), and the task reading them.
        self._rereads: list[tuple[str, Identity, asyncio.Future[bool]]] = []
        self._rereading: asyncio.Task[None] | None = None

    async def join(
        self,
        room: str,
        identity: Identity,
        outbox: Outbox,
        *,
        conn_id: str,
        after: int | None,
        admitted_at: float | None = None,
        access: dict[str, Any] | None = None,
        room_info: dict[str, Any] | None = None,
    ) -> bool:
        """Make `outbox` a member of `room`: it gets a `welcome` (with the room's public
        settings, `room_info`, when the transport read them), then every event after it;
        True when it resumed from `after`. Nothing is written for a join: a room gets its
        database row with the first thing said in it. `admitted_at` (`time.monotonic()`
        before the transport checked the person's access): a removal after it closes them.
        `access`: the welcome's `access` (protocol.access_info), if the transport knows it."""
        user = identity.to_wire()
        role = access.get("role") if access else None
        try:
            await self._presence.watch_room(room)
            # The member list shows each person's role in the room (owner, moderator, member).
            members = await self._coordinator.presence_join(
                room, conn_id, {**user, "role": role} if role else user
            )

            def welcome(seq: int, resumed: bool, history: list[dict[str, Any]]) -> str:
                return dumps(
                    protocol.welcome_frame(
                        room=room,
                        user=user,
                        seq=seq,
                        resumed=resumed,
                        history=history,
                        members=members,
                        access=access,
                        room_info=room_info,
                    )
                )

            resumed = await self._hub.join(
                room,
                outbox,
                after=after,
                history_limit=settings.CHAT_HISTORY_LENGTH,
                welcome=welcome,
            )
            await self._presence.changed(room)
            if admitted_at is not None and (
                self._expelled_since(room, outbox.user_id, admitted_at)
                or not await self._may_still_enter(room, identity, admitted_at)
            ):
                # Removed while this join was on its way (it passed the access check first).
                outbox.close_soon(protocol.CLOSE_REMOVED)
        except BaseException:
            # A join that fails half way must not leave a ghost in the member list.
            await self.leave(room, outbox, conn_id=conn_id)
            raise
        return resumed

    async def leave(self, room: str, outbox: Outbox, *, conn_id: str) -> None:
        """Drop the member only: closing a connection never cancels an answer. Presence is
        removed whatever happened to the outbox's writer (a failure there once left ghost
        members)."""
        self._hub.leave(room, outbox)
        try:
            await outbox.stop()
        finally:
            try:
                await self._coordinator.presence_remove(room, conn_id)
                await self._presence.changed(room)
            except Exception as err:
                if not store_unavailable(err):
                    logger.exception("Could not update presence of %s", outbox.label)
                else:  # The coordinator removes it once Redis is back, and tells the room.
                    logger.info("Presence of %s not told now (%s)", outbox.label, err)

    def expel(self, room: str, user_id: str) -> int:
        """Close `user_id`'s connections to `room` on this worker with 4003 (they were removed,
        or lost their access); how many. Joins still on their way are caught as they land."""
        now = time.monotonic()
        self._expelled = {
            key: when
            for key, when in self._expelled.items()
            if now - when < EXPELLED_MEMORY_SECONDS
        }
        self._expelled[(room, user_id)] = now
        closed = 0
        for outbox in self._hub.connections(room):
            if outbox.user_id == user_id:
                outbox.close_soon(protocol.CLOSE_REMOVED)
                closed += 1
        return closed

    async def recheck(self, room: str) -> int:
        """Close (4003) this worker's connections to `room` of people who may no longer enter
        it (it was made private, or closed to guests); how many."""
        outboxes = self._hub.connections(room)
        if not outboxes:
            return 0
        allowed = await database_sync_to_async(rooms.who_may_stay)(
            room, [outbox.user_id for outbox in outboxes]
        )
        closed = 0
        for outbox in outboxes:
            if outbox.user_id not in allowed:
                self.expel(room, outbox.user_id)
                closed += 1
        return closed

    async def _may_still_enter(self, room: str, identity: Identity, admitted_at: float) -> bool:
        """For a join whose access was read before this worker joined the room's group (the
        room's first connections here, or the first after it went idle): a removal, or a
        change of visibility, told to the group in between never reached this worker, so the
        access is read again. Joins to a room already watched here skip it; those waiting
        together are read in one batch (a reconnect storm lands in rooms new to the worker)."""
        since = self._presence.watching_since(room)
        if since is None or since <= admitted_at:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._rereads.append((room, identity, future))
        if self._rereading is None:
            self._rereading = asyncio.create_task(self._reread(), name="access rereads")
        return await future

    async def _reread(self) -> None:
        """Answer the waiting `_may_still_enter`s, a batch per trip to the database thread."""
        try:
            while self._rereads:
                batch, self._rereads = self._rereads[:MAX_BATCH], self._rereads[MAX_BATCH:]
                try:
                    verdicts = await database_sync_to_async(rooms.access_and_rooms)(
                        [(room, identity) for room, identity, _ in batch]
                    )
                except Exception as err:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                for (_, _, future), (access, _) in zip(batch, verdicts, strict=True):
                    if not future.done():  # its join may have been cancelled
                        future.set_result(access.may_enter)
        finally:
            self._rereading = None

    def _expelled_since(self, room: str, user_id: str, moment: float) -> bool:
        when = self._expelled.get((room, user_id))
        return when is not None and when >= moment
