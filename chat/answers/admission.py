"""Admission: the one path by which a question becomes an answer, whatever the transport
(WebSocket `ask`, `POST /api/rooms/<room>/questions`, `POST /api/ask`, `manage.py ask`).

In order: the asker's rate limit, an answer slot (per person, per room), the stored question,
its `question` event in the room log, and the answer's task started. Whatever fails on the way
gives the slot back; a refusal is a `ProtocolError` the transport shows as it shows any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol, storage
from chat.answers.assistants import assistant_for
from chat.answers.direct import DirectAnswer, answer_events
from chat.answers.runner import AnswerRunner, QuestionToAnswer, new_id
from chat.identity import Identity
from chat.protocol import ProtocolError
from chat.ratelimit import BucketRegistry
from chat.realtime.coordination import AnswerSlot, Coordinator
from chat.realtime.log import RoomLog

db = database_sync_to_async


@dataclass(frozen=True, slots=True)
class Admitted:
    """What an `ask` created: the question (and its answer), or, for a repeated `client_id`,
    the question first asked with it (nothing new was asked)."""

    question_id: str
    answer_id: str | None
    duplicate: bool = False


class Admission:
    """Admits questions to rooms (and to no room) for this worker."""

    def __init__(self, *, runner: AnswerRunner, coordinator: Coordinator, log: RoomLog) -> None:
        self._runner = runner
        self._coordinator = coordinator
        self._log = log
        # Asks per person per minute, shared by all of a person's connections to this worker.
        self._asks = BucketRegistry(
            settings.CHAT_ASK_RATE_PER_MINUTE / 60.0, settings.CHAT_ASK_BURST
        )

    def _take_ask_token(self, identity: Identity) -> None:
        wait = self._asks.take(identity.id)
        if wait:
            raise ProtocolError(
                "rate_limited", "You are asking too fast; try again shortly.", retry_after=wait
            )

    async def _reserve(self, slot: AnswerSlot) -> None:
        reserved = await self._coordinator.reserve_answer(
            slot,
            max_per_user=settings.CHAT_MAX_ANSWERS_PER_USER,
            max_per_room=settings.CHAT_MAX_ANSWERS_PER_ROOM,
        )
        if not reserved:
            raise ProtocolError(
                "busy", "Too many answers are being written; wait for one to finish."
            )

    async def ask(self, room: str, identity: Identity, ask: protocol.Ask) -> Admitted:
        """Post a question to `room` and start its answer (see the module docstring)."""
        self._take_ask_token(identity)
        slot = AnswerSlot(room=room, user_id=identity.id, answer_id=new_id("a"))
        await self._reserve(slot)
        started = False
        try:
            stored = await db(storage.create_question)(
                room,
                message_id=new_id("q"),
                identity=identity,
                text=ask.text,
                client_id=ask.client_id,
            )
            if not stored.created:
                return Admitted(question_id=stored.id, answer_id=None, duplicate=True)
            seq = await self._log.append(
                room,
                protocol.question_event(
                    id=stored.id,
                    user=identity.to_wire(),
                    text=stored.text,
                    created=storage.iso(stored.created_at),
                    client_id=ask.client_id,
                ),
            )
            if seq is not None:
                await db(storage.question_posted)(stored.id, room, seq)
            self._runner.start(
                QuestionToAnswer(
                    slot=slot,
                    question_id=stored.id,
                    question=stored.text,
                    collection=stored.collection,
                )
            )
            started = True
            return Admitted(question_id=stored.id, answer_id=slot.answer_id)
        finally:
            if not started:
                await self._coordinator.release_answer(slot)

    async def ask_direct(self, identity: Identity, ask: protocol.Ask) -> DirectAnswer:
        """One question in no room: nothing stored, the answer streamed to the asker only; it
        counts against the asker's running answers, not a room's. Started at once: its task
        owns the slot and gives it back however the caller reads it."""
        self._take_ask_token(identity)
        slot = AnswerSlot(room=None, user_id=identity.id, answer_id=new_id("a"))
        await self._reserve(slot)
        answer = DirectAnswer(
            answer_events(assistant_for(), ask.text, answer_id=slot.answer_id),
            coordinator=self._coordinator,
            slot=slot,
        )
        answer.start()
        return answer
