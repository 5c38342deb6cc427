"""The per-worker room hub: one reader of each room's log, delivering to local sockets.

Deltas do not travel through the channel layer: the hub subscribes to the room log once per
room and queues every event to each local connection whose cursor it follows, so members on
every worker see the same events in the same seq order (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chat.observability import metrics
from chat.protocol import CLOSE_RESTART
from chat.realtime.log import RoomLog
from chat.realtime.outbox import Outbox
from chat.realtime.redaction import redaction_of, scrub

logger = logging.getLogger(__name__)

# Recent events kept per room so a joining member catches up without reading the log.
RING_SIZE = 4096

T = TypeVar("T")

WelcomeBuilder = Callable[[int, bool, list[dict[str, Any]]], str]


@dataclass(slots=True)
class _RoomState:
    cursor: int = 0
    ring: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=RING_SIZE))
    members: set[Outbox] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Joins in progress (awaiting the log): the room is not forgotten under their feet.
    joining: int = 0
    # Messages redacted since this state was made: their events in the ring are scrubbed.
    redacted: set[str] = field(default_factory=set)
    # When the room last had an event here, or its first member (monotonic): where to look
    # for answers whose worker died (chat.answers.runner.REAP_ALL_SECONDS).
    active_at: float = field(default_factory=time.monotonic)


class RoomHub:
    """Delivers room events to this worker's connections, each from its own cursor."""

    def __init__(self, log: RoomLog) -> None:
        self._log = log
        self._rooms: dict[str, _RoomState] = {}
        # Reads of the log in flight, shared by the joins that need the same one (below).
        self._reads: dict[tuple[str, str, int], asyncio.Future[Any]] = {}
        # Members here now, and members who ever left (chat.reclaim reads both).
        self.connected = 0
        self.left_total = 0
        # Room events delivered here, ever: whether the worker is quiet (chat.gc_pacing).
        self.events_delivered = 0

    @property
    def joins_total(self) -> int:
        """Members who ever joined here (a join storm is many of them in little time)."""
        return self.connected + self.left_total

    async def _shared(self, key: tuple[str, str, int], read: Callable[[], Awaitable[T]]) -> T:
        """One read of the log for every join that asks for the same one while it is in flight:
        in a reconnect storm a room's members all resume from the same `after`, and a crowd
        joining fresh wants the same snapshot. Each read is still made after the join asked."""
        future = self._reads.get(key)
        if future is None:
            future = asyncio.ensure_future(read())
            self._reads[key] = future

            def done(finished: asyncio.Future[Any]) -> None:
                if self._reads.get(key) is finished:
                    del self._reads[key]
                if not finished.cancelled():
                    finished.exception()  # retrieved: every joiner may have gone

            future.add_done_callback(done)
        # Shielded: one joiner cancelled must not cancel the read the others wait for.
        result: T = await asyncio.shield(future)
        return result

    async def join(
        self,
        room: str,
        conn: Outbox,
        *,
        after: int | None,
        history_limit: int,
        welcome: WelcomeBuilder,
    ) -> bool:
        """Queue a `welcome`, then every event after it, then live events; True if resumed."""
        state = await self._ensure_room(room)
        state.joining += 1
        try:
            return await self._join(room, state, conn, after, history_limit, welcome)
        finally:
            state.joining -= 1
            self._forget_if_unused(room, state)

    async def _join(
        self,
        room: str,
        state: _RoomState,
        conn: Outbox,
        after: int | None,
        history_limit: int,
        welcome: WelcomeBuilder,
    ) -> bool:
        resumed = False
        if after is not None and after >= 0:
            backlog = await self._shared(
                ("after", room, after), lambda: self._log.read_after(room, after)
            )
            hello = welcome(after, True, [])
            # A backlog over the send buffer's bound would close the socket (4008) before
            # the client could read it, and it would resume into the same wall: a client
            # that missed that much gets a full welcome instead.
            if backlog and len(hello) + sum(len(f) for _, f in backlog) > conn.max_bytes:
                backlog = None
            if backlog is not None:
                resumed = True
                conn.push(hello)
                cursor = after
                for seq, frame in backlog:
                    if seq == cursor + 1:
                        conn.push(frame)
                        cursor = seq
        if not resumed:
            snapshot = await self._shared(
                ("snapshot", room, history_limit), lambda: self._log.snapshot(room, history_limit)
            )
            conn.push(welcome(snapshot.seq, False, snapshot.history))
            cursor = snapshot.seq
        # Catch up from our cursor to the hub's, then go live in the same tick (no await
        # between the last catch-up and joining `members`, so no event can slip between).
        while cursor < state.cursor:
            events = self._ring_after(state, cursor)
            if events is None:
                events = await self._log.read_after(room, cursor) or []
                if not events or events[0][0] != cursor + 1:
                    # The log moved on past us while we read: start over with a resume.
                    conn.close_soon(CLOSE_RESTART)
                    return resumed
            for seq, frame in events:
                if seq == cursor + 1:
                    conn.push(frame)
                    cursor = seq
        conn.cursor = cursor
        if conn not in state.members:
            state.members.add(conn)
            self.connected += 1
        return resumed

    def leave(self, room: str, conn: Outbox) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        if conn in state.members:
            state.members.remove(conn)
            self.connected -= 1
            self.left_total += 1
        self._forget_if_unused(room, state)

    def _forget_if_unused(self, room: str, state: _RoomState) -> None:
        """Stop reading the room's log once nobody here listens to it or is joining it."""
        if state.members or state.joining or self._rooms.get(room) is not state:
            return
        del self._rooms[room]
        metrics.ROOMS_WITH_MEMBERS.dec()
        task = asyncio.create_task(self._unsubscribe(room))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _unsubscribe(self, room: str) -> None:
        # Someone may have joined again since: their new subscription must stay. (The check
        # and the log's unsubscribe run in one tick: unsubscribe drops it before any await.)
        if room not in self._rooms:
            await self._log.unsubscribe(room)

    def is_empty(self, room: str) -> bool:
        """Whether `room`, followed here, has no event in its log yet: a new room, with no
        conversation (False for a room nobody here is in: not known)."""
        state = self._rooms.get(room)
        return state is not None and state.ready.is_set() and state.cursor == 0

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def rooms_active_since(self, since: float) -> list[str]:
        """The rooms with an event here, or made here, at `since` (monotonic) or later."""
        return [room for room, state in self._rooms.items() if state.active_at >= since]

    def connections(self, room: str) -> list[Outbox]:
        state = self._rooms.get(room)
        return list(state.members) if state else []

    async def _ensure_room(self, room: str) -> _RoomState:
        state = self._rooms.get(room)
        if state is None:
            state = _RoomState()
            self._rooms[room] = state
            metrics.ROOMS_WITH_MEMBERS.inc()
            try:
                state.cursor = await self._log.subscribe(room, self._listener(room, state))
            except BaseException:
                if self._rooms.pop(room, None) is not None:
                    metrics.ROOMS_WITH_MEMBERS.dec()
                state.ready.set()
                raise
            state.ready.set()
        else:
            await state.ready.wait()
            if self._rooms.get(room) is not state:
                # Its subscription failed (the joiner that started it got the error): try
                # again, rather than join a room state nobody delivers to.
                return await self._ensure_room(room)
        return state

    def _listener(self, room: str, state: _RoomState) -> Callable[[int, str], None]:
        def deliver(seq: int, frame: str) -> None:
            if seq <= state.cursor:
                return
            if seq != state.cursor + 1:
                # The log lost events (e.g. Redis restarted): nobody here can be sure of
                # their place any more; they reconnect with `after` and get a fresh welcome.
                logger.warning("Room %s jumped from seq %d to %d", room, state.cursor, seq)
                state.ring.clear()
                for conn in list(state.members):
                    conn.close_soon(CLOSE_RESTART)
                state.members.clear()
            state.cursor = seq
            state.active_at = time.monotonic()
            self.events_delivered += 1
            redacted = redaction_of(frame)
            if redacted is not None and redacted not in state.redacted:
                # A joiner catching up from the ring must not read what was just redacted.
                state.redacted.add(redacted)
                state.ring = deque(
                    ((s, scrub(f, (redacted,))) for s, f in state.ring), maxlen=RING_SIZE
                )
            state.ring.append((seq, frame))
            for conn in state.members:
                if seq == conn.cursor + 1:
                    conn.cursor = seq
                    conn.push(frame)
                elif seq > conn.cursor + 1:
                    conn.close_soon(CLOSE_RESTART)

        return deliver

    @staticmethod
    def _ring_after(state: _RoomState, cursor: int) -> list[tuple[int, str]] | None:
        ring = state.ring
        if not ring or ring[0][0] > cursor + 1:
            return None
        start = cursor + 1 - ring[0][0]
        return [ring[i] for i in range(start, len(ring))]
