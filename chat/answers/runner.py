"""Runs answers in rooms: each answer is its own asyncio task, owned by the worker that got the
ask. It stores the answer, appends its events to the room log, and ends it exactly once
(`complete`, `cancelled`, `failed` or `interrupted`), storing what the room saw: at once, or,
when the database is away, as soon as it is back (see `_end`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import Error as DatabaseError
from django.utils import timezone

from chat import protocol, storage
from chat.answers.assistant import Assistant
from chat.answers.events import AnswerDelta, AnswerEnd, AnswerError, RetrievalFinished
from chat.answers.publisher import DeltaPublisher
from chat.background import start_detached
from chat.dbretry import retry_write
from chat.identity import Identity
from chat.llm.base import ChatMessage
from chat.protocol import AnswerStatus, ProtocolError
from chat.realtime.coordination import Coordinator
from chat.realtime.log import RoomLog

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 2.0
# Members never wait longer than this for the database before they get an answer's end: a
# database that hangs (rather than refuses) would otherwise hold every end back with it.
END_STORE_WAIT = 3.0
# The repair of ends reads a room's whole view (the log keeps a few hundred messages at most),
# and looks at answers this recent (older ones have left the view of any active room).
WHOLE_VIEW = 10_000
REPAIR_LOOKBACK = timedelta(days=1)
# Rooms per database query of the repair.
REPAIR_BATCH = 500

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


@dataclass(frozen=True, slots=True)
class _End:
    """An answer's end: what its `answer.end` says and what its row stores."""

    status: AnswerStatus
    text: str
    error: dict[str, str] | None = None
    usage: dict[str, int] | None = None
    sources: list[dict[str, Any]] | None = None  # None: the row keeps its own
    start_seq: int | None = None  # the seq of its `answer.start`, stored with the end

    def row(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "text": self.text,
            "sources": self.sources,
            "usage": self.usage,
            "error": self.error,
            "seq": self.start_seq,
        }

    def event(self, answer_id: str) -> dict[str, Any]:
        return protocol.answer_end_event(
            answer_id=answer_id,
            status=self.status,
            text=self.text,
            error=self.error,
            usage=self.usage,
        )


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
        # Ends the room log holds that the database has not stored yet, being retried.
        self._storing: dict[str, asyncio.Task[None]] = {}

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
            if started:
                end = _End(
                    status=status,
                    text=publisher.text,
                    error=error,
                    usage=usage,
                    sources=running.sources,
                    start_seq=running.start_seq,
                )
                await self._end(room, answer_id, end)
        except Exception:
            logger.exception("Could not finish answer %s", answer_id)
        finally:
            self._running.pop(answer_id, None)
            await self._coordinator.disown(answer_id)
            await self._coordinator.release_answer(room, running.asker_id, answer_id)

    async def _end(self, room: str, answer_id: str, end: _End) -> tuple[bool | None, int | None]:
        """Store `end`, then append it. Returns `(stored, seq)`: `stored` is False when the
        answer had already ended (someone else stored theirs first; nothing is appended) and
        None when the database could not say; `seq` is the appended end's, or None.

        Exactly one end: the store is a conditional update from `streaming`, and the log
        refuses a second end. The store comes first, so that when the owner and a reaper both
        end an answer, the one whose end was stored is the one that appends it. But members do
        not wait on the database: when the store fails, or has not answered within
        END_STORE_WAIT, the end is appended anyway. The log's end is then what the room saw and
        what the database must hold: it is stored in the background as soon as the database is
        back (and, should this worker die first, another worker repairs the row from the log:
        `repair_ended`)."""
        store = asyncio.ensure_future(db(storage.finish_answer)(answer_id, **end.row()))
        stored: bool | None
        try:
            # Shielded: on a timeout the store goes on, and its outcome is awaited later.
            stored = await asyncio.wait_for(asyncio.shield(store), END_STORE_WAIT)
        except (DatabaseError, TimeoutError) as err:
            stored = None
            reason = str(err).strip() or f"no reply within {END_STORE_WAIT:.0f} s"
            logger.warning(
                "Could not store the end of answer %s (%s); the room gets it now, the "
                "database once it is back",
                answer_id,
                reason.splitlines()[0],
            )
        if stored is False:
            return False, None
        seq = await self._log.append(room, end.event(answer_id))
        if seq is None:
            if stored is None:
                # Someone else's end is in the log; whoever appended it stores it (or the
                # repair does, from the log).
                logger.warning("Answer %s had already ended in the room log", answer_id)
            return stored, None
        if stored:
            try:
                await db(storage.set_end_seq)(answer_id, seq, room)
                return True, seq
            except DatabaseError as err:
                logger.warning(
                    "Could not store the end seq of answer %s (%s); retrying", answer_id, err
                )
        self._store_later(room, answer_id, end, seq, store)
        return stored, seq

    def _store_later(
        self, room: str, answer_id: str, end: _End, seq: int, first: asyncio.Future[bool]
    ) -> None:
        """Store in the background the end the log holds at `seq`: retried with backoff
        until the database is back, for CHAT_DB_RETRY_SECONDS at most."""
        task = start_detached(
            self._store_logged_end(room, answer_id, end, seq, first),
            name=f"store end {answer_id}",
        )
        self._storing[answer_id] = task
        task.add_done_callback(functools.partial(self._stored, answer_id))

    async def _store_logged_end(
        self, room: str, answer_id: str, end: _End, seq: int, first: asyncio.Future[bool]
    ) -> None:
        failing_since = time.monotonic()
        # A first try still on its way (the database hangs) holds the database thread: let it
        # finish. Its outcome does not matter: the retried write below is safe to repeat.
        with contextlib.suppress(DatabaseError):
            await first
        what = f"the end of answer {answer_id}"
        write = functools.partial(
            storage.store_logged_end, answer_id, room_name=room, end_seq=seq, **end.row()
        )
        done, same = await retry_write(
            write,
            what=what,
            budget=settings.CHAT_DB_RETRY_SECONDS,
            failing_since=failing_since,
        )
        if done and not same:
            logger.error("Answer %s: the database holds another end than the room log", answer_id)

    def _stored(self, answer_id: str, task: asyncio.Task[None]) -> None:
        if self._storing.get(answer_id) is task:
            del self._storing[answer_id]
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            logger.error("Storing the end of answer %s failed", answer_id, exc_info=error)

    async def repair_ended(self, rooms: list[str]) -> int:
        """Store the ends the room log holds for answers the database still has `streaming`
        in these rooms: ends appended while the database was away whose worker died (or gave
        up) before it could store them. Returns how many it stored.

        Cheap: one indexed query per REPAIR_BATCH rooms; the log is read only for a room with
        such an answer that the log does not have live (live ones are the reaper's)."""
        busy = set(self._running) | set(self._storing)
        since = timezone.now() - REPAIR_LOOKBACK
        repaired = 0
        for first in range(0, len(rooms), REPAIR_BATCH):
            batch = rooms[first : first + REPAIR_BATCH]
            streaming = await db(storage.streaming_answers)(batch, since=since)
            for room, answer_ids in streaming.items():
                candidates = [a for a in answer_ids if a not in busy]
                if candidates:
                    live = set(await self._log.live_answers(room))
                    candidates = [a for a in candidates if a not in live]
                if candidates:
                    found = await self._repair_from_log(room, candidates)
                    repaired += sum(found.values())
        return repaired

    async def _repair_from_log(self, room: str, answer_ids: list[str]) -> dict[str, bool]:
        """For each of these answers that has ended in the room log's view: whether its end
        was stored now (False: the database held an end already)."""
        snapshot = await self._log.snapshot(room, WHOLE_VIEW)
        wanted = set(answer_ids)
        found: dict[str, bool] = {}
        for message in snapshot.history:
            status = message.get("status")
            if message["id"] not in wanted or status in (None, "streaming"):
                continue
            stored = await db(storage.repair_end)(
                message["id"],
                room_name=room,
                log_seq=snapshot.seq,
                status=status,
                text=message.get("text", ""),
                sources=message.get("sources"),
                usage=message.get("usage"),
                error=message.get("error"),
            )
            if stored:
                logger.warning(
                    "Answer %s: stored the end the room log holds (%s, %d characters); "
                    "its worker could not",
                    message["id"],
                    status,
                    len(message.get("text", "")),
                )
            found[message["id"]] = stored
        return found

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
        error = (
            {"code": "interrupted", "message": "The server writing this answer stopped."}
            if status == "interrupted"
            else None
        )
        live = await self._log.live_answer(room, answer_id)
        if live is None:
            # No longer being written, as far as the log knows, so no end can be appended. If
            # the log holds its end (appended while the database was away), the database must
            # say the same; else it keeps the text it saved.
            if answer_id in await self._repair_from_log(room, [answer_id]):
                return False
            info = await db(storage.answer_info)(answer_id)
            text = info["text"] if info else ""
            await db(storage.finish_answer)(answer_id, status=status, text=text, error=error)
            return False
        stored, seq = await self._end(room, answer_id, _End(status, live.get("text", ""), error))
        if stored is not False:
            return seq is not None
        # The owner stored its end and died before appending it: append what it stored.
        info = await db(storage.answer_info)(answer_id)
        if info is None:
            return False
        seq = await self._log.append(
            room,
            protocol.answer_end_event(
                answer_id=answer_id,
                status=info["status"],
                text=info["text"],
                error=info.get("error"),
            ),
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
        if self._storing:
            # The room log holds these ends: another worker's repair stores them once the
            # database is back (`repair_ended`).
            logger.warning(
                "Stopping with the ends of %d answers not stored yet: %s",
                len(self._storing),
                ", ".join(sorted(self._storing)),
            )
            stores = list(self._storing.values())
            for task in stores:
                task.cancel()
            await asyncio.gather(*stores, return_exceptions=True)
