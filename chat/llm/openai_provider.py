"""The OpenAI-compatible provider: OpenAI, vLLM, Ollama, llama.cpp server, or the simulator.

Uses the official SDK with its retries off: we retry ourselves, and only before the first delta
(a retry after text went out would repeat or change the answer people already read).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import anyio
import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from chat.errors import LLMError
from chat.observability import context, metrics

from .base import ChatMessage, LLMRequest, StreamEnd, StreamItem, TextDelta, Usage
from .retry import BACKOFF_BASE, RETRY_AFTER_CAP, is_retryable_status, retry_delay
from .sse import EventTooLarge, SSEDataReader

logger = logging.getLogger(__name__)

# Local servers (vLLM, Ollama, llama.cpp) ignore the key, but the SDK refuses to start without.
PLACEHOLDER_API_KEY = "not-needed"
# Enough of a server's error message to be useful in an error frame, not a whole HTML page.
_MAX_SERVER_MESSAGE = 300
# What breaks a response being read (the SDK's own list, `openai._httpx2.request_exceptions`:
# anyio and ssl errors that httpx2 does not map yet).
_CONNECTION_LOST = (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream)


@dataclass(frozen=True, slots=True)
class _OpenFailure:
    """How a failed attempt to open the stream is reported, and whether to try again."""

    error: LLMError
    retryable: bool
    headers: Mapping[str, str] | None = None

    @classmethod
    def of(cls, code: str, message: str, *, retryable: bool) -> _OpenFailure:
        return cls(LLMError(message, code=code), retryable)


class OpenAIProvider:
    """Streams answers from any OpenAI-compatible `/v1/chat/completions` server. Chosen when
    OPENAI_BASE_URL or OPENAI_API_KEY is set; every argument defaults to its setting."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        include_usage: bool = True,
        backoff_base: float = BACKOFF_BASE,
        retry_after_cap: float = RETRY_AFTER_CAP,
    ) -> None:
        from django.conf import settings

        self.api_key = (api_key if api_key is not None else settings.OPENAI_API_KEY) or (
            PLACEHOLDER_API_KEY
        )
        self.base_url = (base_url if base_url is not None else settings.OPENAI_BASE_URL) or None
        self.model = model or settings.CHAT_MODEL
        self.max_tokens = max_tokens if max_tokens is not None else settings.CHAT_LLM_MAX_TOKENS
        self.connect_timeout = (
            connect_timeout if connect_timeout is not None else settings.CHAT_LLM_CONNECT_TIMEOUT
        )
        self.read_timeout = (
            read_timeout if read_timeout is not None else settings.CHAT_LLM_READ_TIMEOUT
        )
        self.max_retries = max(
            0, max_retries if max_retries is not None else settings.CHAT_LLM_MAX_RETRIES
        )
        # Some OpenAI-compatible servers reject `stream_options`; then usage is simply absent.
        self.include_usage = include_usage
        self.backoff_base = backoff_base
        self.retry_after_cap = retry_after_cap
        # httpx2's timeout: `connect` to open the TCP/TLS connection, the first argument for
        # everything else; `read` is the longest silence between two received bytes.
        self._timeout = openai.Timeout(self.read_timeout, connect=self.connect_timeout)
        self._client: AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    @property
    def where(self) -> str:
        """The server, for error messages (never the key)."""
        return self.base_url or "https://api.openai.com/v1"

    def _get_client(self) -> AsyncOpenAI:
        loop = asyncio.get_running_loop()
        # Pooled connections belong to the loop that opened them. A server process has one loop;
        # tests get a new loop per test, and then a new client.
        if self._client is None or self._client_loop is not loop:
            self._client = AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self._timeout,
                max_retries=0,  # our own retries, see _open()
                http_client=openai.DefaultAsyncHttpxClient(timeout=self._timeout),
            )
            self._client_loop = loop
        return self._client

    def warm_up(self) -> None:
        """Make the client now (`chat.llm.warm_up_provider`); in the event loop it serves. Its
        `chat.completions` resource too: the SDK imports that on first use. And anyio's
        backend for this loop, which the HTTP stack's first request imported: a dozen modules,
        the event loop stopped about 50 ms at each worker's first question (measured with a
        stall probe in a benchmark worker; docs/benchmarks.md, "Fixes")."""
        _ = self._get_client().chat.completions
        try:
            anyio.current_time()  # loads the backend of the running loop
        except Exception as err:  # called outside a task: anyio finds no backend to load
            logger.debug("anyio's backend not loaded at the warm-up: %r", err)

    async def aclose(self) -> None:
        """Close pooled connections (tests, shutdown). The provider remains usable."""
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.close()
        self._client_loop = None

    async def probe(self, within: float) -> None:
        """Is the server there and does it take our key? One `GET /models` (`/readyz`
        reports it; raises the SDK's error if not)."""
        await self._get_client().models.list(timeout=within)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        """Yield the answer's `TextDelta`s, then one `StreamEnd`; or raise `LLMError`."""
        # The answer's record of this call (None outside an answer task: `manage.py ask`).
        call = context.llm_call()
        sent_at = time.monotonic()
        upstream = await self._open(request)
        if call is not None:
            # The server's id for this request, to find it in the LLM's own logs.
            call.request_id = _request_id(upstream)
        finish_reason: str | None = None
        usage: Usage | None = None
        first_token = True
        done = False
        events = SSEDataReader()
        try:
            try:
                # The response's bytes, read and parsed here rather than by the SDK's stream,
                # which builds a pydantic model per chunk (half of a worker's CPU at 100
                # answers). Cancelling the caller while it waits here, or aclose() at the
                # yield below, goes through the finally: the response is closed, the LLM stops.
                async for piece in upstream.response.aiter_bytes():
                    for data in events.feed(piece):
                        if done:
                            continue  # nothing counts after [DONE]; read on to the body's end
                        if data.startswith(b"[DONE]"):
                            done = True
                            continue
                        text, chunk_finish, chunk_usage = _read_chunk(data)
                        usage = chunk_usage or usage
                        if text:
                            if first_token:
                                first_token = False
                                waited = time.monotonic() - sent_at
                                metrics.LLM_FIRST_TOKEN_SECONDS.observe(waited)
                                if call is not None:
                                    call.first_token_seconds = waited
                            yield TextDelta(text)
                        finish_reason = chunk_finish or finish_reason
                # The usage chunk comes after the finish reason: read to the end before StreamEnd.
            except httpx2.TimeoutException as err:
                if finish_reason is None:
                    raise LLMError(
                        f"The language model stopped sending its answer for "
                        f"{self.read_timeout:g} seconds.",
                        code="llm_timeout",
                    ) from err
                logger.warning("LLM stream timed out after its finish reason; usage is lost")
            except _CONNECTION_LOST as err:
                if finish_reason is None:
                    raise LLMError(
                        "The connection to the language model was lost before the answer "
                        "was complete.",
                        code="llm_truncated",
                    ) from err
                logger.warning("LLM connection dropped after its finish reason; usage is lost")
            except (json.JSONDecodeError, EventTooLarge) as err:
                raise LLMError(
                    "The language model sent a response that could not be understood.",
                    code="llm_bad_response",
                ) from err
        finally:
            # Closing a response that is not fully read closes its connection: on cancel this
            # is what makes the server stop generating (and billing).
            await upstream.close()
        if finish_reason is None:
            # The body ended cleanly but the model never said it was done: never complete.
            raise LLMError(
                "The language model's answer ended before it was complete.",
                code="llm_truncated",
            )
        yield StreamEnd(finish_reason, usage)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        time_limit: float,
        model: str | None = None,
    ) -> str:
        """One short completion, not streamed, within `time_limit` seconds in all, no retry
        (see `Completer`). Raises `LLMError`."""
        client = self._get_client()
        bound = openai.Timeout(time_limit, connect=min(self.connect_timeout, time_limit))
        try:
            # The SDK's timeout bounds each phase; wait_for bounds the whole call, and
            # cancelling it closes the request.
            response = await asyncio.wait_for(
                client.chat.completions.create(
                    model=model or self.model,
                    messages=[_message_param(message) for message in messages],
                    max_tokens=max_tokens,
                    stream=False,
                    timeout=bound,
                ),
                time_limit,
            )
        except TimeoutError as err:
            raise LLMError(
                f"The language model did not respond within {time_limit:g} seconds.",
                code="llm_timeout",
            ) from err
        except openai.OpenAIError as err:
            raise self._classify(err).error from err
        try:
            return str(response.choices[0].message.content or "")
        except (AttributeError, IndexError, TypeError) as err:
            raise LLMError(
                "The language model sent a response that could not be understood.",
                code="llm_bad_response",
            ) from err

    async def _open(self, request: LLMRequest) -> AsyncStream[ChatCompletionChunk]:
        """Send the request until the server accepts it, retrying 429, 5xx and failed connects."""
        client = self._get_client()
        messages = [_message_param(message) for message in request.messages]
        call = context.llm_call()  # the answer's record of this call, if in an answer
        attempt = 0
        while True:
            try:
                # Cancelling here abandons the request; the SDK closes what it opened.
                return await client.chat.completions.create(
                    model=request.model or self.model,
                    messages=messages,
                    max_tokens=self.max_tokens,
                    temperature=(
                        request.temperature if request.temperature is not None else openai.omit
                    ),
                    stream=True,
                    stream_options={"include_usage": True} if self.include_usage else openai.omit,
                )
            except openai.OpenAIError as err:
                if call is not None and isinstance(err, openai.APIStatusError):
                    # A refused request has an id too: the one to ask the provider about.
                    call.request_id = str(err.response.headers.get("x-request-id", ""))[:100]
                failure = self._classify(err)
                if not failure.retryable or attempt >= self.max_retries:
                    raise failure.error from err
            delay = retry_delay(
                attempt, failure.headers, base=self.backoff_base, cap=self.retry_after_cap
            )
            attempt += 1
            metrics.LLM_RETRIES.labels(failure.error.code).inc()
            if call is not None:
                call.retries = attempt
            logger.warning(
                "LLM request failed (%s); retry %d of %d in %.2f s",
                failure.error.code,
                attempt,
                self.max_retries,
                delay,
            )
            # Cancelling the wait abandons the answer; no request is open.
            await asyncio.sleep(delay)

    def _classify(self, err: openai.OpenAIError) -> _OpenFailure:
        if isinstance(err, openai.APITimeoutError):
            if _is_connect_timeout(err):
                return _OpenFailure.of(
                    "llm_unavailable",
                    f"Could not connect to the language model at {self.where} within "
                    f"{self.connect_timeout:g} seconds.",
                    retryable=True,
                )
            # The server accepted the connection but sent no response in time: a retry would
            # make the person wait the whole read timeout again.
            return _OpenFailure.of(
                "llm_timeout",
                f"The language model did not respond within {self.read_timeout:g} seconds.",
                retryable=False,
            )
        if isinstance(err, openai.APIConnectionError):
            return _OpenFailure.of(
                "llm_unavailable",
                f"Could not connect to the language model at {self.where}.",
                retryable=True,
            )
        if isinstance(err, openai.APIStatusError):
            return self._classify_status(err)
        return _OpenFailure.of(
            "llm_bad_response" if isinstance(err, openai.APIError) else "llm_rejected",
            f"The language model could not be used: {err}",
            retryable=False,
        )

    def _classify_status(self, err: openai.APIStatusError) -> _OpenFailure:
        status = err.status_code
        headers = err.response.headers
        retryable = is_retryable_status(status)
        if status == 429:
            message = "The language model is rate limiting requests; please try again shortly."
            return _OpenFailure(LLMError(message, code="llm_rate_limited"), retryable, headers)
        if status >= 500:
            message = f"The language model server failed (HTTP {status}); please try again later."
            return _OpenFailure(LLMError(message, code="llm_server_error"), retryable, headers)
        message = f"The language model rejected the request (HTTP {status}): {_server_message(err)}"
        return _OpenFailure(LLMError(message, code="llm_rejected"), retryable=False)


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def _read_chunk(data: bytes) -> tuple[str, str | None, Usage | None]:
    """The text, finish reason and usage of one chunk's JSON (choice 0: we never ask for
    more); an `error` object instead (OpenAI sends these on overload) raises `LLMError`."""
    chunk = json.loads(data)
    try:
        if chunk.get("error"):
            raise LLMError(
                f"The language model failed while answering: {_error_message(chunk['error'])}",
                code="llm_server_error",
            )
        usage = None
        counts = chunk.get("usage")
        if counts is not None:
            usage = Usage(
                prompt_tokens=int(counts.get("prompt_tokens") or 0),
                completion_tokens=int(counts.get("completion_tokens") or 0),
            )
        text, finish_reason = "", None
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) == 0:
                delta = choice.get("delta")
                text = (delta.get("content") if delta is not None else None) or ""
                finish_reason = choice.get("finish_reason")
        if not isinstance(text, str) or not isinstance(finish_reason, str | None):
            raise TypeError("content and finish_reason are strings")
    except (AttributeError, TypeError, ValueError) as err:
        # Valid JSON of the wrong shape.
        raise LLMError(
            "The language model sent a response that could not be understood.",
            code="llm_bad_response",
        ) from err
    return text, finish_reason, usage


