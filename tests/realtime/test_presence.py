"""Presence under a crowd joining (the speed issue's reconnect storm): the room's channel-layer
group is joined once per room and worker, whoever joins, and the other workers are told of a
burst of changes once, after the last of them; both keep working after Redis lost the groups.
The channel layer is a recording fake (the edge); the coordinator and hub are the real ones."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from chat.realtime import presence as presence_module
from chat.realtime.coordination import MemoryCoordinator
from chat.realtime.hub import RoomHub
from chat.realtime.log import RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.realtime.outbox import Outbox
from chat.realtime.presence import Presence, room_group
from tests.conftest import wait_for


class RecordingLayer:
    """A channel layer that records group operations; `fail` makes the next ones raise."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail = 0

    async def group_add(self, group: str, channel: str) -> None:
        await asyncio.sleep(0.01)  # a round trip: joiners arriving meanwhile must wait for it
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Redis is away")
        self.added.append((group, channel))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Redis is away")
        self.sent.append((group, message))

    async def group_discard(self, group: str, channel: str) -> None:
        return None


async def _no_history(room: str) -> RoomSeed:
    return RoomSeed(last_seq=0)


def _presence(layer: RecordingLayer) -> Presence:
    log = MemoryRoomLog(
        seeder=_no_history, retention_events=100, retention_seconds=60, view_size=100
    )
    presence = Presence(coordinator=MemoryCoordinator(), hub=RoomHub(log), layer=layer)
    presence.control_channel = "worker.me"
    return presence


async def test_a_crowd_joining_adds_the_worker_to_the_room_group_once() -> None:
    layer = RecordingLayer()
    presence = _presence(layer)
    # Everyone joining at once waits for the one group_add (none returns before it is done).
    await asyncio.gather(*(presence.watch_room("lobby") for _ in range(50)))
    assert layer.added == [(room_group("lobby"), "worker.me")]
    await presence.watch_room("lobby")
    await presence.watch_room("other")
    assert layer.added == [(room_group("lobby"), "worker.me"), (room_group("other"), "worker.me")]
    await presence.stop()


