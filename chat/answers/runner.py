"""Runs answers in rooms: each answer is its own asyncio task, owned by the worker that got the
ask. It stores the answer, appends its events to the room log, and ends it exactly once
(`complete`, `cancelled`, `failed` or `interrupted`), storing what the room saw."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol, storage
from chat.answers.assistant import Assistant
from chat.answers.events import AnswerDelta, AnswerEnd, AnswerError, RetrievalFinished
from chat.answers.publisher import DeltaPublisher
from chat.background import start_detached
from chat.identity import Identity
from chat.llm.base import ChatMessage
from chat.protocol import AnswerStatus, ProtocolError
from chat.realtime.coordination import Coordinator
from chat.realtime.log import RoomLog

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 2.0

db = database_sync_to_async


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(slots=True)
class _Running:
    room: str
    asker_id: str
    task: asyncio.Task[None] | None = None
    start_seq: int | None = None
    cancel_requested: bool = False
    shutdown: bool = False
    sources: list[dict[str, Any]] = field(default_factory=list)


class AnswerRunner:
    """Starts, cancels and finishes the answers owned by this worker."""

    def __init__(
        self,
        *,
        log: RoomLog,
        coordinator: Coordinator,
        assistant_for_room: Any,
        control_channel: str,
    ) -> None:
        self._log = log
        self._coordinator = coordinator
        self._assistant_for_room = assistant_for_room
        self.control_channel = control_channel
        self._running: dict[str, _Running] = {}
        # Checkpoint writes in flight (a reference keeps each task alive until it is done).
        self._background: set[asyncio.Task[None]] = set()

    def running_ids(self) -> list[str]:
        return list(self._running)

    async def ask(self, room: str, identity: Identity, ask: protocol.Ask) -> str | None:
        """Post a question and start its answer; the question's id, or None for a repeat of
        a `client_id` already asked (nothing is asked twice)."""
        answer_id = new_id("a")
        reserved = await self._coordinator.reserve_answer(
            room,
            identity.id,
            answer_id,
            max_per_user=settings.CHAT_MAX_ANSWERS_PER_USER,
            max_per_room=settings.CHAT_MAX_ANSWERS_PER_ROOM,
        )
        if not reserved:
            raise ProtocolError(
                "busy", "Too many answers are being written; wait for one to finish."
            )
        started = False
        try:
            question, created = await db(storage.create_question)(
                room,
                message_id=new_id("q"),
                identity=identity,
                text=ask.text,
                client_id=ask.client_id,
            )
            if not created:
                return None
            seq = await self._log.append(
                room,
                protocol.question_event(
                    id=question.id,
                    user=identity.to_wire(),
                    text=question.text,
                    created=storage.iso(question.created),
                    client_id=ask.client_id,
                ),
            )
            if seq is not None:
                await db(storage.question_posted)(question.id, room, seq)
            running = _Running(room=room, asker_id=identity.id)
            self._running[answer_id] = running
            # Detached: the answer outlives the frame or request that asked it.
            running.task = start_detached(
                self._run(answer_id, question.id, question.text, running),
                name=f"answer {answer_id}",
            )
            started = True
            return question.id
        finally:
            if not started:
                await self._coordinator.release_answer(room, identity.id, answer_id)

    async def cancel(self, room: str, identity: Identity, answer_id: str) -> None:
        """Stop an answer for its asker (or staff), wherever it runs."""
        info = await db(storage.answer_info)(answer_id)
        if info is None or info["room"] != room:
            raise ProtocolError("not_found", "There is no such answer in this room.")
        if info["asker_id"] != identity.id and not identity.is_staff:
            raise ProtocolError("forbidden", "Only the person who asked can stop this answer.")
        if info["status"] != "streaming":
            return  # Already ended: its answer.end is (or was) on its way to everyone.
        if self.cancel_local(answer_id):
            return
        channel = await self._coordinator.owner_channel(answer_id)
        if channel is not None:
            from channels.layers import get_channel_layer

            layer = get_channel_layer()
            if layer is None:
                raise RuntimeError("cancelling across workers needs a channel layer")
            await layer.send(channel, {"type": "answer.cancel", "answer_id": answer_id})
            return
        # Nobody owns it any more (its worker died): end it now rather than leave it hanging.
        await self.interrupt_orphan(room, answer_id, status="cancelled")

    def cancel_local(self, answer_id: str) -> bool:
        running = self._running.get(answer_id)
        if running is None or running.task is None:
            return False
        running.cancel_requested = True
        running.task.cancel()
        return True

    async def _run(
        self, answer_id: str, question_id: str, question: str, running: _Running
    ) -> None:
        room = running.room
        publisher = DeltaPublisher(lambda text: self._append_delta(room, answer_id, text))
        status: AnswerStatus = "complete"
        error: dict[str, str] | None = None
        usage: dict[str, int] | None = None
        started = False
        # The conversation so far is read while the answer is being set up, not after.
        history_task = asyncio.ensure_future(self._history(room, question_id))
        try:
            await self._coordinator.claim(
                answer_id,
                control_channel=self.control_channel,
                lease_seconds=settings.CHAT_LEASE_SECONDS,
            )
            await db(storage.create_answer)(room, answer_id=answer_id, question_id=question_id)
            seq = await self._log.append(
                room,
                protocol.answer_start_event(
                    id=answer_id, question_id=question_id, created=storage.iso_now()
                ),
            )
            started = True
            running.start_seq = seq
            assistant: Assistant = await self._assistant_for_room(room)
            history = await history_task
            events = assistant.astream_events(question, history=history)
            last_checkpoint = time.monotonic()
            try:
                async for event in events:
                    if isinstance(event, RetrievalFinished):
                        running.sources = [s.to_wire() for s in event.sources]
                        await self._log.append(
                            room,
                            protocol.answer_sources_event(
                                answer_id=answer_id, sources=running.sources
                            ),
                        )
                    elif isinstance(event, AnswerDelta):
                        publisher.add(event.text)
                        if time.monotonic() - last_checkpoint > CHECKPOINT_SECONDS:
                            last_checkpoint = time.monotonic()
                            # In the background: the stream must not wait for the database.
                            self._checkpoint(answer_id, publisher.text)
                    elif isinstance(event, AnswerEnd):
                        if event.usage is not None:
                            usage = {
                                "prompt_tokens": event.usage.prompt_tokens,
                                "completion_tokens": event.usage.completion_tokens,
                            }
                    elif isinstance(event, AnswerError):
                        status = "failed"
                        error = event.error.as_dict()
            finally:
                # Closing the event stream closes the LLM's HTTP response (cancel or not).
                await events.aclose()
        except asyncio.CancelledError:
            history_task.cancel()
            task = asyncio.current_task()
            if running.cancel_requested and not running.shutdown and task is not None:
                task.uncancel()  # Our own cancel request, handled here by ending the answer.
                status, error = "cancelled", None
            else:
                status = "interrupted"
                error = {"code": "interrupted", "message": "The server stopped this answer."}
                await self._finish(answer_id, running, publisher, status, error, usage, started)
                raise
        except Exception as err:
            history_task.cancel()
            logger.exception("Answer %s failed unexpectedly", answer_id)
            status = "failed"
            error = {"code": "internal", "message": f"The answer failed: {type(err).__name__}."}
        await self._finish(answer_id, running, publisher, status, error, usage, started)

    async def _finish(
        self,
        answer_id: str,
        running: _Running,
        publisher: DeltaPublisher,
        status: AnswerStatus,
        error: dict[str, str] | None,
        usage: dict[str, int] | None,
        started: bool,
    ) -> None:
        """Store the end, then append exactly one `answer.end` with the text the room saw."""
        room = running.room
        try:
            try:
                await publisher.drain()
            except Exception:
                logger.exception("Could not append the last deltas of %s", answer_id)
            text = publisher.text
            if started:
                stored = True
                try:
                    stored = await db(storage.finish_answer)(
                        answer_id,
                        status=status,
                        text=text,
                        sources=running.sources,
                        usage=usage,
                        error=error,
                        seq=running.start_seq,
                    )
                except Exception:
                    logger.exception("Could not store the end of %s", answer_id)
                if stored:
                    seq = await self._log.append(
                        room,
                        protocol.answer_end_event(
                            answer_id=answer_id, status=status, text=text, error=error, usage=usage
                        ),
                    )
                    if seq is not None:
                        await db(storage.set_end_seq)(answer_id, seq, room)
        except Exception:
            logger.exception("Could not finish answer %s", answer_id)
        finally:
            self._running.pop(answer_id, None)
            await self._coordinator.disown(answer_id)
            await self._coordinator.release_answer(room, running.asker_id, answer_id)

    def _checkpoint(self, answer_id: str, text: str) -> None:
        task = asyncio.create_task(db(storage.checkpoint_answer)(answer_id, text))
        self._background.add(task)
        task.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("Could not checkpoint an answer: %r", task.exception())

    async def _append_delta(self, room: str, answer_id: str, text: str) -> None:
        await self._log.append(room, protocol.answer_delta_event(answer_id=answer_id, text=text))

    async def _history(self, room: str, question_id: str) -> list[ChatMessage]:
        rows = await db(storage.context_messages)(
            room, before_id=question_id, limit=settings.CHAT_CONTEXT_MESSAGES
        )
        return [
            ChatMessage(role="user" if row.role == "user" else "assistant", content=row.text)
            for row in rows
        ]

    async def interrupt_orphan(
        self, room: str, answer_id: str, *, status: AnswerStatus = "interrupted"
    ) -> bool:
        """End an answer whose owner is gone (its lease expired), keeping the text the room
        saw; True if this call appended its `answer.end`."""
        live = await self._log.live_answer(room, answer_id)
        if live is None:
            info = await db(storage.answer_info)(answer_id)
            text = info["text"] if info else ""
        else:
            text = live.get("text", "")
        error = (
            {"code": "interrupted", "message": "The server writing this answer stopped."}
            if status == "interrupted"
            else None
        )
        stored = await db(storage.finish_answer)(answer_id, status=status, text=text, error=error)
        if not stored:
            if live is None:
                return False
            # The owner stored its end and died before appending it: append what it stored.
            info = await db(storage.answer_info)(answer_id)
            if info is None:
                return False
            status, text, error = info["status"], info["text"], info.get("error")
        seq = await self._log.append(
            room,
            protocol.answer_end_event(answer_id=answer_id, status=status, text=text, error=error),
        )
        if seq is not None:
            await db(storage.set_end_seq)(answer_id, seq, room)
        return seq is not None

    async def shutdown(self) -> None:
        """Worker stopping: end every running answer as `interrupted`."""
        tasks = []
        for running in self._running.values():
            running.shutdown = True
            if running.task is not None:
                running.task.cancel()
                tasks.append(running.task)
        await asyncio.gather(*tasks, return_exceptions=True)
