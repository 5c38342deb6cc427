"""Client job: members that connect, then (on the orchestrator's signal) ask and record every
frame of their room's answers with its receive time. Three kinds of member:

- `server`: a WebSocket to the chat server (`/ws/rooms/<room>/`), protocol version 1;
- `relay`: a WebSocket to the baseline relay;
- `direct`: no WebSocket, the `openai` client reading the simulator itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import websockets
from openai import AsyncOpenAI

from bench.pool import Barrier, run_async
from bench.procstat import own_cpu_seconds
from bench.wire import TAG_RE, Member, MemberTrace, StreamJob, StreamJobResult

# Room events the server member keeps (presence, pong and welcome carry no seq).
_END_TYPES = {"answer.end", "end"}


def stream_job(job: StreamJob, barrier: Barrier) -> StreamJobResult:
    """Entry point in a client process: step 0 is "every member connected"."""
    return run_async(_stream_job(job, barrier))


@contextlib.contextmanager
def no_full_collections() -> Iterator[None]:
    """No full garbage collection in this client process while it measures. The traces it keeps
    (a tuple per frame: 40,000 for 200 members of a 200-token answer) grow the old generation
    fast, and each full collection then stopped the process 50 to 90 ms: every member's deltas
    of that moment were stamped late, which showed as the server's (or the relay's) p99 in the
    fan-out. What the connects built is frozen out of the collector; young collections still
    run (they are short), and the old generation is collected once the stream is over."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, 1_000_000_000)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)
        gc.unfreeze()


async def _stream_job(job: StreamJob, barrier: Barrier) -> StreamJobResult:
    cpu_before = own_cpu_seconds()
    llm = _llm_client(job.members[0].url) if job.variant == "direct" and job.members else None
    members = [_ClientMember(m, job.variant, llm) for m in job.members]
    started = time.monotonic()
    gate = asyncio.Semaphore(job.connect_concurrency)
    await asyncio.gather(*(member.connect(gate) for member in members))
    connect_seconds = time.monotonic() - started
    with no_full_collections():
        await barrier.arrive(0, len(members))
        go = time.time()
        try:
            async with asyncio.timeout(job.timeout):
                await asyncio.gather(*(member.run(go) for member in members))
        except TimeoutError:
            for member in members:
                if member.ends < member.spec.answers and member.trace.error is None:
                    member.trace.timed_out = True
        finally:
            await asyncio.gather(*(member.close() for member in members))
        if llm is not None:
            await llm.close()
    return StreamJobResult(
        traces=[member.trace for member in members],
        cpu_seconds=own_cpu_seconds() - cpu_before,
        connect_seconds=connect_seconds,
    )


def _llm_client(base_url: str) -> AsyncOpenAI:
    # The same client settings as the chat server's provider and the relay.
    timeout = openai.Timeout(120.0, connect=30.0)
    return AsyncOpenAI(
        api_key="bench",
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(timeout=timeout),
    )


class _ClientMember:
    def __init__(self, spec: Member, variant: str, llm: AsyncOpenAI | None) -> None:
        self.spec = spec
        self.variant = variant
        self.llm = llm
        tag = TAG_RE.search(spec.ask) if spec.ask else None
        self.trace = MemberTrace(url=spec.url, tag=tag.group(1) if tag else None)
        self.ws: Any = None
        self.ends = 0

    async def connect(self, gate: asyncio.Semaphore) -> None:
        if self.variant == "direct":
            return
        async with gate:
            try:
                self.ws = await websockets.connect(
                    self.spec.url,
                    ping_interval=None,
                    compression=None,
                    max_size=2**22,
                    open_timeout=120,
                )
                while True:
                    frame = json.loads(await self.ws.recv())
                    if frame.get("type") == "welcome":
                        self.trace.welcome_seq = frame.get("seq")
                        return
            except Exception as err:
                self.trace.error = f"connect: {err!r}"

    async def run(self, go: float) -> None:
        if self.trace.error is not None:
            return
        try:
            if self.variant == "direct":
                await self._run_direct(go)
                return
            asking = asyncio.create_task(self._ask(go)) if self.spec.ask else None
            await self._read()
            if asking is not None:
                await asking
        except Exception as err:
            self.trace.error = f"run: {err!r}"

    async def _ask(self, go: float) -> None:
        await asyncio.sleep(max(0.0, go + self.spec.ask_offset - time.time()))
        self.trace.ask_at = time.time()
        await self.ws.send(json.dumps({"type": "ask", "text": self.spec.ask}))

    async def _read(self) -> None:
        frames = self.trace.frames
        while self.ends < self.spec.answers:
            raw = await self.ws.recv()
            received = time.time()
            frame = json.loads(raw)
            seq = frame.get("seq")
            if seq is None:  # presence, pong: not room events
                self.trace.other_frames += 1
                self.trace.other_bytes += len(raw)
                self.trace.last_other_at = received
                continue
            kind = frame["type"]
            frames.append((received, seq, kind, frame.get("text") or ""))
            if kind in _END_TYPES:
                self.ends += 1
                self.trace.end_status = frame.get("status", "complete")

    async def _run_direct(self, go: float) -> None:
        if self.llm is None or self.spec.ask is None:
            raise RuntimeError("a direct member needs a question and an LLM client")
        await asyncio.sleep(max(0.0, go + self.spec.ask_offset - time.time()))
        frames = self.trace.frames
        parts: list[str] = []
        self.trace.ask_at = time.time()
        stream = await self.llm.chat.completions.create(
            model="simulator",
            messages=[{"role": "user", "content": self.spec.ask}],
            max_tokens=100_000,
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            async for chunk in stream:
                received = time.time()
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta is not None else None
                    if choice.index == 0 and text:
                        parts.append(text)
                        frames.append((received, len(frames) + 1, "delta", text))
        finally:
            await stream.close()
        frames.append((time.time(), len(frames) + 1, "end", "".join(parts)))
        self.trace.end_status = "complete"
        self.ends = 1

    async def close(self) -> None:
        if self.ws is not None:
            # Closing after the measurement: a failure to close changes nothing.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
