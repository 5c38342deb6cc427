"""A scripted provider for unit tests at the edges of the answer pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from .base import LLMRequest, StreamEnd, StreamItem, TextDelta, Usage


class FakeLLM:
    """Streams scripted deltas, optionally slowly or failing after N deltas, and records what it
    was asked and whether the caller closed a stream early (the cancel path)."""

    name = "fake"

    def __init__(
        self,
        deltas: Sequence[str] = ("Hello", ", ", "world", "."),
        *,
        delay: float = 0.0,
        error: BaseException | None = None,
        error_after: int = 0,
        finish_reason: str = "stop",
        usage: Usage | None = None,
    ) -> None:
        self.deltas = list(deltas)
        self.delay = delay
        self.error = error
        # With `error`, raise it after this many deltas (0: before the first one).
        self.error_after = error_after
        self.finish_reason = finish_reason
        self.usage = usage or Usage(prompt_tokens=10, completion_tokens=len(self.deltas))
        self.requests: list[LLMRequest] = []
        self.started = 0
        self.completed = 0
        self.closed_early = False
        self.closed = asyncio.Event()

    @property
    def text(self) -> str:
        """The whole scripted answer."""
        return "".join(self.deltas)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        """The scripted deltas then `StreamEnd`, or the scripted error."""
        self.requests.append(request)
        self.started += 1
        ended = raised = False
        try:
            for index, text in enumerate(self.deltas):
                if self.error is not None and index == self.error_after:
                    raised = True
                    raise self.error
                # Cancelling the caller here (or aclose() at the yield) counts as closed early.
                await asyncio.sleep(self.delay)
                yield TextDelta(text)
            if self.error is not None:
                raised = True
                raise self.error
            ended = True
            self.completed += 1
            yield StreamEnd(self.finish_reason, self.usage)
        finally:
            if not ended and not raised:
                self.closed_early = True
            self.closed.set()
