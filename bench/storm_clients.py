"""Client job of the reconnect-storm benchmark: members that join rooms on worker A, see events
there, and, the moment A dies under them, all reconnect to worker B (the chat server: with
`after=<last seq>`) at once; each member checks that its seqs run on without a gap or a repeat
across the two connections.

Steps (the orchestrator's barrier):
0. every member joined A (fresh joins, `connect_concurrency` at a time per process);
1. events before the kill: each room's speaker asks a short question and every member waits
   for its end; in the `long` rooms the speaker then asks a long one and every member waits for
   its first delta (it is still streaming on A when A is killed);
2. every member is back (its welcome from B), or gave up;
3. the answers that were running on A have ended for every member (B's reaper ends them
   `interrupted`), then each speaker says a last message and every member waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import websockets

from bench.pool import Barrier, run_async
from bench.procstat import own_cpu_seconds

FINAL_TEXT = "storm: everyone is back"
# How long a member tries to reach B again after a refused or failed handshake.
RECONNECT_PATIENCE = 60.0


@dataclass(slots=True)
class StormMember:
    room: str
    speaker: bool = False  # asks before the kill, says the last message after it
    long: bool = False  # (the speaker's room) an answer is still streaming at the kill


@dataclass(slots=True)
class StormJob:
    variant: Literal["server", "relay", "floor"]  # floor: bench.floor_app, no answers
    url_a: str  # ws://host:port of worker A (killed) and B
    url_b: str
    members: list[StormMember]
    short_question: str
    long_question: str
    connect_concurrency: int = 32
    # Handshakes in flight at once after the kill, per client process; 0: all at once.
    reconnect_concurrency: int = 0
    timeout: float = 120.0


@dataclass(slots=True)
class StormJobResult:
    members: int
    joined: int
    back: int
    resumed: int  # resumed welcomes (`resumed: true` with seq = the `after` sent)
    full: int  # full welcomes on the reconnect (the server could not resume)
    lost: int  # members with any problem (gap, repeat, double end, no final message, ...)
    problems: list[str]
    join_seconds: float
    dropped_at: list[float]  # wall clock, per member that saw A go
    back_at: list[float]  # wall clock, per member back on B (welcome received)
    retries: int  # handshakes to B that failed and were tried again
    last_seq: dict[str, list[int]] = field(default_factory=dict)  # room -> each member's last
    cpu_seconds: float = 0.0


class _Member:
    def __init__(self, spec: StormMember, job: StormJob) -> None:
        self.spec = spec
        self.job = job
        self.ws: Any = None
        self.last: int | None = None  # the last seq received (server)
        self.connections = 0
        self.resumed: bool | None = None
        self.problems: list[str] = []
        self.started: set[str] = set()
        self.ended: dict[str, int] = {}
        self.final = False
        self.relay_frames = 0
        self.dropped_at: float | None = None
        self.back_at: float | None = None
        self.retries = 0
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    def url(self, base: str) -> str:
        if self.job.variant != "server":
            return f"{base}/{self.spec.room}"
        after = f"?after={self.last}" if self.last is not None and base == self.job.url_b else ""
        return f"{base}/ws/rooms/{self.spec.room}/{after}"

    async def _open(self, base: str) -> None:
        self.ws = await websockets.connect(
            self.url(base), ping_interval=None, compression=None, max_size=2**22, open_timeout=60
        )
        self.connections += 1
        while True:
            frame = json.loads(await self.ws.recv())
            if frame.get("type") == "welcome":
                self._welcome(frame)
                return

    def _welcome(self, frame: dict[str, Any]) -> None:
        if self.job.variant != "server":
            return
        seq = int(frame["seq"])
        if self.connections == 1:
            self.last = seq
            return
        self.resumed = bool(frame.get("resumed"))
        if not self.resumed:
            # Not lost (the welcome's history has it), but not what a resume should give.
            self.problems.append(f"full welcome at {seq} after {self.last}")
        elif seq != self.last:
            self.problems.append(f"resumed welcome at {seq}, sent after={self.last}")
        self.last = seq

    def _event(self, frame: dict[str, Any]) -> None:
        if self.job.variant != "server":
            self.relay_frames += 1
            return
        seq = frame.get("seq")
        if seq is None:
            return  # presence, typing, pong: not room events
        if self.last is not None and seq != self.last + 1:
            what = "repeated" if seq <= self.last else "skipped"
            self.problems.append(f"seq {seq} after {self.last} ({what})")
        self.last = seq
        kind = frame.get("type")
        if kind == "answer.start":
            self.started.add(frame["id"])
        elif kind == "answer.end":
            answer = frame["answer_id"]
            self.ended[answer] = self.ended.get(answer, 0) + 1
            if self.ended[answer] > 1:
                self.problems.append(f"answer {answer} ended twice")
        elif kind == "message" and frame.get("text") == FINAL_TEXT:
            self.final = True

    async def join(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                await self._open(self.job.url_a)
            except Exception as err:
                self.problems.append(f"join: {err!r}")
                return
        self.reader = asyncio.create_task(self._read_then_reconnect())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self._event(json.loads(raw))
                self.changed.set()

    async def _read_then_reconnect(self) -> None:
        await self._read()
        # A is gone (or closed us): back to B at once, as a client that lost its socket does.
        self.dropped_at = time.time()
        deadline = time.monotonic() + RECONNECT_PATIENCE
        async with self._reconnect_gate():
            while True:
                try:
                    await self._open(self.job.url_b)
                    break
                except Exception as err:
                    if time.monotonic() > deadline:
                        self.problems.append(f"reconnect: {err!r}")
                        self.changed.set()
                        return
                    self.retries += 1
                    await asyncio.sleep(0.05)
        self.back_at = time.time()
        self.changed.set()
        await self._read()

    def _reconnect_gate(self) -> Any:
        gate = _RECONNECT_GATE
        return gate if gate is not None else contextlib.nullcontext()

    async def until(self, condition: Callable[[], bool], deadline: float) -> bool:
        while not condition():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True

    def running(self) -> set[str]:
        return {answer for answer in self.started if not self.ended.get(answer)}

    async def send(self, frame: dict[str, Any]) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)


_RECONNECT_GATE: asyncio.Semaphore | None = None


def storm_job(job: StormJob, barrier: Barrier) -> StormJobResult:
    return run_async(_storm_job(job, barrier))


async def _storm_job(job: StormJob, barrier: Barrier) -> StormJobResult:
    global _RECONNECT_GATE
    _RECONNECT_GATE = (
        asyncio.Semaphore(job.reconnect_concurrency) if job.reconnect_concurrency else None
    )
    cpu_before = own_cpu_seconds()
    members = [_Member(spec, job) for spec in job.members]
    started = time.monotonic()
    gate = asyncio.Semaphore(job.connect_concurrency)
    await asyncio.gather(*(member.join(gate) for member in members))
    join_seconds = time.monotonic() - started
    joined = [member for member in members if member.reader is not None]
    await barrier.arrive(0, len(joined))
    deadline = time.monotonic() + job.timeout
    try:
        await _before_kill(job, joined, deadline)
        await barrier.arrive(1, len(joined))
        # The orchestrator kills A; every member reconnects by itself as it sees the drop.
        await asyncio.gather(
            *(
                m.until(lambda m=m: m.back_at is not None or bool(m.problems), deadline)
                for m in joined
            )
        )
        await barrier.arrive(2, sum(1 for m in joined if m.back_at is not None))
        await _after_back(job, joined, deadline)
    finally:
        await asyncio.gather(*(member.close() for member in members))
    problems = [f"{m.spec.room}: {p}" for m in members for p in m.problems]
    last_seq: dict[str, list[int]] = {}
    for member in joined:
        if member.last is not None:
            last_seq.setdefault(member.spec.room, []).append(member.last)
    return StormJobResult(
        members=len(members),
        joined=len(joined),
        back=sum(1 for m in members if m.back_at is not None),
        resumed=sum(1 for m in members if m.resumed),
        full=sum(1 for m in members if m.resumed is False),
        lost=sum(1 for m in members if m.problems),
        problems=problems[:10],
        join_seconds=join_seconds,
        dropped_at=[m.dropped_at for m in members if m.dropped_at is not None],
        back_at=[m.back_at for m in members if m.back_at is not None],
        retries=sum(m.retries for m in members),
        last_seq=last_seq,
        cpu_seconds=own_cpu_seconds() - cpu_before,
    )


async def _before_kill(job: StormJob, members: list[_Member], deadline: float) -> None:
    if job.variant == "floor":
        return
    if job.variant == "relay":
        # The relay's rooms see an answer too (its frames carry no resumable seq).
        for member in members:
            if member.spec.speaker:
                await member.send({"type": "ask", "text": job.short_question})
        await asyncio.gather(*(m.until(lambda m=m: m.relay_frames > 0, deadline) for m in members))
        return
    for member in members:
        if member.spec.speaker:
            await member.send({"type": "ask", "text": job.short_question})
    # Every member saw its room's first answer start and end.
    await asyncio.gather(
        *(m.until(lambda m=m: bool(m.started) and not m.running(), deadline) for m in members)
    )
    for member in members:
        if member.spec.speaker and member.spec.long:
            await member.send({"type": "ask", "text": job.long_question})
    long_rooms = {m.spec.room for m in members if m.spec.speaker and m.spec.long}
    # In those rooms, every member is inside the long answer when A dies.
    await asyncio.gather(
        *(
            m.until(lambda m=m: bool(m.running()), deadline)
            for m in members
            if m.spec.room in long_rooms
        )
    )


async def _after_back(job: StormJob, members: list[_Member], deadline: float) -> None:
    if job.variant != "server":
        return
    back = [m for m in members if m.back_at is not None]
    # The answers A was writing end once for everyone (B's reaper: `interrupted`).
    await asyncio.gather(*(m.until(lambda m=m: not m.running(), deadline) for m in back))
    for member in back:
        if member.spec.speaker:
            await member.send({"type": "say", "text": FINAL_TEXT})
    await asyncio.gather(*(m.until(lambda m=m: m.final, deadline) for m in back))
    for member in back:
        if member.running():
            member.problems.append(f"answers never ended: {sorted(member.running())}")
        if not member.final:
            member.problems.append("the last message never came")


def connect_only(job: StormJob) -> int:
    """Join every member to `url_a` and close again (warming a process up); how many joined."""
    return run_async(_connect_only(job))


async def _connect_only(job: StormJob) -> int:
    members = [_Member(spec, job) for spec in job.members]
    gate = asyncio.Semaphore(job.connect_concurrency)
    await asyncio.gather(*(member.join(gate) for member in members))
    joined = sum(1 for member in members if member.reader is not None)
    await asyncio.gather(*(member.close() for member in members))
    return joined
