"""Admission: the one path by which a question becomes an answer, whatever the transport
(WebSocket `ask`, `POST /api/rooms/<room>/questions`, `POST /api/ask`, `manage.py ask`), and
by which a person's plain message (`say`, `POST /api/rooms/<room>/messages`) enters a room.

In order: the asker's rate limit, an answer slot (per person, per room, per guest address, and
for the whole server), the stored question, its `question` event in the room log, and the
answer's task started. Whatever fails on the way gives the slot back; a refusal is a
`ProtocolError` the transport shows as it shows any other. The limits hold across workers: the
coordinator keeps them (in Redis, with several workers).

A `say` takes the same path without the answer: its own rate limit (per person), the stored
message, its `message` event. It never takes an answer slot.

Guests are counted by their client address too (the transport's, which is the proxy's
`X-Forwarded-For` when daphne runs with `--proxy-headers`): a guest can make a new identity at
will, an address cannot.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol, retrieval, storage, versions
from chat.answers.assistants import assistant_for
from chat.answers.direct import DirectAnswer, answer_events
from chat.answers.runner import AnswerRunner, QuestionToAnswer, new_id
from chat.batching import MicroBatcher
from chat.identity import Identity
from chat.observability import metrics
from chat.protocol import ProtocolError
from chat.realtime.backends import store_unavailable
from chat.realtime.coordination import AnswerSlot, Coordinator, SlotLimits
from chat.realtime.log import RoomLog, RoomLogUnavailable, append_patiently

db = database_sync_to_async


BUSY_MESSAGES = {
    "user": "You have too many answers being written; wait for one to finish.",
    "room": "Too many answers are being written in this room; wait for one to finish.",
    "address": "Too many answers are being written for guests at your address; wait, or log in.",
    "total": "The server is writing as many answers as it can; try again shortly.",
}


@dataclass(frozen=True, slots=True)
class Admitted:
    """What an `ask` created: the question (and its answer), or, for a repeated `client_id`,
    the question first asked with it (nothing new was asked)."""

    question_id: str
    answer_id: str | None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Said:
    """What a `say` created: the message, or, for a repeated `client_id`, the message first
    sent with it (nothing new was said)."""

    message_id: str
    duplicate: bool = False


@dataclass(slots=True)
class _Reserved:
    """An answer slot taken for an ask or a new version. Once its answer has started, the
    answer's task owns it; until then, whatever refuses the request gives it back."""

    slot: AnswerSlot
    started: bool = False


# The most asks' writes one trip to the database thread takes.
WRITE_BATCH = 32
# How long an ask or a say waits for the room log through a blip before it is refused.
POST_PATIENCE_SECONDS = 5.0
UNAVAILABLE = (
    "The room cannot be reached right now (the server lost its link to Redis); "
    "send it again in a moment."
)


@contextlib.asynccontextmanager
async def _refusing_outages() -> AsyncIterator[None]:
    """Redis being away (the coordinator's limits, the room log) refuses the request with
    `unavailable`, which the transport shows like any refusal, not as a server error."""
    try:
        yield
    except ProtocolError:
        raise
    except Exception as err:
        if not store_unavailable(err):
            raise
        raise ProtocolError("unavailable", UNAVAILABLE, retry_after=2.0) from err


