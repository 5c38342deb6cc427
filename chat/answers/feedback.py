"""Feedback on answers, the same on every transport (WebSocket `feedback`, its HTTP POST):
stored first (`chat.history.feedback`), then the answer's new counts go to the room as an
`answer.feedback` event, so every member on every worker sees them, and a resume, an SSE
replay and a `welcome` hold them too."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from chat import protocol, storage
from chat.answers.admission import POST_PATIENCE_SECONDS, UNAVAILABLE
from chat.history import feedback
from chat.identity import Identity
from chat.protocol import ProtocolError
from chat.realtime.backends import store_unavailable
from chat.realtime.log import RoomLog, append_patiently

db = database_sync_to_async
logger = logging.getLogger(__name__)


class AnswerFeedback:
    """People's 👍 / 👎, for this worker."""

    def __init__(self, *, log: RoomLog) -> None:
        self._log = log

    async def give(
        self, room: str, identity: Identity, command: protocol.Feedback
    ) -> feedback.Counts:
        """Store `identity`'s feedback and tell the room the counts (only when they moved).
        Refused `not_found` where the answer is not one of this room's or the room is not
        one `identity` may read."""
        counts = await db(feedback.set_feedback)(room, identity, command.answer_id, command.value)
        if not counts.changed:
            return counts
        event = protocol.answer_feedback_event(
            answer_id=counts.answer_id, up=counts.up, down=counts.down, rev=counts.rev
        )
        try:
            seq = await append_patiently(self._log, room, event, within=POST_PATIENCE_SECONDS)
        except Exception as err:
            if not store_unavailable(err):
                raise
            # Stored, but the room was not told: it sees the counts with the next change, or
            # in a `welcome` seeded from the database.
            raise ProtocolError("unavailable", UNAVAILABLE, retry_after=2.0) from err
        if seq is not None:
            await db(storage.touch_room)(room, seq)
        return counts
