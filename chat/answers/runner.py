"""Runs answers in rooms: each answer is its own asyncio task, owned by the worker that got the
ask. It stores the answer, appends its events to the room log, handles cancel, and hands the
end to `chat.answers.ends`, which ends it exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import protocol, storage, versions
from chat.answers.assistant import Assistant
from chat.answers.ends import AnswerEnds, FinalEnd
from chat.answers.events import (
    AnswerDelta,
    AnswerEnd,
    AnswerError,
    RetrievalFinished,
    RetrievalStarted,
)
from chat.answers.prompt import Said, conversation
from chat.answers.publisher import DeltaPublisher
from chat.background import keep_until_done, start_detached
from chat.batching import MicroBatcher
from chat.identity import Identity
from chat.llm.base import ChatMessage
from chat.models import Message
from chat.observability import context, metrics
from chat.observability.answers import log_answer_end, observe_first_delta
from chat.observability.context import LLMCall
from chat.protocol import AnswerStatus, ProtocolError
from chat.realtime.coordination import AnswerSlot, Coordinator
from chat.realtime.log import RoomLog, append_patiently
from chat.rooms.configuration import AnswerSettings

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 2.0
# An answer of another worker is ended as orphaned only when seen without an owner in two looks
# at least this far apart (the reaper looks every half second, owners refresh every third of a
# lease, and every 0.1 s after a failed refresh): a live owner coming back from an outage
# re-takes its lease in between.
OWNERLESS_CONFIRM_SECONDS = 0.4
# Each look (every half second) covers the rooms where something happened lately (the runtime
# says which: an event, or a first member here; an answer whose worker dies stops in such a
# room) and those where it saw an answer without an owner; every room this worker serves is
# looked at once per REAP_ALL_SECONDS (an answer silent for long before its worker died, one
# seeded live from the database after Redis lost its data). Measured: a look at every room,
# twice a second, was 40 % of an idle worker's CPU with 1,000 rooms on the Redis log
# (docs/benchmarks.md, "Fixes", evening).
REAP_ALL_SECONDS = 5.0

# The most posted questions' seqs one database trip stores (`storage.questions_posted`).
POSTED_BATCH = 64

db = database_sync_to_async

# A room's settings -> the assistant that answers there (chat.answers.assistants.assistant_for).
AssistantFor = Callable[[AnswerSettings], Assistant]


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class QuestionToAnswer:
    """A stored, posted question whose answer admission has reserved a slot for. The answer's
    row is stored already: made with the question's, or, for a version after the first, by
    `chat.versions`."""

    slot: AnswerSlot  # in a room (never None here), its asker, the answer's id
    question_id: str
    question: str
    asker: str = ""  # the asker's name, as the conversation shows it to the LLM
    # The room's collection, model, prompt…, read with the question (blank: the server's).
    answer_settings: AnswerSettings = field(default_factory=AnswerSettings)
    # A version after the first (`chat.versions`); a continuation names the answer it
    # continues, and starts with that answer's text.
    version: int = 1
    continues: str | None = None
    prefix: str = ""
    # When it was asked (monotonic): the first delta's wait is measured from here.
    asked_at: float = field(default_factory=time.monotonic)
    # The question's seq, when admission just posted it: stored while the answer starts.
    question_seq: int | None = None
    # The conversation before the question, when admission read it with the question's
    # write (None: the answer reads it).
    context: list[Message] | None = None

    @property
    def answer_id(self) -> str:
        return self.slot.answer_id

    @property
    def room(self) -> str:
        if self.slot.room is None:  # admission only starts room answers here
            raise ValueError("a room answer needs a room")
        return self.slot.room


@dataclass(slots=True)
class RunningAnswer:
    """One answer while it runs here: everything its end is made of."""

    asked: QuestionToAnswer
    publisher: DeltaPublisher
    task: asyncio.Task[None] | None = None
    started: bool = False  # its row exists and its `answer.start` was appended
    start_seq: int | None = None
    cancel_requested: bool = False
    shutdown: bool = False
    # Ending now: a cancel landing in `_finish` would cut the end short (nothing appended).
    finishing: bool = False
    sources: list[dict[str, Any]] = field(default_factory=list)
    status: AnswerStatus = "complete"
    error: dict[str, str] | None = None
    usage: dict[str, int] | None = None
    # What its log lines carry: the request that asked it, its LLM call, its first delta.
    request_id: str = ""
    llm: LLMCall = field(default_factory=LLMCall)
    first_delta_seconds: float | None = None
    # How much of its text the database holds from the last checkpoint (characters).
    checkpointed: int = 0

    @property
    def answer_id(self) -> str:
        return self.asked.answer_id

    @property
    def room(self) -> str:
        return self.asked.room

    def fail(self, status: AnswerStatus, error: dict[str, str] | None) -> None:
        self.status, self.error = status, error

    def final_end(self) -> FinalEnd:
        return FinalEnd(
            status=self.status,
            text=self.publisher.text,
            error=self.error,
            usage=self.usage,
            sources=self.sources,
            start_seq=self.start_seq,
        )


class AnswerRunner:
    """Starts, cancels and finishes the answers owned by this worker."""

    def __init__(
        self,
        *,
        log: RoomLog,
        coordinator: Coordinator,
        assistant_for: AssistantFor,
        channel_layer: Any = None,
    ) -> None:
        self._log = log
        self._coordinator = coordinator
        self._assistant_for = assistant_for
        self._layer = channel_layer
        self.ends = AnswerEnds(log=log)
        # This worker's control channel, where cancels for its answers arrive; set by the
        # runtime when it starts, before any answer can be asked.
        self.control_channel = ""
        self._running: dict[str, RunningAnswer] = {}
        # Posted questions' seqs: those arriving while one trip to the database thread is
        # under way go together in the next (a burst of answers queued one by one on that
        # thread).
        self._posted: MicroBatcher[storage.Posted, None] = MicroBatcher(
            db(storage.questions_posted), max_batch=POSTED_BATCH
        )
        self._posting: set[asyncio.Task[None]] = set()
        # The reaper's view of Redis: whether its last look failed, and when it last came back.
        self._reaper_failing = False
        self._reaper_back_at = float("-inf")
        # Answers of other workers seen without an owner, and when first (monotonic); the
        # rooms they are in; when the reaper looks at every room next.
        self._ownerless_since: dict[str, float] = {}
        self._ownerless_rooms: set[str] = set()
        self._look_at_all_at = float("-inf")
        # Writes the text so far of every answer running here, every CHECKPOINT_SECONDS,
        # while any runs.
        self._checkpoints: asyncio.Task[None] | None = None

    def running_ids(self) -> list[str]:
        return list(self._running)

    def start(self, asked: QuestionToAnswer) -> None:
        """Run the answer to `asked` in a task of its own (admission reserved its slot; the
        slot is given back when the answer ends)."""
        answer_id = asked.answer_id
        running = RunningAnswer(
            asked=asked,
            publisher=DeltaPublisher(
                lambda text: self._append_delta(running, text),
                append_now=lambda text: self._append_delta_now(running, text),
            ),
            request_id=context.current().request_id,
        )
        self._running[answer_id] = running
        metrics.ANSWERS_RUNNING.inc()
        # Detached: the answer outlives the frame or request that asked it.
        running.task = start_detached(self._run(running), name=f"answer {answer_id}")
        if self._checkpoints is None or self._checkpoints.done():
            self._checkpoints = start_detached(self._checkpoint_loop(), name="checkpoints")

    async def cancel(self, room: str, identity: Identity, answer_id: str) -> None:
        """Stop an answer for its asker, the room's moderators or staff, wherever it runs."""
        info, access = await db(storage.answer_and_access)(answer_id, room, identity)
        access.check_enter()
        if info is None or info["room"] != room:
            raise ProtocolError("not_found", "There is no such answer in this room.")
        if info["asker_id"] != identity.id and not access.may_moderate:
            raise ProtocolError(
                "forbidden", "Only the person who asked, or a moderator, can stop this answer."
            )
        if info["status"] != "streaming":
            return  # Already ended: its answer.end is (or was) on its way to everyone.
        if self.cancel_local(answer_id):
            return
        channel = await self._coordinator.owner_channel(answer_id)
        if channel is not None:
            if self._layer is None:
                raise RuntimeError("cancelling across workers needs a channel layer")
            await self._layer.send(channel, {"type": "answer.cancel", "answer_id": answer_id})
            return
        # Nobody owns it any more (its worker died): end it now rather than leave it hanging.
        await self.ends.interrupt_orphan(room, answer_id, status="cancelled")

    def cancel_local(self, answer_id: str) -> bool:
        """Cancel an answer running here; True if it runs here. A second cancel (a double
        click, two workers' messages) or one that comes while the answer is ending does
        nothing more: the end under way is the answer's one end."""
        running = self._running.get(answer_id)
        if running is None or running.task is None:
            return False
        if not (running.cancel_requested or running.finishing):
            running.cancel_requested = True
            running.task.cancel()
        return True

    async def _run(self, running: RunningAnswer) -> None:
        asked = running.asked
        # Every line logged for this answer (and its LLM call) says which it is.
        context.bind(
            room=asked.room,
            answer_id=asked.answer_id,
            user_id=asked.slot.user_id,
            request_id=running.request_id,
        )
        running.llm = context.start_llm_call()
        # The bookkeeping of the answer's start (its row, its lease, `answer.start`) runs while
        # the answer searches: only what reaches the room waits for it (`_stream`).
        begin = asyncio.ensure_future(self._begin(running))
        try:
            history = await self._history(asked)
            await self._stream(running, history, begin)
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            _log_start_failure(running, await _settled(begin))
            task = asyncio.current_task()
            if running.cancel_requested and not running.shutdown and task is not None:
                task.uncancel()  # Our own cancel request, handled here by ending the answer.
                running.fail("cancelled", None)
            else:
                running.fail(
                    "interrupted",
                    {"code": "interrupted", "message": "The server stopped this answer."},
                )
                await self._finish(running)
                raise
        except Exception as err:
            failure = await _settled(begin)
            if failure is not err:
                _log_start_failure(running, failure)
            logger.exception("Answer %s failed unexpectedly", running.answer_id)
            running.fail(
                "failed",
                {"code": "internal", "message": f"The answer failed: {type(err).__name__}."},
            )
        await self._finish(running)

    async def _begin(self, running: RunningAnswer) -> None:
        """Own the answer (a lease), append its `answer.start`; its question's seq is stored
        meanwhile. Its row exists already, so nothing here waits for the database."""
        asked = running.asked
        if asked.question_seq is not None:
            posted = storage.Posted(
                message_id=asked.question_id, room_name=asked.room, seq=asked.question_seq
            )
            task = start_detached(self._posted.submit(posted), name=f"posted {posted.message_id}")
            # Its failure (the database away) costs the row its seq, which only redacting by
            # seq and the history's seqs read: the answer goes on, and the failure is logged.
            keep_until_done(self._posting, task, what=f"storing the seq of {posted.message_id}")
        await self._coordinator.claim(
            asked.answer_id,
            control_channel=self.control_channel,
            lease_seconds=settings.CHAT_LEASE_SECONDS,
        )
        running.start_seq = await self._append(
            asked.room,
            protocol.answer_start_event(
                id=asked.answer_id,
                question_id=asked.question_id,
                created=storage.iso_now(),
                version=asked.version,
                continues=asked.continues,
            ),
        )
        running.started = True
        if asked.prefix:
            # A continuation: its first delta is the text it continues, so that its deltas
            # join into its whole text, as every answer's do.
            running.publisher.add(asked.prefix)

    async def _stream(
        self, running: RunningAnswer, history: list[ChatMessage], begin: asyncio.Future[None]
    ) -> None:
        """The assistant's events into the room log, and into the running answer's record.
        Each event the room sees waits for `begin` (`answer.start` first, exactly once)."""
        asked = running.asked
        events = self._assistant_for(asked.answer_settings).astream_events(
            asked.question, history=history, asker=asked.asker, partial=asked.prefix
        )
        deltas = 0
        begun = False
        try:
            async for event in events:
                if isinstance(event, RetrievalStarted):
                    continue
                if not begun:
                    # Raises what stopped the start, if anything. Shielded: a cancel of the
                    # answer must not cut its start in the middle (`_settled` waits for it).
                    await asyncio.shield(begin)
                    begun = True
                if isinstance(event, RetrievalFinished):
                    running.sources = [s.to_wire() for s in event.sources]
                    await self._append(
                        asked.room,
                        protocol.answer_sources_event(
                            answer_id=asked.answer_id,
                            sources=running.sources,
                            query=event.query,
                            question_id=asked.question_id,
                        ),
                    )
                elif isinstance(event, AnswerDelta):
                    deltas += 1
                    running.publisher.add(event.text)
                elif isinstance(event, AnswerEnd):
                    if event.usage is not None:
                        running.usage = event.usage.to_wire()
                        metrics.PROMPT_TOKENS.inc(event.usage.prompt_tokens)
                        metrics.COMPLETION_TOKENS.inc(event.usage.completion_tokens)
                elif isinstance(event, AnswerError):
                    running.fail("failed", event.error.as_dict())
        finally:
            # Counted once per answer: a counter's lock per delta was measurable at load.
            metrics.DELTAS.inc(deltas)
            # Closing the event stream closes the LLM's HTTP response (cancel or not).
            await events.aclose()

    async def _finish(self, running: RunningAnswer) -> None:
        """Append the last deltas, then end the answer once with the text the room saw, and
        give its slot back."""
        answer_id, room = running.answer_id, running.room
        running.finishing = True
        try:
            try:
                await running.publisher.drain()
            except Exception:
                logger.exception("Could not append the last deltas of %s", answer_id)
            if running.started:
                await self.ends.end(room, answer_id, running.final_end())
            else:
                # Its start never reached the room: nobody saw it. Its row goes, so that the
                # question is free for another version.
                await db(versions.forget_unstarted)(answer_id)
        except Exception:
            logger.exception("Could not finish answer %s", answer_id)
        finally:
            self._running.pop(answer_id, None)
            metrics.ANSWERS_RUNNING.dec()
            log_answer_end(
                answer_id,
                status=running.status,
                error_code=running.error["code"] if running.error else None,
                characters=len(running.publisher.text),
                first_delta_seconds=running.first_delta_seconds,
                llm=running.llm,
            )
            await self._coordinator.disown(answer_id)
            await self._coordinator.release_answer(running.asked.slot)

    async def _checkpoint_loop(self) -> None:
        """Every CHECKPOINT_SECONDS, while answers run here, store the text so far of those
        that grew, all in one database trip (one per answer was a thread hop and a commit
        each, at 100 answers a measurable share of the worker's CPU). In a task of its own:
        an answer's stream never waits for the database."""
        while self._running:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            texts: dict[str, str] = {}
            for answer_id, running in list(self._running.items()):
                text = running.publisher.text
                if running.started and not running.finishing and len(text) > running.checkpointed:
                    texts[answer_id] = text
                    running.checkpointed = len(text)
            if not texts:
                continue
            try:
                await db(storage.checkpoint_answers)(texts)
            except Exception:
                logger.exception("Checkpoint of %d answers failed", len(texts))

    async def _append(self, room: str, event: dict[str, Any]) -> int | None:
        """Append an event of a running answer, riding out a room-log outage (Redis away)
        for CHAT_LOG_OUTAGE_SECONDS: the answer's worker and its LLM are alive, so the answer
        goes on, and its deltas wait in its publisher meanwhile."""
        return await append_patiently(
            self._log, room, event, within=settings.CHAT_LOG_OUTAGE_SECONDS
        )

    async def _append_delta(self, running: RunningAnswer, text: str) -> None:
        seq = await self._append(
            running.room, protocol.answer_delta_event(answer_id=running.answer_id, text=text)
        )
        self._appended_delta(running, seq)

    def _append_delta_now(self, running: RunningAnswer, text: str) -> None:
        """The delta appended before returning, or `AppendsLater` (RoomLog.append_now)."""
        seq = self._log.append_now(
            running.room, protocol.answer_delta_event(answer_id=running.answer_id, text=text)
        )
        self._appended_delta(running, seq)

    def _appended_delta(self, running: RunningAnswer, seq: int | None) -> None:
        if seq is not None and running.first_delta_seconds is None:
            running.first_delta_seconds = time.monotonic() - running.asked.asked_at
            if not running.asked.prefix:  # a continuation's first delta is the text it had
                observe_first_delta(running.first_delta_seconds, running.llm)

    async def _history(self, asked: QuestionToAnswer) -> list[ChatMessage]:
        """The room's conversation before the question, with who said what, bounded by
        CHAT_CONTEXT_MESSAGES and CHAT_CONTEXT_CHARS (read with the question, or now)."""
        rows = asked.context
        if rows is None:
            rows = await db(storage.context_messages)(
                asked.room, before_id=asked.question_id, limit=settings.CHAT_CONTEXT_MESSAGES
            )
        said = [
            Said(text=row.text, author=None if row.role == "assistant" else row.user_name)
            for row in rows
        ]
        return conversation(said, max_chars=settings.CHAT_CONTEXT_CHARS)

    async def reap_orphans(self, rooms: list[str], *, lately: list[str] | None = None) -> None:
        """End the answers whose worker died (their lease expired) in these rooms: all of
        them once per REAP_ALL_SECONDS, in between those of `lately` (None: all) and those
        where an answer was seen without an owner (see REAP_ALL_SECONDS).

        Not for a whole lease after Redis came back (as this reaper saw it: its looks failed,
        then one succeeded): while Redis was away every lease expired, and the owners, alive,
        re-take theirs at their next refresh, a third of a lease after Redis is back. So an
        answer survives an outage, and only the dead lose theirs."""
        now = time.monotonic()
        every = lately is None or now >= self._look_at_all_at
        if lately is not None and not every:
            rooms = list(dict.fromkeys([*lately, *self._ownerless_rooms]))
        if not rooms:
            return
        local = set(self._running)
        orphans: list[tuple[str, str]] = []
        try:
            for room, answer_ids in (await self._log.live_answers_in(rooms)).items():
                for answer_id in answer_ids:
                    if answer_id in local:
                        continue
                    if await self._coordinator.owner_channel(answer_id) is None:
                        orphans.append((room, answer_id))
        except Exception:
            self._reaper_failing = True
            raise
        if self._reaper_failing:  # this look is the first to reach Redis again
            self._reaper_failing = False
            self._reaper_back_at = now
        # Seen ownerless twice, the looks far enough apart that a live owner, refreshing every
        # third of a lease (every REFRESH_RETRY after a failure), would have refreshed.
        if every:
            self._look_at_all_at = now + REAP_ALL_SECONDS
        # Every look covers the rooms of the answers seen ownerless before: `seen` is all of
        # them that still are.
        seen = {answer_id: self._ownerless_since.get(answer_id, now) for _, answer_id in orphans}
        self._ownerless_since = seen
        self._ownerless_rooms = {room for room, _ in orphans}
        if now - self._reaper_back_at < settings.CHAT_LEASE_SECONDS:
            return
        for room, answer_id in orphans:
            if now - seen[answer_id] < OWNERLESS_CONFIRM_SECONDS:
                continue
            if await self.ends.interrupt_orphan(room, answer_id):
                logger.warning("Answer %s lost its worker: interrupted", answer_id)

    async def repair_ended(self, rooms: list[str]) -> int:
        """Store the ends the room log holds for answers the database still has `streaming`
        (see `AnswerEnds.repair`)."""
        return await self.ends.repair(rooms, busy=set(self._running))

    async def shutdown(self) -> None:
        """Worker stopping: end every running answer as `interrupted`."""
        tasks = []
        for running in self._running.values():
            running.shutdown = True
            if running.task is not None:
                if not running.finishing:  # an answer ending already is let finish
                    running.task.cancel()
                tasks.append(running.task)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._checkpoints is not None:
            self._checkpoints.cancel()
        await self.ends.shutdown()


async def _settled(begin: asyncio.Future[None]) -> BaseException | None:
    """Wait until the answer's start is appended or has failed, through a cancel too: whether
    `answer.start` reached the room decides how the answer ends (`_finish`), and an append cut
    in the middle could leave a start nobody ends. Returns what stopped it, if anything."""
    while not begin.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([begin])
    return None if begin.cancelled() else begin.exception()


def _log_start_failure(running: RunningAnswer, failure: BaseException | None) -> None:
    if failure is not None:
        logger.error("The start of answer %s failed", running.answer_id, exc_info=failure)
