"""The room hub, driven by the in-memory room log: whenever a member joins, it gets a `welcome`
and then every event after it, in seq order, none missed and none twice; resume; leaving; and a
log that jumps. Every member has a real `Outbox` whose socket records what it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chat import protocol
from chat.protocol import CLOSE_RESTART
from chat.realtime import hub as hub_module
from chat.realtime.hub import RoomHub
from chat.realtime.log import SEQ_RESTART_GAP, Listener, RoomSeed, Snapshot
from chat.realtime.memory import MemoryRoomLog
from chat.realtime.outbox import Outbox
from tests.conftest import wait_for

ROOM = "lobby"
BIG = 1_000_000  # a send buffer no test fills unless it means to


async def no_history(room: str) -> RoomSeed:
    return RoomSeed(last_seq=0)


class Pause:
    """One call of the log held after it has read (`arrived`), until `release()`."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self._release = asyncio.Event()

    def release(self) -> None:
        self._release.set()

    async def wait(self) -> None:
        self.arrived.set()
        await self._release.wait()


class SteppedLog(MemoryRoomLog):
    """The in-memory log, recording (un)subscriptions and reads, whose reads can be held at will
    (`hold`) or made to give the event loop away a few times (`jitter`), as a networked log
    would: events get appended between a join's read and its going live. `lagging`: events
    reach the subscriber from a reader task, after the append returned, as from Redis (a
    `welcome` can then be ahead of the hub)."""

    def __init__(self, *, retention_events: int = 10_000, lagging: bool = False) -> None:
        super().__init__(
            seeder=no_history,
            retention_events=retention_events,
            retention_seconds=3600,
            view_size=50,
        )
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.listeners: dict[str, Listener] = {}
        self.reads: list[int] = []  # the `after` of every read_after
        self.jitter: random.Random | None = None
        self._holds: dict[str, Pause] = {}
        self._lagging = lagging
        self._deliveries: asyncio.Queue[tuple[Listener, int, str]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self.delivered = 0  # lagging: the last seq the reader gave the subscriber
        self.snapshots_ahead = 0  # lagging: snapshots taken past what the subscriber had

    def hold(self, method: str) -> Pause:
        """Hold the next call of `method` (`snapshot`, `read_after`, `subscribe`)."""
        pause = self._holds[method] = Pause()
        return pause

    async def _pause(self, method: str) -> None:
        pause = self._holds.pop(method, None)
        if pause is not None:
            await pause.wait()
        if self.jitter is not None:
            for _ in range(self.jitter.randrange(4)):
                await asyncio.sleep(0)

    async def snapshot(self, room_name: str, limit: int) -> Snapshot:
        snapshot = await super().snapshot(room_name, limit)
        if self._lagging and snapshot.seq > self.delivered:
            self.snapshots_ahead += 1
        await self._pause("snapshot")
        return snapshot

    async def read_after(self, room_name: str, after: int) -> list[tuple[int, str]] | None:
        self.reads.append(after)
        events = await super().read_after(room_name, after)
        await self._pause("read_after")
        return events

    async def subscribe(self, room_name: str, listener: Listener) -> int:
        # Held before subscribing: the listener and the seq it returns must stay one step.
        await self._pause("subscribe")
        self.subscribed.append(room_name)
        self.listeners[room_name] = listener
        if self._lagging:
            listener = self._lag(listener)
        return await super().subscribe(room_name, listener)

    def _lag(self, listener: Listener) -> Listener:
        def deliver(seq: int, frame: str) -> None:
            self._deliveries.put_nowait((listener, seq, frame))
            if self._reader is None:
                self._reader = asyncio.create_task(self._read())

        return deliver

    async def _read(self) -> None:
        while True:
            listener, seq, frame = await self._deliveries.get()
            await self._pause("deliver")
            self.delivered = seq
            listener(seq, frame)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await super().close()

    async def unsubscribe(self, room_name: str) -> None:
        self.unsubscribed.append(room_name)
        await super().unsubscribe(room_name)

    def lose_events(self, room_name: str, count: int) -> None:
        """What a Redis log does once it lost its data and starts from the database again: its
        seq goes on `count` further and it holds none of the events before."""
        room = self._rooms[room_name]
        room.seq += count
        room.events.clear()
        room.floor = room.seq

    async def seq(self, room_name: str = ROOM) -> int:
        return (await super().snapshot(room_name, 0)).seq


class Member:
    """One connection: a real `Outbox` whose socket records the frames and the close code."""

    def __init__(self, max_bytes: int = BIG) -> None:
        self.frames: list[dict[str, Any]] = []
        self.closed: list[int] = []
        self.outbox = Outbox(send=self._send, close=self._close, max_bytes=max_bytes)

    async def _send(self, frame: str) -> None:
        self.frames.append(json.loads(frame))

    async def _close(self, code: int) -> None:
        self.closed.append(code)

    @property
    def welcome(self) -> dict[str, Any]:
        assert self.frames and self.frames[0]["type"] == "welcome", self.frames[:1]
        return self.frames[0]

    @property
    def seqs(self) -> list[int]:
        """The seq of every room event received, in the order received."""
        return [f["seq"] for f in self.frames[1:]]

    def last_seq(self) -> int | None:
        if not self.frames:
            return None
        return self.frames[-1]["seq"]

    async def received_up_to(self, seq: int) -> None:
        await wait_for(lambda: self.last_seq() == seq)

    def assert_gapless(self, last: int) -> None:
        """A welcome, then each event after it up to `last`, exactly once and in order."""
        assert [f["type"] for f in self.frames].count("welcome") == 1
        assert self.seqs == list(range(self.welcome["seq"] + 1, last + 1))


@pytest.fixture
async def new_member() -> AsyncIterator[Callable[..., Member]]:
    """Makes members; their writers are stopped when the test ends."""
    made: list[Member] = []

    def make(max_bytes: int = BIG) -> Member:
        member = Member(max_bytes)
        made.append(member)
        return member

    yield make
    for member in made:
        await member.outbox.stop()


def welcome(seq: int, resumed: bool, history: list[dict[str, Any]]) -> str:
    return protocol.dumps({"type": "welcome", "seq": seq, "resumed": resumed, "history": history})


async def join(
    hub: RoomHub, member: Member, *, after: int | None = None, history_limit: int = 50
) -> bool:
    return await hub.join(
        ROOM, member.outbox, after=after, history_limit=history_limit, welcome=welcome
    )


def question(n: int, padding: int = 0) -> dict[str, Any]:
    return protocol.question_event(
        id=f"q{n}",
        user={"id": "u", "name": "U"},
        text=f"question {n}" + "." * padding,
        created="t",
        client_id=None,
    )


async def post(log: SteppedLog, count: int, padding: int = 0) -> int:
    """Append `count` questions (`q<seq>`); returns the last seq."""
    seq = 0
    for _ in range(count):
        seq = await log.append(ROOM, question(await log.seq() + 1, padding)) or 0
    return seq


# --- joining --------------------------------------------------------------------------------


async def test_a_joining_member_gets_a_welcome_then_every_later_event_in_order(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    await post(log, 3)
    member = new_member()
    assert await join(hub, member) is False
    last = await post(log, 4)
    await member.received_up_to(last)
    assert member.welcome == {
        "type": "welcome",
        "seq": 3,
        "resumed": False,
        "history": member.welcome["history"],
    }
    assert [m["id"] for m in member.welcome["history"]] == ["q1", "q2", "q3"]
    member.assert_gapless(7)
    assert [f["id"] for f in member.frames[1:]] == ["q4", "q5", "q6", "q7"]
    assert member.outbox.cursor == 7


async def test_the_hub_counts_the_room_events_it_delivered(
    new_member: Callable[..., Member],
) -> None:
    """Whether the worker is quiet enough for a full collection (chat.gc_pacing)."""
    log = SteppedLog()
    hub = RoomHub(log)
    member = new_member()
    await join(hub, member)
    assert hub.events_delivered == 0
    last = await post(log, 4)
    await member.received_up_to(last)
    assert hub.events_delivered == 4


async def test_a_room_is_active_from_its_first_member_and_again_at_each_event(
    new_member: Callable[..., Member],
) -> None:
    """Where the orphan reaper looks twice a second (chat.answers.runner.REAP_ALL_SECONDS)."""
    log = SteppedLog()
    hub = RoomHub(log)
    before = time.monotonic()
    member = new_member()
    await join(hub, member)
    assert hub.rooms_active_since(before) == [ROOM]
    quiet_from = time.monotonic()
    assert hub.rooms_active_since(quiet_from) == []
    last = await post(log, 1)
    await member.received_up_to(last)
    assert hub.rooms_active_since(quiet_from) == [ROOM]


async def test_events_appended_between_a_joins_snapshot_and_going_live_are_delivered_once(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    first = new_member()
    await join(hub, first)
    await post(log, 2)
    joiner = new_member()
    held = log.hold("snapshot")
    joining = asyncio.create_task(join(hub, joiner))
    await held.arrived.wait()  # the joiner's welcome will say seq 2
    await post(log, 3)  # 3..5 reach the hub (and `first`) while the joiner is not live yet
    held.release()
    await joining
    last = await post(log, 2)
    await joiner.received_up_to(last)
    await first.received_up_to(last)
    assert joiner.welcome["seq"] == 2
    joiner.assert_gapless(7)
    first.assert_gapless(7)
    assert log.reads == []  # caught up from the hub's recent events, not the log


async def test_a_joiner_behind_the_hubs_ring_catches_up_from_the_log(
    monkeypatch: pytest.MonkeyPatch, new_member: Callable[..., Member]
) -> None:
    monkeypatch.setattr(hub_module, "RING_SIZE", 4)
    log = SteppedLog()
    hub = RoomHub(log)
    await join(hub, new_member())
    await post(log, 3)
    joiner = new_member()
    snapshot = log.hold("snapshot")
    joining = asyncio.create_task(join(hub, joiner))
    await snapshot.arrived.wait()
    await post(log, 10)  # 4..13: the ring keeps 10..13 only
    reading = log.hold("read_after")
    snapshot.release()
    await reading.arrived.wait()  # the joiner read 4..13 from the log; more come meanwhile
    await post(log, 2)  # 14, 15: from the ring
    reading.release()
    await joining
    await post(log, 1)
    await joiner.received_up_to(16)
    assert joiner.welcome["seq"] == 3
    joiner.assert_gapless(16)
    assert log.reads == [3]  # once from the log (4..13), then from the ring (14, 15)


async def test_a_joiner_whose_missed_events_are_gone_from_ring_and_log_is_closed_with_1012(
    monkeypatch: pytest.MonkeyPatch, new_member: Callable[..., Member]
) -> None:
    monkeypatch.setattr(hub_module, "RING_SIZE", 4)
    log = SteppedLog(retention_events=5)
    hub = RoomHub(log)
    first = new_member()
    await join(hub, first)
    await post(log, 3)
    joiner = new_member()
    snapshot = log.hold("snapshot")
    joining = asyncio.create_task(join(hub, joiner))
    await snapshot.arrived.wait()
    await post(log, 10)  # the log now holds 9..13, the ring 10..13: 4..8 are gone
    snapshot.release()
    assert await joining is False
    await wait_for(lambda: joiner.closed)
    assert joiner.closed == [CLOSE_RESTART]
    assert joiner.seqs == []  # its welcome (seq 3) at most, never a gap
    assert hub.connections(ROOM) == [first.outbox]
    await first.received_up_to(13)
    first.assert_gapless(13)


@pytest.mark.parametrize("lagging", [False, True], ids=["in-step", "lagging"])
async def test_members_joining_and_resuming_during_appends_get_each_event_once_in_order(
    new_member: Callable[..., Member], lagging: bool
) -> None:
    """Many joins racing many appends, with the log giving the loop away at random between
    reads and (lagging) before it delivers; seeded, so a failure repeats."""
    log = SteppedLog(lagging=lagging)
    log.jitter = random.Random(20240611)
    pace = random.Random(7)
    hub = RoomHub(log)
    joined: list[tuple[Member, int | None]] = []

    async def appender() -> None:
        for n in range(1, 301):
            await log.append(ROOM, question(n))
            for _ in range(pace.randrange(3)):
                await asyncio.sleep(0)

    async def joiner(index: int) -> None:
        for _ in range(pace.randrange(400)):
            await asyncio.sleep(0)
        after = None
        if index % 3 == 0:
            after = pace.randint(0, await log.seq())
        member = new_member()
        resumed = await join(hub, member, after=after)
        assert resumed is (after is not None)
        joined.append((member, after))

    try:
        await asyncio.gather(appender(), *(joiner(i) for i in range(40)))
        await log.append(ROOM, question(301))
        assert len(joined) == 40
        for member, after in joined:
            await member.received_up_to(301)
            member.assert_gapless(301)
            if after is not None:
                assert (member.welcome["seq"], member.welcome["resumed"]) == (after, True)
            assert member.closed == []
        assert {id(m.outbox) for m, _ in joined} == {id(c) for c in hub.connections(ROOM)}
        if lagging:  # the case this is for did happen
            assert log.snapshots_ahead > 0
    finally:
        await log.close()


# --- resuming -------------------------------------------------------------------------------


async def test_a_resume_gets_exactly_the_events_after_its_cursor(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    await post(log, 10)
    member = new_member()
    assert await join(hub, member, after=4) is True
    await post(log, 2)
    await member.received_up_to(12)
    assert member.welcome == {"type": "welcome", "seq": 4, "resumed": True, "history": []}
    member.assert_gapless(12)


async def test_a_crowd_resuming_from_the_same_cursor_reads_the_log_once(
    new_member: Callable[..., Member],
) -> None:
    """A reconnect storm: a room's members all resume from the same `after` at once. The hub
    reads that backlog once for all of them, and each still gets every event once, in order,
    including those appended while they join."""
    log = SteppedLog()
    hub = RoomHub(log)
    await post(log, 10)
    first = new_member()
    await join(hub, first)  # the room is subscribed: the crowd's reads are the resumes only
    log.reads.clear()
    pause = log.hold("read_after")
    crowd = [new_member() for _ in range(20)]
    joins = [asyncio.create_task(join(hub, member, after=6)) for member in crowd]
    await pause.arrived.wait()
    await post(log, 3)  # appended while the shared read is held
    pause.release()
    assert await asyncio.gather(*joins) == [True] * 20
    assert log.reads == [6]
    await post(log, 2)
    for member in crowd:
        await member.received_up_to(15)
        assert member.welcome["seq"] == 6
        member.assert_gapless(15)


async def test_a_resume_at_the_last_seq_gets_only_later_events(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    await post(log, 5)
    member = new_member()
    assert await join(hub, member, after=5) is True
    await post(log, 1)
    await member.received_up_to(6)
    assert member.welcome["seq"] == 5
    member.assert_gapless(6)


async def test_a_resume_from_a_cursor_the_log_no_longer_holds_gets_a_full_welcome(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog(retention_events=3)
    hub = RoomHub(log)
    await post(log, 8)  # the log holds 6..8
    member = new_member()
    assert await join(hub, member, after=2) is False
    await post(log, 1)
    await member.received_up_to(9)
    assert (member.welcome["seq"], member.welcome["resumed"]) == (8, False)
    assert [m["id"] for m in member.welcome["history"]][-1] == "q8"
    member.assert_gapless(9)


async def test_a_resume_from_beyond_the_logs_seq_gets_a_full_welcome(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    await post(log, 3)
    member = new_member()
    assert await join(hub, member, after=50) is False
    await post(log, 1)
    await member.received_up_to(4)
    assert (member.welcome["seq"], member.welcome["resumed"]) == (3, False)
    member.assert_gapless(4)


async def test_a_resume_whose_backlog_is_over_the_send_buffer_gets_a_full_welcome_instead(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    await post(log, 30, padding=100)
    # Exactly what the resume would queue: its welcome and events 11..30.
    backlog = await log.read_after(ROOM, 10) or []
    size = len(welcome(10, True, [])) + sum(len(frame) for _, frame in backlog)

    fits = new_member(max_bytes=size)
    assert await join(hub, fits, after=10) is True
    await fits.received_up_to(30)
    assert (fits.welcome["seq"], fits.welcome["resumed"]) == (10, True)
    fits.assert_gapless(30)
    assert fits.closed == []

    over = new_member(max_bytes=size - 1)
    assert await join(hub, over, after=10, history_limit=2) is False
    await wait_for(lambda: over.frames)
    assert (over.welcome["seq"], over.welcome["resumed"]) == (30, False)
    assert [m["id"] for m in over.welcome["history"]] == ["q29", "q30"]
    await post(log, 1, padding=100)
    await over.received_up_to(31)
    over.assert_gapless(31)
    assert over.closed == []


# --- several members, leaving ---------------------------------------------------------------


async def test_several_members_each_get_the_events_after_their_own_cursor(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    fresh_at_0, fresh_at_3, resumed_at_1, resumed_at_5 = (new_member() for _ in range(4))
    await join(hub, fresh_at_0)
    await post(log, 3)
    await join(hub, fresh_at_3)
    await post(log, 2)
    await join(hub, resumed_at_1, after=1)
    await join(hub, resumed_at_5, after=5)
    await post(log, 2)
    members = [fresh_at_0, fresh_at_3, resumed_at_1, resumed_at_5]
    for member in members:
        await member.received_up_to(7)
        member.assert_gapless(7)
        assert member.outbox.cursor == 7
    assert [m.welcome["seq"] for m in members] == [0, 3, 1, 5]
    assert [m.welcome["resumed"] for m in members] == [False, False, True, True]
    assert {id(c) for c in hub.connections(ROOM)} == {id(m.outbox) for m in members}
    assert log.subscribed == [ROOM]  # one subscription for the room, whoever joins


async def test_a_member_that_left_gets_nothing_more_and_the_others_go_on(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    leaving, staying = new_member(), new_member()
    await join(hub, leaving)
    await join(hub, staying)
    await post(log, 2)
    await leaving.received_up_to(2)
    hub.leave(ROOM, leaving.outbox)
    await post(log, 3)
    await staying.received_up_to(5)
    await asyncio.sleep(0.05)
    assert leaving.seqs == [1, 2]
    staying.assert_gapless(5)
    assert hub.connections(ROOM) == [staying.outbox]
    assert log.unsubscribed == []


async def test_the_last_member_leaving_unsubscribes_the_room_and_a_later_join_subscribes_again(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    first = new_member()
    await join(hub, first)
    assert (hub.rooms(), log.subscribed) == ([ROOM], [ROOM])
    hub.leave(ROOM, first.outbox)
    assert hub.rooms() == []
    assert hub.connections(ROOM) == []
    await wait_for(lambda: log.unsubscribed == [ROOM])
    await post(log, 2)  # nobody here listens
    hub.leave(ROOM, first.outbox)  # a second leave is harmless

    later = new_member()
    await join(hub, later)
    assert (hub.rooms(), log.subscribed) == ([ROOM], [ROOM, ROOM])
    await post(log, 2)
    await later.received_up_to(4)
    assert later.welcome["seq"] == 2
    later.assert_gapless(4)
    assert first.seqs == []


@pytest.mark.parametrize("subscribing_takes_a_while", [False, True])
async def test_a_join_right_after_the_last_leave_keeps_its_new_subscription(
    new_member: Callable[..., Member], subscribing_takes_a_while: bool
) -> None:
    """The leave's unsubscribe runs after the join subscribed again (the memory log does not
    make it wait), or while it is subscribing: either way the new subscription stays."""
    log = SteppedLog()
    hub = RoomHub(log)
    first, again = new_member(), new_member()
    await join(hub, first)
    subscribing = log.hold("subscribe") if subscribing_takes_a_while else None

    async def leave_then_join() -> bool:
        hub.leave(ROOM, first.outbox)  # its unsubscribe task starts on the next loop turn
        return await join(hub, again)

    joining = asyncio.create_task(leave_then_join())
    if subscribing is not None:
        await subscribing.arrived.wait()
        await asyncio.sleep(0.01)  # the unsubscribe has run by now
        subscribing.release()
    await joining
    await asyncio.sleep(0.01)
    await post(log, 3)
    await again.received_up_to(3)
    again.assert_gapless(3)
    assert hub.rooms() == [ROOM]
    assert log.subscribed == [ROOM, ROOM]
    assert log.unsubscribed == []  # the stale unsubscribe saw the room joined again


async def test_the_room_stays_subscribed_while_a_member_is_still_joining(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    leaving = new_member()
    await join(hub, leaving)
    joiner = new_member()
    held = log.hold("snapshot")
    joining = asyncio.create_task(join(hub, joiner))
    await held.arrived.wait()
    hub.leave(ROOM, leaving.outbox)  # the last member, but not the last one here
    await post(log, 2)
    await asyncio.sleep(0.01)
    assert hub.rooms() == [ROOM]
    assert log.unsubscribed == []
    held.release()
    await joining
    await post(log, 1)
    await joiner.received_up_to(3)
    assert joiner.welcome["seq"] == 0
    joiner.assert_gapless(3)


async def test_a_joiner_waiting_on_a_subscription_that_fails_subscribes_again(
    new_member: Callable[..., Member],
) -> None:
    """Two members join an unsubscribed room at once and the first subscription fails (Redis
    away): the first joiner gets the error, the second subscribes again and is served; it
    was once left in a room state nobody delivered to, never closed."""

    class FailingOnce(SteppedLog):
        failed = False

        async def subscribe(self, room_name: str, listener: Listener) -> int:
            if not self.failed:
                self.failed = True
                await self._pause("subscribe")
                raise ConnectionError("the log is away")
            return await super().subscribe(room_name, listener)

    log = FailingOnce()
    hub = RoomHub(log)
    first, second = new_member(), new_member()
    held = log.hold("subscribe")
    failing = asyncio.create_task(join(hub, first))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(join(hub, second))
    await asyncio.sleep(0.01)
    held.release()
    with pytest.raises(ConnectionError):
        await failing
    await waiting
    assert log.subscribed == [ROOM]
    await post(log, 2)
    await second.received_up_to(2)
    second.assert_gapless(2)


# --- a log that jumps -----------------------------------------------------------------------


async def test_a_log_that_jumps_closes_every_member_with_1012_and_their_resume_gets_a_welcome(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    one, two = new_member(), new_member()
    await join(hub, one)
    await join(hub, two)
    await post(log, 4)
    await one.received_up_to(4)
    await two.received_up_to(4)

    log.lose_events(ROOM, SEQ_RESTART_GAP)
    jumped = await log.append(ROOM, question(99))
    assert jumped == 4 + SEQ_RESTART_GAP + 1
    await wait_for(lambda: one.closed and two.closed)
    await asyncio.sleep(0.01)
    assert (one.closed, two.closed) == ([CLOSE_RESTART], [CLOSE_RESTART])
    assert (one.seqs, two.seqs) == ([1, 2, 3, 4], [1, 2, 3, 4])  # nothing across the jump
    assert hub.connections(ROOM) == []

    # Each resumes from its cursor, which the log can no longer vouch for: a full welcome.
    hub.leave(ROOM, one.outbox)
    back = new_member()
    assert await join(hub, back, after=4) is False
    assert hub.rooms() == [ROOM]
    last = await post(log, 2)
    await back.received_up_to(last)
    assert (back.welcome["seq"], back.welcome["resumed"]) == (jumped, False)
    back.assert_gapless(last)


async def test_a_member_joining_across_a_jump_is_closed_with_1012_not_given_a_gap(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    await join(hub, new_member())
    await post(log, 2)
    joiner = new_member()
    held = log.hold("snapshot")
    joining = asyncio.create_task(join(hub, joiner))
    await held.arrived.wait()  # its welcome says seq 2
    log.lose_events(ROOM, SEQ_RESTART_GAP)
    await post(log, 1)
    held.release()
    await joining
    await wait_for(lambda: joiner.closed)
    assert joiner.closed == [CLOSE_RESTART]
    assert joiner.seqs == []
    assert hub.connections(ROOM) == []


async def test_an_event_delivered_again_by_the_log_reaches_nobody_twice(
    new_member: Callable[..., Member],
) -> None:
    log = SteppedLog()
    hub = RoomHub(log)
    member = new_member()
    await join(hub, member)
    await post(log, 3)
    replay = await log.read_after(ROOM, 1) or []
    for seq, frame in replay:  # as a reader that reconnected and read from too early
        log.listeners[ROOM](seq, frame)
    await post(log, 1)
    await member.received_up_to(4)
    member.assert_gapless(4)
    assert member.closed == []