def _error_message(error: object) -> str:
    """An in-stream error's message, shortened (as the SDK reads it: `error.message`)."""
    message = error.get("message") if isinstance(error, Mapping) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    text = " ".join(message.split())
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[: _MAX_SERVER_MESSAGE - 1] + "…"
    return text


def _request_id(upstream: AsyncStream[ChatCompletionChunk]) -> str:
    """The `x-request-id` the server answered with (OpenAI's, vLLM's…), shortened; blank
    when it sent none."""
    response = getattr(upstream, "response", None)
    value = response.headers.get("x-request-id", "") if response is not None else ""
    return str(value)[:100]


def _is_connect_timeout(err: openai.APITimeoutError) -> bool:
    # By class name: openai 2.x raises httpx's ConnectTimeout, 3.x httpx2's.
    return type(err.__cause__).__name__ in {"ConnectTimeout", "PoolTimeout"}


def _server_message(err: openai.APIError) -> str:
    """The server's own explanation (e.g. "Incorrect API key provided"), shortened."""
    body = err.body
    message: object = None
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or body.get("error")
    elif isinstance(body, str):
        message = body
    text = " ".join(str(message or err.message).split())
    if len(text) > _MAX_SERVER_MESSAGE:
        text = text[: _MAX_SERVER_MESSAGE - 1] + "…"
    return text
