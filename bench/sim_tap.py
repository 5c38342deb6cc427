"""The project's LLM simulator with a tap that remembers when it sent each token.

`python -m bench.sim_tap --port N --tps 50 --first-token-delay 0.2`

The chat server forwards only the text of each token, not the chunk's `sim_sent_at`, so the
benchmark clients cannot see when a token left the simulator. This process runs the project's
simulator (`llmsim`, its routes and streaming code unchanged) and records, for each
request whose last user message holds a `bench:TAG` marker, when the request arrived and the
`sim_sent_at` and text of each content chunk, exactly as they went out. `POST /_bench/sends`
with `{"tags": [...]}` returns (and forgets) those records.

The recording hooks in by replacing the module global `_SSEWriter` of
`llmsim.stream` with a subclass, the smallest change that sees each chunk's
timestamp; an official hook in the simulator would make this unnecessary (see
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from bench.wire import TAG_RE
from llmsim import stream as sim_stream
from llmsim.app import build_app
from llmsim.config import SimConfig
from llmsim.state import SimulatorState


@dataclass(slots=True)
class Sends:
    """One tagged request: when it arrived, and each content token's send time and text."""

    received: float
    times: list[float] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)


SENDS_KEY = web.AppKey("bench_sends", dict)
_REQUEST_KEY = "bench_sends"


class TapWriter(sim_stream._SSEWriter):
    """The simulator's SSE writer, recording the `sim_sent_at` of every content chunk."""

    async def chunk(self, extra: dict[str, Any]) -> None:
        sent = time.time()
        await self.raw(json.dumps({**self._base, **extra, "sim_sent_at": sent}))
        record: Sends | None = self._request.get(_REQUEST_KEY)
        if record is not None:
            text = _content(extra)
            if text:
                record.times.append(sent)
                record.tokens.append(text)


def _content(extra: dict[str, Any]) -> str:
    choices = extra.get("choices") or ()
    for choice in choices:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if content:
            return str(content)
    return ""


def tag_of(body: Any) -> str | None:
    """The `bench:TAG` of the last user message of a chat completions request body."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return None
    for message in reversed(body["messages"]):
        if isinstance(message, dict) and message.get("role") == "user":
            match = TAG_RE.search(str(message.get("content", "")))
            return match.group(1) if match else None
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def tap_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Start a record for a tagged completions request (aiohttp caches the body it read)."""
    if request.path == "/v1/chat/completions" and request.method == "POST":
        received = time.time()
        try:
            body = await request.json()
        except ValueError:
            body = None
        tag = tag_of(body)
        if tag is not None:
            record = Sends(received=received)
            request.app[SENDS_KEY][tag] = record
            request[_REQUEST_KEY] = record
    return await handler(request)


async def take_sends(request: web.Request) -> web.Response:
    """`POST /_bench/sends` `{"tags": [...]}`: the records of those tags, forgotten here."""
    body = await request.json()
    store: dict[str, Sends] = request.app[SENDS_KEY]
    found = {}
    for tag in body.get("tags", []):
        record = store.pop(tag, None)
        if record is not None:
            found[tag] = asdict(record)
    return web.json_response({"sends": found})


async def clear_sends(request: web.Request) -> web.Response:
    request.app[SENDS_KEY].clear()
    return web.json_response({"ok": True})


def build_tap_app(config: SimConfig) -> web.Application:
    sim_stream._SSEWriter = TapWriter  # type: ignore[misc]
    app = build_app(SimulatorState(config))
    app[SENDS_KEY] = {}
    app.middlewares.append(tap_middleware)
    app.router.add_post("/_bench/sends", take_sends)
    app.router.add_post("/_bench/clear", clear_sends)
    return app


async def serve(args: argparse.Namespace) -> None:
    config = SimConfig(tps=args.tps, first_token_delay=args.first_token_delay, tokens=args.tokens)
    runner = web.AppRunner(build_tap_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    # A deep backlog: hundreds of answers open their streams within a second.
    site = web.TCPSite(runner, args.host, args.port, backlog=2048)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"LLM simulator (tapped) listening on http://{args.host}:{args.port}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_tap")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--tps", type=float, default=50.0)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (less CPU)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        if args.uvloop:
            import uvloop

            uvloop.run(serve(args))
        else:
            asyncio.run(serve(args))


if __name__ == "__main__":
    main()
