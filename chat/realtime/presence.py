"""Presence: telling every member, on every worker, who is in the room.

The member list itself lives in the coordinator. When it changes, the worker that saw the
change sends `presence.changed` to the room's channel-layer group, which every worker serving
the room is in; each then pushes one `presence` frame to its own members of that room,
coalesced (at most one per room per `PRESENCE_DEBOUNCE`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings

from chat.background import keep_until_done, start_detached
from chat.protocol import dumps, presence_frame
from chat.realtime.channel_layer import group_send_many
from chat.realtime.coordination import Coordinator
from chat.realtime.hub import RoomHub

logger = logging.getLogger(__name__)

# A room's list is pushed once it has not changed for this long (PRESENCE_QUIET_WHEN_BUSY if
# it was pushed less than PRESENCE_BURST_INTERVAL ago), and at the latest PRESENCE_BURST_INTERVAL
# after the change that started the wait: a crowd joining for seconds (a reconnect storm) sends
# each member one frame a second, not ten, each with the whole list (measured: the frames to
# members were an eighth of a worker's time in a storm of 5,000; docs/benchmarks.md,
# "Reconnect storm"), and a burst that ends is told soon after its last change, not up to a
# second later, into the answer that was asked meanwhile (measured: 200 members' lists, pushed
# into an answer's first tokens, were its slowest deliveries; docs/benchmarks.md, "Fixes").
PRESENCE_DEBOUNCE = 0.1
PRESENCE_QUIET_WHEN_BUSY = 0.25
PRESENCE_BURST_INTERVAL = 1.0
# A change is told to the other workers this long after it, once for every change in that time
# to any room: a burst of joins (a reconnect storm) costs one notice per room, not one per
# join, and the notices of all the rooms changed meanwhile go to Redis together (one
# `group_send_many`; one `group_send` per room was an eighth of a worker's time in a storm of
# 5,000 in 200 rooms). Each worker then pushes one frame per PRESENCE_DEBOUNCE at most.
NOTIFY_DELAY = 0.05
# A failed notice (Redis away) is tried again after these delays, then left to the next change.
NOTIFY_RETRIES = (0.1, 0.5, 2.0)


def room_group(room: str) -> str:
    return f"room.{room}"


class Presence:
    """This worker's side of presence: its rooms' channel-layer groups, and the frames."""

    def __init__(self, *, coordinator: Coordinator, hub: RoomHub, layer: Any) -> None:
        self._coordinator = coordinator
        self._hub = hub
        self._layer = layer
        self.control_channel = ""  # set by the runtime once the layer gave it one
        # Rooms whose group we are in, with when a member last joined one here.
        self._groups: dict[str, float] = {}
        # Rooms whose group this worker's control channel is in (as far as it knows).
        self._watched: set[str] = set()
        # When this worker joined each room's group: what was told to the group before then
        # (a removal, a room made private) never reached it (Membership.join reads again).
        self._watched_at: dict[str, float] = {}
        # Rooms whose group_add is on its way: the room's other joiners wait for it too.
        self._adding: dict[str, asyncio.Task[None]] = {}
        self._pending: set[str] = set()
        self._changed: dict[str, float] = {}  # room -> its last change seen (pending rooms)
        self._pushed: dict[str, float] = {}  # room -> when its last frame was pushed here
        self._due: set[str] = set()  # rooms changed since the last notice went out
        self._notifier: asyncio.Task[None] | None = None
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def watch_room(self, room: str) -> None:
        """Receive this room's presence changes on our control channel. The group is joined
        once per room and worker, not once per member: it is this worker's control channel that
        is in it, whoever joins. Groups lost with Redis' data are joined again by
        `rejoin_groups`, expiring ones by the refresh loop."""
        self._groups[room] = time.monotonic()
        adding = self._adding.get(room)
        if adding is None:
            if room in self._watched:
                return
            adding = asyncio.ensure_future(self._add_group(room))
            self._adding[room] = adding
            adding.add_done_callback(lambda _: self._adding.pop(room, None))
        # Shielded: one joiner cancelled must not cancel the group_add the others wait for.
        await asyncio.shield(adding)

    async def _add_group(self, room: str) -> None:
        await self._layer.group_add(room_group(room), self.control_channel)
        self._watched.add(room)
        self._watched_at[room] = time.monotonic()

    def watching_since(self, room: str) -> float | None:
        """When this worker last joined `room`'s group (None: it is not in it)."""
        return self._watched_at.get(room) if room in self._watched else None

    async def changed(self, room: str) -> None:
        """Tell every worker serving `room` that its member list changed: once for all the
        changes of the next NOTIFY_DELAY (see there), after them. Nothing once stopped: the
        worker is going away (its members' leaves come after)."""
        if self._stopped:
            return
        self._due.add(room)
        if self._notifier is None:
            self._notifier = start_detached(self._notify_later(), name="presence notices")
            keep_until_done(self._tasks, self._notifier, what="Presence notices")

    async def _notify_later(self) -> None:
        try:
            while self._due:
                await asyncio.sleep(NOTIFY_DELAY)
                # Changes from here on go in the next notice.
                rooms, self._due = sorted(self._due), set()
                await self._notify_with_retries(rooms)
        finally:
            self._notifier = None

    async def _notify_with_retries(self, rooms: list[str]) -> None:
        for delay in (*NOTIFY_RETRIES, None):
            try:
                await self.notify(*rooms)
                return
            except Exception as err:
                if delay is None:
                    logger.warning(
                        "Presence notice of %d room(s) failed (%s); left to their next change",
                        len(rooms),
                        err,
                    )
                    return
                logger.info(
                    "Presence notice of %d room(s) failed (%s); trying again", len(rooms), err
                )
                await asyncio.sleep(delay)

    async def notify(self, *rooms: str) -> None:
        """Tell every worker serving these rooms now that their member lists changed."""
        await group_send_many(
            self._layer,
            [(room_group(room), {"type": "presence.changed", "room": room}) for room in rooms],
        )

    def schedule_push(self, room: str) -> None:
        """Coalesce presence changes: one `presence` frame once the room's list is quiet, at
        most one per PRESENCE_BURST_INTERVAL while it keeps changing (see there). Measured: 200
        members joining at once sent each member ~190 frames, enough to delay an answer's
        deltas behind them by a second (docs/benchmarks.md)."""
        now = time.monotonic()
        self._changed[room] = now
        if room in self._pending:
            return
        self._pending.add(room)
        last = self._pushed.get(room)
        busy = last is not None and now - last < PRESENCE_BURST_INTERVAL
        quiet = PRESENCE_QUIET_WHEN_BUSY if busy else PRESENCE_DEBOUNCE

        async def push_later() -> None:
            deadline = now + PRESENCE_BURST_INTERVAL
            while True:
                # Until the list has been quiet long enough, or the wait is at its bound.
                at = time.monotonic()
                wait = min(self._changed.get(room, now) + quiet, deadline) - at
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._pending.discard(room)
            self._changed.pop(room, None)
            self._pushed[room] = time.monotonic()
            if len(self._pushed) > 10_000:  # bounded: old entries only shorten a wait
                self._pushed = {
                    r: t for r, t in self._pushed.items() if t > now - PRESENCE_BURST_INTERVAL
                }
            await self._push(room)

        task = start_detached(push_later(), name=f"presence {room}")
        keep_until_done(self._tasks, task, what=f"Presence update of {room}")

    async def _push(self, room: str) -> None:
        # No leaving the group here: members may be between a close and their resume. Groups
        # of rooms nobody here uses any more are left by `leave_idle_groups`.
        outboxes = self._hub.connections(room)
        if not outboxes:
            return
        frame = dumps(presence_frame(await self._coordinator.members(room)))
        for outbox in outboxes:
            outbox.push(frame)

    async def run_group_refresh(self) -> None:
        """Re-join room groups before channels_redis expires them (long-lived sockets):
        every CHAT_GROUP_REFRESH_SECONDS, well inside CHAT_GROUP_EXPIRY_SECONDS."""
        while True:
            await asyncio.sleep(settings.CHAT_GROUP_REFRESH_SECONDS)
            await self.refresh_groups()

    async def refresh_groups(self) -> None:
        """Join our rooms' groups again (leaving those nobody here uses is
        `leave_idle_groups`' job, within CHAT_ROOM_STATE_GRACE_SECONDS)."""
        for room in list(self._groups):
            try:
                await self._layer.group_add(room_group(room), self.control_channel)
                self._watched.add(room)
            except Exception:
                self._watched.discard(room)  # its next joiner tries again
                logger.exception("Could not refresh group of room %s", room)

    async def leave_idle_groups(self, idle_seconds: float) -> int:
        """Leave the groups of rooms nobody here has been in for `idle_seconds` (not waiting
        for the next refresh, up to an hour away); how many."""
        before = time.monotonic() - idle_seconds
        served = set(self._hub.rooms())
        idle = [
            room
            for room, watched in self._groups.items()
            if room not in served and watched < before
        ]
        for room in idle:
            del self._groups[room]
            self._watched.discard(room)
            self._watched_at.pop(room, None)
            self._pushed.pop(room, None)
            await self._layer.group_discard(room_group(room), self.control_channel)
        return len(idle)

    async def rejoin_groups(self) -> None:
        """After Redis lost its data: join our rooms' groups again at once (not at the next
        refresh, up to an hour away), and have every worker push fresh presence lists."""
        await self.refresh_groups()
        await self.notify(*self._groups)

    async def stop(self) -> None:
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
