"""Joining and leaving a room, the same for every kind of member (a WebSocket, an SSE reader,
the `ask` command): presence, then the hub's `welcome`, backlog and live events; on leaving,
only the member goes (answers keep running)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from chat import protocol
from chat.identity import Identity
from chat.protocol import dumps
from chat.realtime.coordination import Coordinator
from chat.realtime.hub import RoomHub
from chat.realtime.outbox import Outbox
from chat.realtime.presence import Presence

logger = logging.getLogger(__name__)


class Membership:
    """Makes members join and leave the rooms this worker serves."""

    def __init__(self, *, hub: RoomHub, coordinator: Coordinator, presence: Presence) -> None:
        self._hub = hub
        self._coordinator = coordinator
        self._presence = presence

    async def join(
        self,
        room: str,
        identity: Identity,
        outbox: Outbox,
        *,
        conn_id: str,
        after: int | None,
        room_info: dict[str, Any] | None = None,
    ) -> bool:
        """Make `outbox` a member of `room`: it gets a `welcome` (with the room's public
        settings, `room_info`, when the transport read them), then every event after it;
        True when it resumed from `after`. Nothing is written for a join: a room gets its
        database row with the first thing said in it."""
        await self._presence.watch_room(room)
        user = identity.to_wire()
        await self._coordinator.presence_add(room, conn_id, user)
        try:
            members = await self._coordinator.members(room)

            def welcome(seq: int, resumed: bool, history: list[dict[str, Any]]) -> str:
                return dumps(
                    protocol.welcome_frame(
                        room=room,
                        user=user,
                        seq=seq,
                        resumed=resumed,
                        history=history,
                        members=members,
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
            except Exception:
                logger.exception("Could not update presence of %s", outbox.label)
