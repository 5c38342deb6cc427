"""Moderation: what a room's owner, its moderators and staff do to what was said and to who is
there, the same on every transport (WebSocket `redact` / `remove`, their HTTP endpoints).

- Redacting takes a message's text out of the database first, then appends `message.redacted`
  to the room log, which from then on serves the message's events without their text to every
  reader on every worker (chat.realtime.redaction). An answer still being written is stopped.
- Removing someone stores the removal, then tells every worker serving the room (through the
  room's channel-layer group, which every such worker is in) to close that person's sockets
  and event streams there with 4003.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async

from chat import protocol, rooms, storage
from chat.answers.runner import AnswerRunner
from chat.identity import Identity
from chat.protocol import ProtocolError
from chat.realtime.log import RoomLog
from chat.realtime.presence import room_group

db = database_sync_to_async
logger = logging.getLogger(__name__)

# The control message every worker serving a room receives (chat.runtime's control loop).
EXPEL = "room.expel"
RECHECK = "room.recheck"


class Moderation:
    """The moderators' actions, for this worker."""

    def __init__(self, *, log: RoomLog, runner: AnswerRunner, layer: Any) -> None:
        self._log = log
        self._runner = runner
        self._layer = layer

    async def redact(self, room: str, moderator: Identity, command: protocol.Redact) -> str:
        """Redact the message `command` names; returns its id. Refused `not_found` /
        `forbidden` as the storage says; redacting twice is harmless."""
        redacted = await db(storage.redact_message)(
            room, moderator, message_id=command.id, seq=command.seq
        )
        seq = await self._log.append(room, protocol.message_redacted_event(id=redacted.id))
        if seq is not None:
            await db(storage.touch_room)(room, seq)
        if redacted.streaming:
            # Its text would go on being written (redacted as it is stored, but still paid
            # for): stop it. Already ending is fine.
            with contextlib.suppress(ProtocolError):
                await self._runner.cancel(room, moderator, redacted.id)
        logger.info("%s redacted %s in %s", moderator.id, redacted.id, room)
        return redacted.id

    async def remove(self, room: str, moderator: Identity, user_id: str) -> None:
        """Remove `user_id` from the room: stored, then their connections close everywhere."""
        await db(rooms.remove_member)(room, moderator, user_id)
        await self.expel(room, user_id)
        logger.info("%s removed %s from %s", moderator.id, user_id, room)

    async def set_role(self, room: str, by: Identity, user_id: str, role: str) -> None:
        """Give `user_id` a role (see `rooms.set_role`). Their open connections close (4003)
        and reconnect with their new rights, so a demotion takes effect at once."""
        before = await db(rooms.set_role)(room, by, user_id, role)
        if before != role:
            await self.expel(room, user_id)
        logger.info("%s made %s a %s of %s (was %s)", by.id, user_id, role, room, before)

    async def access_changed(self, room: str) -> None:
        """The room's visibility or guest rule changed: every worker closes (4003) the
        connections of people who may no longer enter it."""
        await self._layer.group_send(room_group(room), {"type": RECHECK, "room": room})

    async def expel(self, room: str, user_id: str) -> None:
        """Close `user_id`'s connections to `room` on every worker (4003)."""
        await self._layer.group_send(
            room_group(room), {"type": EXPEL, "room": room, "user_id": user_id}
        )
