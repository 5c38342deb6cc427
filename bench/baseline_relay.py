"""The baseline: a minimal relay written with the plain `websockets` library.

`python -m bench.baseline_relay --port N --base-url http://127.0.0.1:M/v1`

A client connects to `ws://HOST:N/<room>` and gets `{"type": "welcome"}`. On
`{"type": "ask", "text": ...}` the relay opens the same `openai` AsyncOpenAI stream the chat
server opens (same client settings, same request options) and sends each delta to every member
of the room as `{"type": "delta", "seq": n, "text": ...}`, then `{"type": "end", "seq": n,
"text": whole answer}`; `{"type": "ping"}` gets `{"type": "pong"}`. No storage, no retrieval, no
limits, no backpressure: what any streaming relay has to do, and nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections import defaultdict
from typing import Any

import openai
from openai import AsyncOpenAI
from websockets.asyncio.server import ServerConnection, broadcast, serve


class Relay:
    """Rooms of connections, and one upstream stream per ask, broadcast to the room."""

    def __init__(self, base_url: str, model: str, max_tokens: int) -> None:
        timeout = openai.Timeout(60.0, connect=30.0)
        self.client = AsyncOpenAI(
            api_key="bench",
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(timeout=timeout),
        )
        self.model = model
        self.max_tokens = max_tokens
        self.rooms: dict[str, set[ServerConnection]] = defaultdict(set)
        self.seqs: dict[str, int] = defaultdict(int)
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, ws: ServerConnection) -> None:
        room = ws.request.path if ws.request is not None else "/"
        members = self.rooms[room]
        members.add(ws)
        try:
            await ws.send('{"type":"welcome"}')
            async for message in ws:
                frame = json.loads(message)
                if frame.get("type") == "ask":
                    task = asyncio.create_task(self.answer(room, str(frame.get("text", ""))))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                elif frame.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
        finally:
            members.discard(ws)
            if not members:
                del self.rooms[room]

    def send(self, room: str, frame: dict[str, Any]) -> None:
        self.seqs[room] += 1
        frame["seq"] = self.seqs[room]
        broadcast(self.rooms.get(room, ()), json.dumps(frame, ensure_ascii=False))

    async def answer(self, room: str, question: str) -> None:
        parts: list[str] = []
        stream = await self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": question}],
            max_tokens=self.max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            async for chunk in stream:
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta is not None else None
                    if choice.index == 0 and text:
                        parts.append(text)
                        self.send(room, {"type": "delta", "text": text})
        finally:
            await stream.close()
        self.send(room, {"type": "end", "text": "".join(parts)})


async def run(args: argparse.Namespace) -> None:
    relay = Relay(args.base_url, args.model, args.max_tokens)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # No compression and no keepalive pings: daphne negotiates neither by default.
    async with serve(
        relay.handle,
        args.host,
        args.port,
        compression=None,
        ping_interval=None,
        max_size=2**20,
        backlog=2048,
    ):
        print(f"Relay listening on ws://{args.host}:{args.port}/", flush=True)
        await stop.wait()
    await relay.client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_relay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--base-url", required=True, help="the simulator's /v1 URL")
    parser.add_argument("--model", default="simulator")
    parser.add_argument("--max-tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