async def test_a_failed_group_add_is_tried_again_by_the_next_joiner() -> None:
    layer = RecordingLayer()
    presence = _presence(layer)
    layer.fail = 1
    results = await asyncio.gather(
        *(presence.watch_room("lobby") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    await presence.watch_room("lobby")
    assert layer.added == [(room_group("lobby"), "worker.me")]
    await presence.stop()


async def test_redis_losing_the_groups_makes_the_worker_join_them_again() -> None:
    layer = RecordingLayer()
    presence = _presence(layer)
    await presence.watch_room("lobby")
    await presence.rejoin_groups()  # what the coordinator calls after Redis lost its data
    assert layer.added == [(room_group("lobby"), "worker.me")] * 2
    # And every worker is told to push fresh member lists.
    assert [group for group, _ in layer.sent] == [room_group("lobby")]
    await presence.stop()


async def test_a_burst_of_changes_is_told_once_after_the_last_and_later_ones_again() -> None:
    layer = RecordingLayer()
    presence = _presence(layer)
    for _ in range(30):
        await presence.changed("lobby")
    await presence.changed("other")
    assert layer.sent == []  # told after the burst, not per change
    await asyncio.sleep(presence_module.NOTIFY_DELAY * 3)
    told = sorted(message["room"] for _, message in layer.sent)
    assert told == ["lobby", "other"]
    # A change after the notice went out is told again.
    await presence.changed("lobby")
    await asyncio.sleep(presence_module.NOTIFY_DELAY * 3)
    assert [message["room"] for _, message in layer.sent].count("lobby") == 2
    await presence.stop()


class BatchingLayer(RecordingLayer):
    """A layer that sends many groups' messages at once, as the Redis layer does."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        self.batches.append([group for group, _ in sends])
        for group, message in sends:
            await self.group_send(group, message)


async def test_the_rooms_changed_together_are_told_in_one_batch() -> None:
    """A reconnect storm changes every room at once: one batch for them, not a send each."""
    layer = BatchingLayer()
    presence = _presence(layer)
    for room in ("lobby", "other", "third", "lobby"):
        await presence.changed(room)
    await wait_for(lambda: layer.batches)
    assert layer.batches == [[room_group("lobby"), room_group("other"), room_group("third")]]
    await presence.stop()


async def test_a_notice_that_fails_is_sent_again() -> None:
    layer = RecordingLayer()
    presence = _presence(layer)
    layer.fail = 1
    await presence.changed("lobby")
    await asyncio.sleep(presence_module.NOTIFY_DELAY + presence_module.NOTIFY_RETRIES[0] + 0.2)
    assert [message["room"] for _, message in layer.sent] == ["lobby"]
    await presence.stop()


async def test_a_room_busy_with_changes_gets_one_frame_a_second_with_the_latest_list() -> None:
    """Each worker pushes a room's list to its members after a change; while changes keep
    coming (a crowd joining for seconds) at most one frame per PRESENCE_BURST_INTERVAL, each
    with the list as it is then: the last frame always shows the last change."""
    layer = RecordingLayer()
    log = MemoryRoomLog(
        seeder=_no_history, retention_events=100, retention_seconds=60, view_size=100
    )
    hub, coordinator = RoomHub(log), MemoryCoordinator()
    presence = Presence(coordinator=coordinator, hub=hub, layer=layer)
    frames: list[dict[str, Any]] = []

    async def send(frame: str) -> None:
        frames.append(json.loads(frame))

    async def close(code: int) -> None:
        return None

    outbox = Outbox(send=send, close=close, max_bytes=1_000_000)
    welcome = lambda seq, resumed, history: "{}"  # noqa: E731
    await hub.join("lobby", outbox, after=None, history_limit=10, welcome=welcome)
    began = time.monotonic()
    for n in range(30):  # 30 people arriving over ~1.5 s
        await coordinator.presence_add("lobby", f"c{n}", {"id": f"g:{n}", "name": f"P{n}"})
        presence.schedule_push("lobby")
        await asyncio.sleep(0.05)
    arriving = time.monotonic() - began
    await wait_for(lambda: any(len(f.get("members", ())) == 30 for f in frames), timeout=5)
    pushed = [f for f in frames if f.get("type") == "presence"]
    # Not one per arrival, nor one per 0.1 s: one per interval, plus the first and the last.
    assert len(pushed) <= arriving / presence_module.PRESENCE_BURST_INTERVAL + 2
    assert len(pushed[-1]["members"]) == 30
    await outbox.stop()
    await presence.stop()


async def test_a_burst_of_changes_is_pushed_once_when_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A room's list is pushed once it has been quiet for a moment, not part way through a
    burst and then again a whole interval later (into the answer asked meanwhile): people
    arriving faster than the quiet time get one frame, with all of them."""
    monkeypatch.setattr(presence_module, "PRESENCE_DEBOUNCE", 0.4)
    monkeypatch.setattr(presence_module, "PRESENCE_BURST_INTERVAL", 30.0)
    layer = RecordingLayer()
    log = MemoryRoomLog(
        seeder=_no_history, retention_events=100, retention_seconds=60, view_size=100
    )
    hub, coordinator = RoomHub(log), MemoryCoordinator()
    presence = Presence(coordinator=coordinator, hub=hub, layer=layer)
    frames: list[dict[str, Any]] = []

    async def send(frame: str) -> None:
        frames.append(json.loads(frame))

    async def close(code: int) -> None:
        return None

    outbox = Outbox(send=send, close=close, max_bytes=1_000_000)
    welcome = lambda seq, resumed, history: "{}"  # noqa: E731
    await hub.join("lobby", outbox, after=None, history_limit=10, welcome=welcome)
    for n in range(16):  # 0.05 s apart, well inside the quiet time, for twice as long
        await coordinator.presence_add("lobby", f"c{n}", {"id": f"g:{n}", "name": f"P{n}"})
        presence.schedule_push("lobby")
        await asyncio.sleep(0.05)
    await wait_for(lambda: any(f.get("type") == "presence" for f in frames), timeout=5)
    pushed = [f for f in frames if f.get("type") == "presence"]
    assert [len(f["members"]) for f in pushed] == [16]
    await outbox.stop()
    await presence.stop()


async def test_a_change_after_the_worker_stopped_starts_nothing() -> None:
    """Members leave after the worker's presence stopped (shutting down): no notice task is
    left pending in a loop that is going away."""
    layer = RecordingLayer()
    presence = _presence(layer)
    await presence.stop()
    await presence.changed("lobby")
    await asyncio.sleep(presence_module.NOTIFY_DELAY * 2)
    assert layer.sent == [] and presence._notifier is None
