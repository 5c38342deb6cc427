"""State that goes away (the hardening issue, "State that never goes away"): a room nobody
wrote in leaves no database row, and what a worker holds of a room (its log in memory, its
presence group, its hub entry) goes once nobody uses it and no answer is being written."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import protocol
from chat.models import Room
from chat.realtime.log import SEQ_RESTART_GAP, RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.runtime import get_runtime
from tests.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


async def rooms_stored() -> list[str]:
    return await database_sync_to_async(
        lambda: sorted(Room.objects.values_list("name", flat=True))
    )()


async def test_joining_reading_and_leaving_store_nothing_asking_stores_the_room(llm: Any) -> None:
    for name in ("quiet-1", "quiet-2", "quiet-3"):
        member = await connect(name)
        await member.close()
    resumed = await connect("quiet-1", query="after=0")
    await resumed.close()
    assert await rooms_stored() == []
    asker = await connect("spoken")
    await asker.answer("Hello [[sim tokens=3 tps=0]]")
    await asker.close()
    assert await rooms_stored() == ["spoken"]


async def test_a_workers_room_state_goes_once_nobody_uses_it(settings: Any, llm: Any) -> None:
    settings.CHAT_ROOM_STATE_GRACE_SECONDS = 0
    runtime = await get_runtime()
    members = [await connect(f"busy-{i}") for i in range(5)]
    await members[0].answer("Hello [[sim tokens=3 tps=0]]")
    assert sorted(runtime.hub.rooms()) == [f"busy-{i}" for i in range(5)]
    # Nothing goes while members are there.
    assert runtime.log.forget_idle(0) == 0
    assert await runtime.presence.leave_idle_groups(0) == 0
    for member in members:
        await member.close()
    assert runtime.hub.rooms() == []
    assert runtime.log.forget_idle(0) == 5
    assert await runtime.presence.leave_idle_groups(0) == 5
    # Used again, the room starts from the database: its history is there, above its seq.
    again = await connect("busy-0")
    assert [m["role"] for m in again.welcome["history"]] == ["user", "assistant"]
    assert again.welcome["seq"] > SEQ_RESTART_GAP
    await again.close()


async def test_the_memory_log_keeps_rooms_that_are_read_or_being_written() -> None:
    async def seeder(room: str) -> RoomSeed:
        return RoomSeed(last_seq=0)

    log = MemoryRoomLog(seeder=seeder, retention_events=100, retention_seconds=60, view_size=10)
    user = {"id": "u", "name": "U"}
    await log.append(
        "read", protocol.question_event(id="q", user=user, text="?", created="t", client_id=None)
    )
    await log.subscribe("read", lambda seq, frame: None)
    await log.append("writing", protocol.answer_start_event(id="a", question_id="q", created="t"))
    await log.append(
        "done", protocol.question_event(id="q2", user=user, text="?", created="t", client_id=None)
    )
    assert log.forget_idle(3600) == 0  # used just now
    assert log.forget_idle(0) == 1  # only "done": "read" is read, "writing" is being written
    await log.append(
        "writing", protocol.answer_end_event(answer_id="a", status="complete", text="")
    )
    await log.unsubscribe("read")
    assert log.forget_idle(0) == 2
