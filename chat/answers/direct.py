"""One question outside any room (`POST /api/ask`, `manage.py ask` without `--room`): the
assistant's events in the room protocol's shapes, with no seq, nothing stored, nobody else
watching. Closing the stream aborts the answer: it belongs to this caller only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from chat import protocol
from chat.answers.assistant import Assistant
from chat.answers.events import AnswerDelta, AnswerEnd, AnswerError, RetrievalFinished
from chat.background import start_detached
from chat.observability import context, metrics
from chat.observability.answers import log_answer_end, observe_first_delta
from chat.queues import items_or_idle
from chat.realtime.coordination import AnswerSlot, Coordinator

logger = logging.getLogger(__name__)


async def answer_events(
    assistant: Assistant, question: str, *, answer_id: str
) -> AsyncGenerator[dict[str, Any], None]:
    """`answer.sources` (unless retrieval failed), `answer.delta`s, then exactly one
    `answer.end` (`complete` or `failed`), as protocol event dicts without seq."""
    parts: list[str] = []
    async with aclosing(assistant.astream_events(question)) as events:
        async for event in events:
            if isinstance(event, RetrievalFinished):
                yield protocol.answer_sources_event(
                    answer_id=answer_id, sources=[s.to_wire() for s in event.sources]
                )
            elif isinstance(event, AnswerDelta):
                parts.append(event.text)
                yield protocol.answer_delta_event(answer_id=answer_id, text=event.text)
            elif isinstance(event, AnswerEnd):
                usage = event.usage.to_wire() if event.usage is not None else None
                yield protocol.answer_end_event(
                    answer_id=answer_id, status="complete", text=event.text, usage=usage
                )
                return
            elif isinstance(event, AnswerError):
                yield protocol.answer_end_event(
                    answer_id=answer_id,
                    status="failed",
                    text="".join(parts),
                    error=event.error.as_dict(),
                )
                return


class DirectAnswer:
    """A direct answer run by its own task, which owns the asker's answer reservation.

    The task is started by the view, before the response streams, and always ends (the LLM's
    timeouts bound it): so the reservation is released even when the client leaves before the
    stream was ever read. Reading `events()` to the end, or closing it, ends the task.
    """

    # Running tasks, so none is garbage-collected before it ends.
    _tasks: set[asyncio.Task[None]] = set()

    def __init__(
        self,
        events: AsyncGenerator[dict[str, Any], None],
        *,
        coordinator: Coordinator,
        slot: AnswerSlot,
    ) -> None:
        self._events = events
        self._coordinator = coordinator
        self._slot = slot
        self._answer_id = slot.answer_id
        # Unbounded, but it holds at most one answer (CHAT_LLM_MAX_TOKENS of deltas).
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        # Detached: the task outlives the view that starts it (chat.background).
        self._task = start_detached(self._run(), name=f"direct answer {self._answer_id}")
        self._tasks.add(self._task)
        self._task.add_done_callback(self._tasks.discard)

    async def events(
        self, *, idle: float | None = None
    ) -> AsyncGenerator[dict[str, Any] | None, None]:
        """The answer's events; None after `idle` seconds without one (keep-alive time)."""
        try:
            async with aclosing(items_or_idle(self._queue, end=None, idle=idle)) as items:
                async for item in items:
                    yield item
        finally:
            if self._task is not None and not self._task.done():
                # The reader left: stop the answer, which closes the upstream LLM request.
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        parts: list[str] = []
        context.bind(answer_id=self._answer_id, user_id=self._slot.user_id)
        llm = context.start_llm_call()
        began = time.monotonic()
        first_delta: float | None = None
        status, error_code = "cancelled", None  # unless an end comes: the reader left
        try:
            async with aclosing(self._events) as events:
                async for event in events:
                    if event["type"] == "answer.delta":
                        parts.append(event["text"])
                        if first_delta is None:
                            first_delta = time.monotonic() - began
                            observe_first_delta(first_delta, llm)
                    elif event["type"] == "answer.end":
                        status = event["status"]
                        error_code = (event.get("error") or {}).get("code")
                    self._queue.put_nowait(event)
        except Exception as err:
            status, error_code = "failed", "internal"
            logger.exception("Direct answer %s failed unexpectedly", self._answer_id)
            self._queue.put_nowait(
                protocol.answer_end_event(
                    answer_id=self._answer_id,
                    status="failed",
                    text="".join(parts),
                    error={
                        "code": "internal",
                        "message": f"The answer failed: {type(err).__name__}.",
                    },
                )
            )
        finally:
            metrics.answer_ended(status, error_code)
            log_answer_end(
                self._answer_id,
                status=status,
                error_code=error_code,
                characters=len("".join(parts)),
                first_delta_seconds=first_delta,
                llm=llm,
            )
            self._queue.put_nowait(None)
            await self._coordinator.release_answer(self._slot)
