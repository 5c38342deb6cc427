"""Typing notices: "someone is writing", told to the room's other members on every worker.

Ephemeral: not stored, without a seq, never replayed to a member who joins or resumes later.
The worker that got the notice pushes a `typing` frame to its own members of the room (not
back to the connection it came from) and sends it to the room's channel-layer group, the one
presence uses, which every worker serving the room is in; each other worker pushes it to its
own members. The copy that comes back to the sending worker through the group is skipped.
How often a connection may send one is the transport's business (chat.consumers).
"""

from __future__ import annotations

import logging
from typing import Any

from chat.protocol import dumps, typing_frame
from chat.realtime.hub import RoomHub
from chat.realtime.outbox import Outbox
from chat.realtime.presence import room_group

logger = logging.getLogger(__name__)

# The control message's type (chat.runtime's control loop dispatches on it).
NOTICE = "typing.notice"


class Typing:
    """This worker's side of typing notices."""

    def __init__(self, *, hub: RoomHub, layer: Any) -> None:
        self._hub = hub
        self._layer = layer
        self.control_channel = ""  # set by the runtime once the layer gave it one
        self._failing = False  # the channel layer refused the last notice (logged once)

    async def notify(self, room: str, user: dict[str, str], *, sender: Outbox) -> None:
        """`user` is typing in `room` (through the connection `sender`): tell everyone else.
        A notice the other workers cannot be sent (Redis away) is dropped: it is worth no
        error, let alone the sender's connection."""
        self._push(room, user, skip=sender)
        try:
            await self._layer.group_send(
                room_group(room),
                {"type": NOTICE, "room": room, "user": user, "origin": self.control_channel},
            )
        except Exception as err:
            if not self._failing:
                logger.warning("Typing notices reach this worker's members only: %r", err)
            self._failing = True
            return
        if self._failing:
            logger.warning("Typing notices reach every worker again")
            self._failing = False

    def deliver(self, message: dict[str, Any]) -> None:
        """A notice that came through the room's group: push it to this worker's members,
        unless this worker sent it (its members have it already)."""
        if message.get("origin") == self.control_channel:
            return
        user = message.get("user")
        if not isinstance(user, dict):
            return
        wire = {"id": str(user.get("id", "")), "name": str(user.get("name", ""))}
        self._push(str(message.get("room")), wire, skip=None)

    def _push(self, room: str, user: dict[str, str], *, skip: Outbox | None) -> None:
        outboxes = [outbox for outbox in self._hub.connections(room) if outbox is not skip]
        if not outboxes:
            return
        frame = dumps(typing_frame(user))
        for outbox in outboxes:
            outbox.push(frame)
