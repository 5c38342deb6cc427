"""The in-memory room log: seq, retention, the materialised view, exactly-once ends."""

from __future__ import annotations

import json

from chat import protocol
from chat.realtime.log import SEQ_RESTART_GAP, RoomSeed
from chat.realtime.memory import MemoryRoomLog


def make_log(seed: RoomSeed | None = None, retention: int = 100) -> MemoryRoomLog:
    async def seeder(room: str) -> RoomSeed:
        return seed or RoomSeed(last_seq=0)

    return MemoryRoomLog(
        seeder=seeder, retention_events=retention, retention_seconds=3600, view_size=10
    )


def question(n: int) -> dict:
    return protocol.question_event(
        id=f"q{n}", user={"id": "u", "name": "U"}, text=f"q {n}", created="t", client_id=None
    )


async def test_seq_is_consecutive_and_frames_carry_it() -> None:
    log = make_log()
    got: list[tuple[int, str]] = []
    assert await log.subscribe("r", lambda seq, frame: got.append((seq, frame))) == 0
    for n in range(3):
        assert await log.append("r", question(n)) == n + 1
    assert [seq for seq, _ in got] == [1, 2, 3]
    assert json.loads(got[0][1])["seq"] == 1
    assert await log.read_after("r", 1) == got[1:]
    assert await log.read_after("r", 3) == []
    assert await log.read_after("r", 4) is None  # beyond the last seq: not ours to vouch for


async def test_trimmed_events_are_no_longer_held() -> None:
    log = make_log(retention=2)
    for n in range(5):
        await log.append("r", question(n))
    assert await log.read_after("r", 2) is None
    assert [seq for seq, _ in await log.read_after("r", 3) or []] == [4, 5]


async def test_snapshot_shows_streaming_text_and_ends_once() -> None:
    log = make_log()
    await log.append("r", question(1))
    await log.append("r", protocol.answer_start_event(id="a1", question_id="q1", created="t"))
    await log.append("r", protocol.answer_delta_event(answer_id="a1", text="Hel"))
    await log.append("r", protocol.answer_delta_event(answer_id="a1", text="lo"))
    snapshot = await log.snapshot("r", 50)
    assert snapshot.seq == 4
    assert [(m["role"], m["status"], m["text"]) for m in snapshot.history] == [
        ("user", "complete", "q 1"),
        ("assistant", "streaming", "Hello"),
    ]
    assert await log.live_answers("r") == ["a1"]
    end = protocol.answer_end_event(answer_id="a1", status="complete", text="Hello")
    assert await log.append("r", end) == 5
    assert await log.append("r", end) is None  # exactly one end per answer
    assert await log.live_answers("r") == []
    assert (await log.snapshot("r", 50)).history[-1]["status"] == "complete"


async def test_a_room_seeded_from_the_database_continues_above_its_last_seq() -> None:
    seed = RoomSeed(last_seq=7, messages=[{"id": "q0", "role": "user", "text": "old"}])
    log = make_log(seed)
    snapshot = await log.snapshot("r", 50)
    assert snapshot.seq == 7 + SEQ_RESTART_GAP
    assert snapshot.history == seed.messages
    assert await log.read_after("r", 7) is None
    assert await log.read_after("r", snapshot.seq) == []


async def test_the_view_keeps_only_the_latest_messages() -> None:
    log = make_log()
    for n in range(15):
        await log.append("r", question(n))
    history = (await log.snapshot("r", 50)).history
    assert [m["id"] for m in history] == [f"q{n}" for n in range(5, 15)]
    assert [m["id"] for m in (await log.snapshot("r", 3)).history] == ["q12", "q13", "q14"]


async def test_nothing_of_an_answer_follows_its_end() -> None:
    log = make_log()
    await log.append("r", protocol.answer_start_event(id="a1", question_id="q1", created="t"))
    await log.append("r", protocol.answer_end_event(answer_id="a1", status="interrupted", text=""))
    assert await log.append("r", protocol.answer_delta_event(answer_id="a1", text="late")) is None
    assert await log.append("r", protocol.answer_sources_event(answer_id="a1", sources=[])) is None
    assert (await log.snapshot("r", 5)).seq == 2
