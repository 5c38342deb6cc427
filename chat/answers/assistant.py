"""The assistant: retrieval, prompt and LLM stream for one answer, with LangChain's async
interface (`ainvoke`, `astream`, `abatch`, `astream_events`). It knows nothing of rooms or
sockets; `chat.answers.runner` puts its events into a room."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from chat.answers.events import (
    AnswerDelta,
    AnswerEnd,
    AnswerError,
    AnswerEvent,
    AnswerResult,
    RetrievalFinished,
    RetrievalStarted,
)
from chat.answers.prompt import build_messages, continuing
from chat.answers.rewrite import QueryRewriter, SearchQuery
from chat.errors import ChatError
from chat.llm.base import ChatMessage, LLMProvider, LLMRequest, StreamEnd, TextDelta
from chat.retrieval.base import Retriever, Source

logger = logging.getLogger(__name__)


class Assistant:
    """Answers questions grounded in a Chroma collection, streaming from an LLM provider."""

    def __init__(
        self,
        *,
        llm: LLMProvider,
        retriever: Retriever,
        collection: str,
        k: int = 4,
        system_prompt: str = "",
        assistant_name: str = "",
        model: str | None = None,
        temperature: float | None = None,
        rewriter: QueryRewriter | None = None,
    ) -> None:
        self.llm = llm
        self.retriever = retriever
        self.collection = collection
        self.k = k
        self.system_prompt = system_prompt
        # What the room calls its assistant (the prompt tells the model); blank: no name.
        self.assistant_name = assistant_name
        # None: the provider's own (CHAT_MODEL, the model's default temperature).
        self.model = model
        self.temperature = temperature
        # Rewrites a follow-up into a standalone search query; None: search as asked.
        self.rewriter = rewriter

    async def astream_events(
        self,
        question: str,
        *,
        history: Sequence[ChatMessage] = (),
        asker: str = "",
        partial: str = "",
    ) -> AsyncGenerator[AnswerEvent, None]:
        """Retrieval started and finished, each delta, then exactly one end or error.
        `asker`: the name of who asks, shown to the LLM with the question (in a room, where
        the conversation carries everyone's names too). `partial`: the text already written
        of an answer that stopped short; the LLM is asked to continue it, and the events are
        the continuation only (the end's `text` too).

        Closing this generator early (cancel) closes the LLM stream, which closes the
        upstream HTTP request.
        """
        search = SearchQuery(question)
        if self.rewriter is not None and history:
            # Bounded by the rewriter's timeout; any failure there searches the question as is.
            search = await self.rewriter.rewrite(question, history, in_room=bool(asker))
        yield RetrievalStarted(query=search.text)
        try:
            sources = await self.retriever.retrieve(
                search.text, collection=self.collection, k=self.k
            )
        except ChatError as err:
            logger.warning("Retrieval failed: %s", err.message)
            yield AnswerError(error=err)
            return
        yield RetrievalFinished(sources=sources, query=search.text if search.rewritten else None)
        messages = build_messages(
            question,
            sources=sources,
            history=history,
            system_prompt=self.system_prompt,
            asker=asker,
            assistant_name=self.assistant_name,
        )
        request = LLMRequest(
            messages=continuing(messages, partial) if partial else messages,
            question=question,
            sources=sources,
            model=self.model,
            temperature=self.temperature,
        )
        parts: list[str] = []
        stream = self.llm.stream(request)
        try:
            async for item in stream:  # cancellation here closes the stream in `finally`
                if isinstance(item, TextDelta):
                    if item.text:
                        parts.append(item.text)
                        yield item  # an AnswerDelta
                elif isinstance(item, StreamEnd):
                    yield AnswerEnd(
                        text="".join(parts), usage=item.usage, finish_reason=item.finish_reason
                    )
                    return
        except ChatError as err:
            yield AnswerError(error=err, text="".join(parts))
            return
        finally:
            await _aclose(stream)
        # A provider that stops without a StreamEnd broke its contract: never call it complete.
        yield AnswerError(
            error=ChatError("The answer stream ended unexpectedly.", code="llm_truncated"),
            text="".join(parts),
        )

    async def astream(
        self, question: str, *, history: Sequence[ChatMessage] = ()
    ) -> AsyncIterator[str]:
        """Only the deltas; raises the `ChatError` of a failed answer."""
        events = self.astream_events(question, history=history)
        try:
            async for event in events:
                if isinstance(event, AnswerDelta):
                    yield event.text
                elif isinstance(event, AnswerError):
                    raise event.error
        finally:
            await _aclose(events)

    async def ainvoke(self, question: str, *, history: Sequence[ChatMessage] = ()) -> AnswerResult:
        """The whole answer: text, sources and usage; raises `ChatError` on failure."""
        sources: list[Source] = []
        events = self.astream_events(question, history=history)
        try:
            async for event in events:
                if isinstance(event, RetrievalFinished):
                    sources = event.sources
                elif isinstance(event, AnswerEnd):
                    return AnswerResult(
                        text=event.text,
                        sources=sources,
                        usage=event.usage,
                        finish_reason=event.finish_reason,
                    )
                elif isinstance(event, AnswerError):
                    raise event.error
        finally:
            # Returning from inside `async for` does not close the generator: close it now,
            # so the LLM's HTTP response is released here and not at garbage collection.
            await events.aclose()
        raise ChatError("The answer ended without a result.")

    async def abatch(
        self,
        questions: Sequence[str],
        *,
        max_concurrency: int = 4,
        return_exceptions: bool = False,
    ) -> list[AnswerResult | ChatError]:
        """Answer many questions, at most `max_concurrency` at a time, results in order."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        gate = asyncio.Semaphore(max_concurrency)

        async def one(question: str) -> AnswerResult | ChatError:
            async with gate:
                try:
                    return await self.ainvoke(question)
                except ChatError as err:
                    if return_exceptions:
                        return err
                    raise

        return list(await asyncio.gather(*(one(q) for q in questions)))


async def _aclose(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
