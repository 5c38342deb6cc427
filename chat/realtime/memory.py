"""The embedded room log: everything in this process's memory (one worker)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chat.protocol import dumps
from chat.realtime.log import SEQ_RESTART_GAP, AppendsLater, Listener, RoomSeeder, Snapshot
from chat.realtime.redaction import REDACTED_TYPE, redacted_form, scrub, subject, touched_by
from chat.realtime.view import apply_to_view, render_history

_ANSWER_UPDATES = frozenset({"answer.sources", "answer.delta", "answer.end"})


@dataclass(slots=True)
class _Room:
    seq: int
    # Events held, as (seq, monotonic time appended, frame json); trimmed by count and age.
    events: deque[tuple[int, float, str]] = field(default_factory=deque)
    # The first seq this process may vouch for: nothing at or before it is held.
    floor: int = 0
    view: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    live: dict[str, list[str]] = field(default_factory=dict)
    # Messages redacted while their events are held (chat.realtime.redaction).
    redacted: set[str] = field(default_factory=set)
    listener: Listener | None = None
    used: float = field(default_factory=time.monotonic)  # last append, read or subscription


class MemoryRoomLog:
    """`RoomLog` for one process. Appends are synchronous under the event loop, so they are
    atomic with respect to every reader without locks."""

    def __init__(
        self,
        *,
        seeder: RoomSeeder,
        retention_events: int,
        retention_seconds: float,
        view_size: int,
    ) -> None:
        self._seeder = seeder
        self._retention_events = retention_events
        self._retention_seconds = retention_seconds
        self._view_size = view_size
        self._rooms: dict[str, _Room] = {}

    async def _room(self, name: str) -> _Room:
        room = self._rooms.get(name)
        if room is not None:
            room.used = time.monotonic()
        else:
            seed = await self._seeder(name)
            # Another task may have seeded the room while we awaited the database.
            room = self._rooms.get(name)
            if room is None:
                base = seed.last_seq + SEQ_RESTART_GAP if seed.last_seq else 0
                room = _Room(seq=base, floor=base)
                for message in seed.messages[-self._view_size :]:
                    room.view[message["id"]] = message
                self._rooms[name] = room
        return room

    async def append(
        self, room_name: str, event: dict[str, Any], *, token: str | None = None
    ) -> int | None:
        # In this process an append cannot be lost on the way back: `token` is not needed.
        return self._append_to(await self._room(room_name), event)

    def append_now(self, room_name: str, event: dict[str, Any]) -> int | None:
        room = self._rooms.get(room_name)
        if room is None:
            raise AppendsLater(room_name)  # seeding it from the database is a wait
        room.used = time.monotonic()
        return self._append_to(room, event)

    def _append_to(self, room: _Room, event: dict[str, Any]) -> int | None:
        if event["type"] in _ANSWER_UPDATES and event["answer_id"] not in room.live:
            return None  # That answer has ended (perhaps ended by someone else): nothing more.
        message_id = subject(event)
        if touched_by(event, room.redacted):
            # The rest of an answer redacted while being written; the sources of an answer
            # whose question was redacted.
            event = redacted_form(event)
        elif event["type"] == REDACTED_TYPE and message_id is not None:
            room.redacted.add(message_id)
            room.events = deque(
                (seq, at, scrub(frame, (message_id,))) for seq, at, frame in room.events
            )
        room.seq += 1
        seq = room.seq
        frame = dumps({"seq": seq, **event})
        now = time.monotonic()
        room.events.append((seq, now, frame))
        self._trim(room, now)
        apply_to_view(room.view, room.live, event, self._view_size, seq)
        if room.listener is not None:
            room.listener(seq, frame)
        return seq

    def _trim(self, room: _Room, now: float) -> None:
        events = room.events
        while events and (
            len(events) > self._retention_events or now - events[0][1] > self._retention_seconds
        ):
            room.floor = events.popleft()[0]

    async def snapshot(self, room_name: str, limit: int) -> Snapshot:
        room = await self._room(room_name)
        return Snapshot(seq=room.seq, history=render_history(room.view, room.live, limit))

    async def read_after(self, room_name: str, after: int) -> list[tuple[int, str]] | None:
        room = await self._room(room_name)
        if after < room.floor or after > room.seq:
            return None
        self._trim(room, time.monotonic())
        if after < room.floor:
            return None
        # Events are consecutive, so the wanted ones are the last (seq - after) of them.
        count = room.seq - after
        held = list(room.events)[len(room.events) - count :] if count else []
        return [(seq, frame) for seq, _, frame in held]

    async def live_answer(self, room_name: str, answer_id: str) -> dict[str, Any] | None:
        room = await self._room(room_name)
        if answer_id not in room.live:
            return None
        message = dict(room.view.get(answer_id) or {"id": answer_id})
        message["text"] = "".join(room.live[answer_id])
        return message

    async def live_answers(self, room_name: str) -> list[str]:
        room = await self._room(room_name)
        return list(room.live)

    async def live_answers_in(self, rooms: Sequence[str]) -> dict[str, list[str]]:
        return {name: await self.live_answers(name) for name in rooms}

    async def subscribe(self, room_name: str, listener: Listener) -> int:
        room = await self._room(room_name)
        room.listener = listener
        return room.seq

    async def unsubscribe(self, room_name: str) -> None:
        room = self._rooms.get(room_name)
        if room is not None:
            room.listener = None
            room.used = time.monotonic()

    def forget_idle(self, idle_seconds: float) -> int:
        """Drop the state of rooms nobody here reads, with no answer being written, unused for
        `idle_seconds`; how many were dropped. A room used again is seeded from the database
        (its seq restarts above it: a client resuming from before gets a full welcome)."""
        before = time.monotonic() - idle_seconds
        idle = [
            name
            for name, room in self._rooms.items()
            if room.listener is None and not room.live and room.used < before
        ]
        for name in idle:
            del self._rooms[name]
        return len(idle)

    async def close(self) -> None:
        self._rooms.clear()
