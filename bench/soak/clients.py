"""A client process of the soak: the members of its rooms (bench.soak.member), a question in
each room every `ask_every` seconds from one of its members, a progress report to the
orchestrator every few seconds, and at the end the drain: no more questions or churn, every
answer ends, every member catches up with its room; then what was seen goes back."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from typing import Any

from bench.pool import Barrier, run_async
from bench.procstat import own_cpu_seconds
from bench.soak.member import Member
from bench.soak.plan import AskRecord, SoakJob, SoakJobResult
from bench.soak.tracker import RoomTrack, Tally

# Often enough that a sample's count of members connected is at most this old.
PROGRESS_SECONDS = 2.0
# After the drain: how long members get to come back (from away) and catch up.
SETTLE_SECONDS = 45.0


def soak_job(job: SoakJob, barrier: Barrier, progress: Any) -> SoakJobResult:
    """Entry point in a client process: step 0 is "ready"; the release starts the clock."""
    return run_async(Client(job, progress).run(barrier))


class Client:
    """Everything one client process runs and records."""

    def __init__(self, job: SoakJob, progress: Any) -> None:
        self.job = job
        self.size = job.size
        self.timeline = job.timeline
        self.ports = job.ports
        self.progress = progress
        self.rng = random.Random(job.seed)
        self.tally = Tally()
        self.counters: Counter[str] = Counter()
        self.rooms = {s.room: RoomTrack(s.room, self.tally) for s in job.slots}
        self.members = [Member(slot, self) for slot in job.slots]
        self.asks: dict[str, AskRecord] = {}
        self.ask_texts: dict[str, str] = {}
        self.background: set[asyncio.Task[Any]] = set()
        self.stopping = False
        self.connected_at_end = 0
        self.absent_at_end: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._t0 = 0.0

    def now(self) -> float:
        """Seconds since the start signal."""
        return time.time() - self._t0

    async def sleep_until(self, moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - self.now()))

    def posted(self, client_id: str, question_id: str) -> None:
        record = self.asks.get(client_id)
        if record is not None and record.state in ("pending", "unconfirmed"):
            record.state = "posted"
            record.question_id = question_id

    async def run(self, barrier: Barrier) -> SoakJobResult:
        cpu_before = own_cpu_seconds()
        await barrier.arrive(0, len(self.members))
        self._t0 = time.time()
        lives = [asyncio.create_task(member.live()) for member in self.members]
        helpers = [asyncio.create_task(self._asker(room)) for room in self.rooms]
        helpers.append(asyncio.create_task(self._report()))
        try:
            await self.sleep_until(self.timeline.ask_until)
            await self._drain()
            await self._settle()
        finally:
            self.stopping = True
            await asyncio.gather(*(member.close() for member in self.members))
            for task in [*helpers, *self.background]:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await asyncio.gather(*lives, return_exceptions=True)
            for task in lives:
                task.cancel()
        self._put_progress()
        return self._result(own_cpu_seconds() - cpu_before)

    # --- questions ------------------------------------------------------------------------

    async def _asker(self, room: str) -> None:
        """A question in `room` every `ask_every` seconds, from a member connected then."""
        try:
            await self._ask_in(room)
        except Exception as err:
            self.failures.append(f"asker of {room}: {err!r}")
            raise

    async def _ask_in(self, room: str) -> None:
        lo, hi = self.size.ask_every
        await self.sleep_until(self.timeline.ask_from + self.rng.uniform(0, hi))
        members = [m for m in self.members if m.slot.room == room]
        number = 0
        while self.now() < self.timeline.ask_until:
            present = [m for m in members if m.connected]
            if present:
                number += 1
                member = self.rng.choice(present)
                client_id = f"{member.slot.name}-q{number}"
                record = AskRecord(client_id, room, member.slot.name, sent_at=self.now())
                self.asks[client_id] = record
                self.counters["asks"] += 1
                await member.ask(record, self._question(room, number))
            await asyncio.sleep(self.rng.uniform(lo, hi))

    def _question(self, room: str, number: int) -> str:
        shape, rng = self.job.answers, self.rng
        if rng.random() < shape.long_share:
            tokens, tps = rng.randint(*shape.long_tokens), rng.uniform(*shape.long_tps)
        else:
            tokens, tps = rng.randint(*shape.short_tokens), rng.uniform(*shape.short_tps)
        return f"Soak question {number} in {room}. [[sim tps={tps:.0f} tokens={tokens}]]"

    # --- the end ----------------------------------------------------------------------------

    def _open_work(self) -> int:
        pending = sum(1 for record in self.asks.values() if record.state == "pending")
        return pending + sum(sum(map(len, room.open_work())) for room in self.rooms.values())

    async def _drain(self) -> None:
        """Until every question is posted (or given up) and every answer has ended."""
        while self.now() < self.timeline.stop_by and self._open_work():  # noqa: ASYNC110
            await asyncio.sleep(1.0)  # polled: the work ends in frames of many members
        for record in self.asks.values():
            if record.state == "pending":
                record.state = "unconfirmed"

    async def _settle(self) -> None:
        """Members come back and catch up; then: is anyone behind, is anything unfinished?"""
        deadline = self.now() + SETTLE_SECONDS
        while self.now() < deadline:
            behind = [m for m in self.members if not m.connected or self._behind(m)]
            if not behind:
                break
            await asyncio.sleep(0.5)
        self.connected_at_end = sum(1 for member in self.members if member.connected)
        self.absent_at_end = [
            {"member": m.track.label, "state": m.state, "cursor": m.track.cursor}
            for m in self.members
            if not m.connected
        ]
        for member in self.members:
            if member.connected and self._behind(member):
                self.tally.add(
                    "behind_at_end",
                    room=member.slot.room,
                    member=member.track.label,
                    cursor=member.track.cursor,
                    room_seq=member.room.max_seq,
                )
        for room in self.rooms.values():
            unended, unanswered = room.open_work()
            for answer_id in unended:
                self.tally.add("unended", room=room.name, answer=answer_id)
            for question_id in unanswered:
                self.tally.add("unanswered", room=room.name, question=question_id)

    @staticmethod
    def _behind(member: Member) -> bool:
        return (member.track.cursor or 0) < member.room.max_seq

    # --- reports ----------------------------------------------------------------------------

    async def _report(self) -> None:
        while True:
            self._put_progress()
            await asyncio.sleep(PROGRESS_SECONDS)

    def _put_progress(self) -> None:
        states = Counter(member.state for member in self.members)
        ended = sum(
            len(seen.end_seqs) > 0 for r in self.rooms.values() for seen in r.answers.values()
        )
        self.progress.put(
            {
                "process": self.job.process,
                "t": self.now(),
                "states": dict(states),
                "connected_by_worker": dict(Counter(m.worker for m in self.members if m.connected)),
                "events": sum(len(room.events) for room in self.rooms.values()),
                "frames": self.counters["frames"],
                "asks": len(self.asks),
                "answers_ended": ended,
                "violations": self.tally.total,
            }
        )

    def _result(self, cpu_seconds: float) -> SoakJobResult:
        rooms = {
            room.name: {
                "max_seq": room.max_seq,
                "events": len(room.events),
                "questions": {q: seq for q, (seq, _) in room.questions.items()},
                "answers": {a: _fields(seen) for a, seen in room.answers.items()},
            }
            for room in self.rooms.values()
        }
        self.counters["member sessions"] = sum(member.sessions for member in self.members)
        return SoakJobResult(
            process=self.job.process,
            tally=self.tally,
            counters=self.counters,
            rooms=rooms,
            asks_not_posted=[r for r in self.asks.values() if r.state != "posted"],
            asks=len(self.asks),
            cpu_seconds=cpu_seconds,
            connected_at_end=self.connected_at_end,
            absent_at_end=self.absent_at_end,
            failures=self.failures,
            members=len(self.members),
        )


def _fields(seen: Any) -> dict[str, Any]:
    return {name: getattr(seen, name) for name in seen.__dataclass_fields__}
