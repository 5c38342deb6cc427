"""The simulator's HTTP app: OpenAI's chat completions API, streamed the way OpenAI streams it.

Each chunk is `data: {chat.completion.chunk}\\n\\n` with an extra `sim_sent_at` (wall-clock time
when written) so benchmarks can measure delivery latency. Tokens are scheduled against the
loop's monotonic clock, so a slow write does not shift the tokens after it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .config import STATUS_FAULTS, STREAM_FAULTS, ConfigError, SimConfig, parse_directives
from .state import STATE_KEY, RequestRecord, SimulatorState
from .text import rough_token_count, simulated_tokens

# While waiting (first-token delay, slow token rate, stall), look for a vanished client this
# often: the stats must show a cancelled request promptly.
_POLL_SECONDS = 0.02


class _ClientGone(Exception):
    """The client closed the connection."""


class _ServerClosing(Exception):
    """The simulator is shutting down; hanging requests must end."""


def error_response(
    status: int, message: str, *, kind: str, code: str | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _status_fault(fault: str, config: SimConfig) -> web.Response:
    status = STATUS_FAULTS[fault]
    if status == 400:
        response = error_response(
            400, "Invalid request (simulated fault 400).", kind="invalid_request_error"
        )
    elif status == 401:
        response = error_response(
            401,
            "Incorrect API key provided (simulated fault 401).",
            kind="invalid_request_error",
            code="invalid_api_key",
        )
    elif status == 429:
        response = error_response(
            429,
            "Rate limit reached (simulated fault 429).",
            kind="requests",
            code="rate_limit_exceeded",
        )
    else:
        response = error_response(
            status, f"The server had an error (simulated fault {status}).", kind="server_error"
        )
    if status in {429, 503} and config.retry_after is not None:
        response.headers["Retry-After"] = f"{config.retry_after:g}"
    return response


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of OpenAI's content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _wait_until(request: web.Request, state: SimulatorState, deadline: float) -> None:
    """Sleep until the loop time `deadline` (may be inf), watching for the client leaving."""
    loop = asyncio.get_running_loop()
    while True:
        if _client_gone(request):
            raise _ClientGone
        if state.closing:
            raise _ServerClosing
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, _POLL_SECONDS))


class _SSEWriter:
    """Writes `data:` events on a prepared streaming response."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse, base: dict[str, Any]
    ) -> None:
        self._request = request
        self._response = response
        self._base = base

    async def raw(self, data: str) -> None:
        if _client_gone(self._request):
            raise _ClientGone
        try:
            await self._response.write(f"data: {data}\n\n".encode())
        except ConnectionResetError as err:
            raise _ClientGone from err

    async def chunk(self, extra: dict[str, Any]) -> None:
        await self.raw(json.dumps({**self._base, **extra, "sim_sent_at": time.time()}))

    async def choice(self, delta: dict[str, Any], finish_reason: str | None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await self.chunk({"choices": [choice]})


@dataclass(frozen=True, slots=True)
class _Plan:
    """One request's answer, decided before anything is sent."""

    config: SimConfig
    fault: str | None
    tokens: list[str]
    finish_reason: str
    prompt_tokens: int
    include_usage: bool

    def usage(self, sent: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": sent,
            "total_tokens": self.prompt_tokens + sent,
        }


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/chat/completions`, streamed (`stream: true`) or as one JSON body."""
    state = request.app[STATE_KEY]
    try:
        body = await request.json()
    except ValueError:
        return error_response(
            400, "The request body is not valid JSON.", kind="invalid_request_error"
        )
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return error_response(
            400, "'messages' must be a non-empty list.", kind="invalid_request_error"
        )
    texts = [_text_of(m.get("content")) for m in messages if isinstance(m, dict)]
    last_user = next(
        (
            _text_of(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    try:
        directives = parse_directives(last_user)
        config = state.defaults.updated(directives)
    except ConfigError as err:
        return error_response(400, str(err), kind="invalid_request_error")

    stream = bool(body.get("stream"))
    record = state.new_record(
        stream=stream,
        model=str(body.get("model") or config.model),
        messages=[m for m in messages if isinstance(m, dict)],
        temperature=_temperature(body.get("temperature")),
    )
    # Directive faults are counted per question text, so a retried request counts as the same.
    key = last_user if "fault" in directives else ""
    fault = config.fault if config.fault and state.take_fault(key, config.fail_times) else None
    record.fault = fault
    if fault in STATUS_FAULTS:
        record.status = STATUS_FAULTS[fault]
        record.ended = time.time()
        return _status_fault(fault, config)

    tokens = simulated_tokens(config.tokens, question=last_user, echo=config.echo)
    finish_reason = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(tokens):
        tokens, finish_reason = tokens[:limit], "length"
    options = body.get("stream_options")
    plan = _Plan(
        config=config,
        fault=fault,
        tokens=tokens,
        finish_reason=finish_reason,
        prompt_tokens=sum(rough_token_count(text) for text in texts),
        include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
    )
    # Once a streaming response is prepared it is the one returned, whatever happens next.
    response: web.StreamResponse = web.Response(status=499)
    try:
        if stream:
            response = await _open_stream(request)
            await _stream(request, state, record, plan, response)
        else:
            response = await _complete(request, state, record, plan)
    except (_ClientGone, ConnectionResetError):
        record.client_disconnected_early = True
    except _ServerClosing:
        _close_connection(request)
    finally:
        record.ended = time.time()
    return response


def _temperature(value: object) -> float | None:
    """The request's sampling temperature as sent (any model name is accepted, and so is any
    number: the simulator only records them), or None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _close_connection(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


async def _stream(
    request: web.Request,
    state: SimulatorState,
    record: RequestRecord,
    plan: _Plan,
    response: web.StreamResponse,
) -> None:
    """Send the role chunk, the paced content tokens, the finish chunk, usage and [DONE]."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    config = plan.config
    interval = 1.0 / config.tps if config.tps > 0 else 0.0
    base: dict[str, Any] = {
        "id": f"chatcmpl-sim-{record.id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": record.model,
        "system_fingerprint": None,
    }
    if plan.include_usage:
        # Like OpenAI: with include_usage every chunk carries `usage: null` until the last one.
        base["usage"] = None
    writer = _SSEWriter(request, response, base)
    # Where a mid-stream fault happens, as an index into the tokens (inf: no fault).
    fault_at = (
        min(config.mid_stream_fault_at(), len(plan.tokens))
        if plan.fault in STREAM_FAULTS
        else math.inf
    )

    await writer.choice({"role": "assistant", "content": ""}, None)
    for index, token in enumerate(plan.tokens):
        if index == fault_at and await _mid_stream_fault(request, state, response, writer, plan):
            return
        await _wait_until(request, state, start + config.first_token_delay + index * interval)
        await writer.choice({"content": token}, None)
        record.tokens_sent += 1
    if fault_at == len(plan.tokens) and await _mid_stream_fault(
        request, state, response, writer, plan
    ):
        return
    await writer.choice({}, plan.finish_reason)
    if plan.include_usage:
        await writer.chunk({"choices": [], "usage": plan.usage(record.tokens_sent)})
    await writer.raw("[DONE]")
    await response.write_eof()
    record.finished = True


async def _mid_stream_fault(
    request: web.Request,
    state: SimulatorState,
    response: web.StreamResponse,
    writer: _SSEWriter,
    plan: _Plan,
) -> bool:
    """Apply a mid-stream fault; True when the response is over."""
    if plan.fault == "drop":
        # Close the TCP connection inside the chunked body: the client sees a broken stream.
        _close_connection(request)
        return True
    if plan.fault == "truncate":
        # A clean end of the HTTP body, but without a finish reason and without [DONE].
        await response.write_eof()
        return True
    if plan.fault == "stall":
        await _wait_until(request, state, math.inf)
        return True
    # malformed: one event whose data is not JSON, then the stream goes on as if nothing happened.
    await writer.raw('{"id": "chatcmpl-sim", "choices": [{"delta": {"content": "broken')
    return False


async def _complete(
    request: web.Request, state: SimulatorState, record: RequestRecord, plan: _Plan
) -> web.StreamResponse:
    """The non-streaming answer: one JSON body once every token would have been generated."""
    loop = asyncio.get_running_loop()
    config = plan.config
    interval = 1.0 / config.tps if config.tps > 0 else 0.0
    await _wait_until(
        request, state, loop.time() + config.first_token_delay + len(plan.tokens) * interval
    )
    if plan.fault == "drop":
        _close_connection(request)
        return web.Response(status=499)
    if plan.fault == "stall":
        await _wait_until(request, state, math.inf)
    record.tokens_sent = len(plan.tokens)
    record.finished = True
    return web.json_response(
        {
            "id": f"chatcmpl-sim-{record.id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": record.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(plan.tokens)},
                    "logprobs": None,
                    "finish_reason": plan.finish_reason,
                }
            ],
            "usage": plan.usage(len(plan.tokens)),
            "sim_sent_at": time.time(),
        }
    )