class Admission:
    """Admits questions to rooms (and to no room), and people's messages, for this worker."""

    def __init__(
        self,
        *,
        runner: AnswerRunner,
        coordinator: Coordinator,
        log: RoomLog,
        room_is_empty: Callable[[str], bool] = lambda room: False,
    ) -> None:
        self._runner = runner
        self._coordinator = coordinator
        self._log = log
        # Whether a room has no conversation yet (`RoomHub.is_empty`): its question is then
        # searched as asked, never rewritten, so its embedding can start before its write.
        self._room_is_empty = room_is_empty
        # Asks' question writes: those arriving while one trip to the database thread is under
        # way go together in the next (a burst of questions queued one by one on that thread).
        self._writes: MicroBatcher[storage.QuestionToStore, storage.AskWritten] = MicroBatcher(
            db(storage.create_questions_in_context), max_batch=WRITE_BATCH
        )

    async def _take_ask_tokens(self, identity: Identity, address: str | None) -> None:
        """The ask rate limits: per person, and per address for guests."""
        buckets = [
            (
                f"ask:user:{identity.id}",
                settings.CHAT_ASK_RATE_PER_MINUTE,
                settings.CHAT_ASK_BURST,
                "You are asking too fast; try again shortly.",
            )
        ]
        if identity.is_guest and address:
            buckets.append(
                (
                    f"ask:address:{address}",
                    settings.CHAT_ADDRESS_ASK_RATE_PER_MINUTE,
                    settings.CHAT_ADDRESS_ASK_BURST,
                    "Guests at your address are asking too fast; try again shortly, or log in.",
                )
            )
        for key, per_minute, burst, message in buckets:
            wait = await self._coordinator.take_token(key, rate=per_minute / 60.0, burst=burst)
            if wait:
                metrics.RATE_LIMITED_ASKS.inc()
                raise ProtocolError("rate_limited", message, retry_after=wait)

    async def _post(self, room: str, message_id: str, event: dict[str, Any]) -> int | None:
        """Append a stored message's event, riding out a blip of the room log. If the log
        stays away, the stored row goes (it was never posted: sending it again with the same
        `client_id` posts it then) and the request is refused (`unavailable`)."""
        try:
            return await append_patiently(self._log, room, event, within=POST_PATIENCE_SECONDS)
        except RoomLogUnavailable:
            await db(storage.forget_unposted)(message_id)
            raise

    async def _reserve(self, slot: AnswerSlot) -> None:
        reservation = await self._coordinator.reserve_answer(
            slot,
            SlotLimits(
                per_user=settings.CHAT_MAX_ANSWERS_PER_USER,
                per_room=settings.CHAT_MAX_ANSWERS_PER_ROOM,
                per_address=settings.CHAT_MAX_ANSWERS_PER_ADDRESS,
                total=settings.CHAT_MAX_ANSWERS_RUNNING,
            ),
        )
        if reservation.limit is not None:
            raise ProtocolError("busy", BUSY_MESSAGES[reservation.limit])

    @contextlib.asynccontextmanager
    async def _answer_slot(
        self, room: str, identity: Identity, address: str | None
    ) -> AsyncIterator[_Reserved]:
        """The ask rate limits, then an answer slot, given back unless the answer started."""
        await self._take_ask_tokens(identity, address)
        reserved = _Reserved(self._slot(room, identity, address))
        await self._reserve(reserved.slot)
        try:
            yield reserved
        finally:
            if not reserved.started:
                await self._coordinator.release_answer(reserved.slot)

    def _start(self, reserved: _Reserved, asked: QuestionToAnswer) -> None:
        self._runner.start(asked)
        reserved.started = True

    def _slot(self, room: str | None, identity: Identity, address: str | None) -> AnswerSlot:
        return AnswerSlot(
            room=room,
            user_id=identity.id,
            answer_id=new_id("a"),
            address=address if identity.is_guest and address else None,
        )

    async def ask(
        self, room: str, identity: Identity, ask: protocol.Ask, *, address: str | None = None
    ) -> Admitted:
        """Post a question to `room` and start its answer (see the module docstring).
        `address`: the asker's client address, if the transport knows it."""
        async with _refusing_outages():
            return await self._ask(room, identity, ask, address)

    async def edit(
        self, room: str, identity: Identity, edit: protocol.Edit, *, address: str | None = None
    ) -> Admitted:
        """Post the asker's edited question, linked to the one it edits, and answer it: an
        `ask` in all else (the same limits, once per `client_id`)."""
        async with _refusing_outages():
            return await self._ask(
                room,
                identity,
                protocol.Ask(text=edit.text, client_id=edit.client_id),
                address,
                edits=edit.question_id,
            )

    async def new_version(
        self,
        room: str,
        identity: Identity,
        command: protocol.Regenerate | protocol.Continue,
        *,
        address: str | None = None,
    ) -> str:
        """Start a new version of an answer (`regenerate`, or `continue` one that stopped
        short) and return its id: the same limits as an `ask`; the checks and the row are
        `chat.versions.create_version`'s."""
        async with _refusing_outages(), self._answer_slot(room, identity, address) as reserved:
            version = await db(versions.create_version)(
                room,
                identity,
                command.answer_id,
                kind=command.type,
                new_answer_id=reserved.slot.answer_id,
            )
            self._start(
                reserved,
                QuestionToAnswer(
                    slot=reserved.slot,
                    question_id=version.question_id,
                    question=version.question,
                    asker=version.asker,
                    answer_settings=version.answer_settings,
                    version=version.version,
                    continues=version.continues,
                    prefix=version.prefix,
                ),
            )
            return version.answer_id

    async def _ask(
        self,
        room: str,
        identity: Identity,
        ask: protocol.Ask,
        address: str | None,
        *,
        edits: str | None = None,
    ) -> Admitted:
        asked_at = time.monotonic()
        async with self._answer_slot(room, identity, address) as reserved:
            if not settings.CHAT_REWRITE or self._room_is_empty(room):
                # Searched as asked: its embedding runs while the question is stored.
                retrieval.prefetch(ask.text)
            # The conversation before it comes back with the question's write (and its
            # answer's row): the answer needs it before it can search. Asks arriving together
            # share the trip.
            written = await self._writes.submit(
                storage.QuestionToStore(
                    room_name=room,
                    message_id=new_id("q"),
                    identity=identity,
                    text=ask.text,
                    client_id=ask.client_id,
                    edits=edits,
                    context_limit=settings.CHAT_CONTEXT_MESSAGES,
                    answer_id=reserved.slot.answer_id,
                )
            )
            if isinstance(written, Exception):
                raise written
            stored, context = written
            if not stored.created:
                return Admitted(question_id=stored.id, answer_id=None, duplicate=True)
            seq = await self._post(
                room,
                stored.id,
                protocol.question_event(
                    id=stored.id,
                    user=identity.to_wire(),
                    text=stored.text,
                    created=storage.iso(stored.created_at),
                    client_id=ask.client_id,
                    edits=edits,
                ),
            )
            # The answer's row was made with the question's; the question's seq is stored
            # while the answer starts.
            self._start(
                reserved,
                QuestionToAnswer(
                    slot=reserved.slot,
                    question_id=stored.id,
                    question=stored.text,
                    asker=identity.name,
                    answer_settings=stored.answer_settings,
                    asked_at=asked_at,
                    question_seq=seq,
                    context=context,
                ),
            )
            return Admitted(question_id=stored.id, answer_id=reserved.slot.answer_id)

    async def say(self, room: str, identity: Identity, say: protocol.Say) -> Said:
        """Post a person's plain message to `room`: stored, then its `message` event; refused
        (`not_found`) where they may not enter. It asks the assistant nothing."""
        async with _refusing_outages():
            return await self._say(room, identity, say)

    async def _say(self, room: str, identity: Identity, say: protocol.Say) -> Said:
        wait = await self._coordinator.take_token(
            f"say:user:{identity.id}",
            rate=settings.CHAT_SAY_RATE_PER_MINUTE / 60.0,
            burst=settings.CHAT_SAY_BURST,
        )
        if wait:
            metrics.RATE_LIMITED_SAYS.inc()
            raise ProtocolError(
                "rate_limited", "You are sending messages too fast; slow down.", retry_after=wait
            )
        stored = await db(storage.create_message)(
            room,
            message_id=new_id("m"),
            identity=identity,
            text=say.text,
            client_id=say.client_id,
        )
        if not stored.created:
            return Said(message_id=stored.id, duplicate=True)
        seq = await self._post(
            room,
            stored.id,
            protocol.message_event(
                id=stored.id,
                user=identity.to_wire(),
                text=stored.text,
                created=storage.iso(stored.created_at),
                client_id=say.client_id,
            ),
        )
        if seq is not None:
            await db(storage.question_posted)(stored.id, room, seq)
        return Said(message_id=stored.id)

    async def ask_direct(
        self, identity: Identity, ask: protocol.Ask, *, address: str | None = None
    ) -> DirectAnswer:
        """One question in no room: nothing stored, the answer streamed to the asker only; it
        counts against the asker's running answers, not a room's. Started at once: its task
        owns the slot and gives it back however the caller reads it."""
        await self._take_ask_tokens(identity, address)
        slot = self._slot(None, identity, address)
        await self._reserve(slot)
        answer = DirectAnswer(
            answer_events(assistant_for(), ask.text, answer_id=slot.answer_id),
            coordinator=self._coordinator,
            slot=slot,
        )
        answer.start()
        return answer
