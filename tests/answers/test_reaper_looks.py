"""Where the orphan reaper looks (chat.answers.runner.REAP_ALL_SECONDS): every room a worker
serves once per REAP_ALL_SECONDS, in between only the rooms where something happened lately
and those where it saw an answer without an owner. The log is the in-memory one, recording the
rooms of each look; the coordinator the in-memory one (an answer nobody claimed has no owner)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chat import protocol
from chat.answers import runner as runner_module
from chat.answers.assistant import Assistant
from chat.answers.runner import AnswerRunner
from chat.realtime.coordination import MemoryCoordinator
from chat.realtime.log import RoomSeed
from chat.realtime.memory import MemoryRoomLog
from chat.rooms.configuration import AnswerSettings


class LookedAt(MemoryRoomLog):
    """The in-memory log, noting the rooms of each look at live answers."""

    def __init__(self) -> None:
        async def seeder(room: str) -> RoomSeed:
            return RoomSeed(last_seq=0)

        super().__init__(seeder=seeder, retention_events=100, retention_seconds=60, view_size=10)
        self.looks: list[list[str]] = []

    async def live_answers_in(self, rooms: Sequence[str]) -> dict[str, list[str]]:
        self.looks.append(list(rooms))
        return await super().live_answers_in(rooms)


def runner_over(log: LookedAt) -> AnswerRunner:
    def no_assistant(settings: AnswerSettings) -> Assistant:
        raise AssertionError("nothing is answered here")

    return AnswerRunner(log=log, coordinator=MemoryCoordinator(), assistant_for=no_assistant)


async def test_a_look_at_every_room_once_per_interval_and_at_the_lately_busy_in_between(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "REAP_ALL_SECONDS", 0.3)
    log = LookedAt()
    runner = runner_over(log)
    every = [f"room-{n}" for n in range(5)]
    await runner.reap_orphans(every, lately=["room-1"])  # the first look: every room
    await runner.reap_orphans(every, lately=["room-1"])
    await runner.reap_orphans(every, lately=[])  # nothing lately, no suspect: no look
    await asyncio.sleep(0.35)
    await runner.reap_orphans(every, lately=["room-2"])
    assert log.looks == [every, ["room-1"], every]
    await runner.reap_orphans(every)  # without `lately`: every room, every time
    assert log.looks[-1] == every


async def test_a_room_with_an_ownerless_answer_is_looked_at_until_the_answer_is_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by a look at every room in a quiet room (its answer's worker died long after its
    last delta), an ownerless answer's room is in each following look, so that the second
    sighting that confirms it comes half a second later, not at the next look at every room.
    (The looks here come faster than OWNERLESS_CONFIRM_SECONDS: nothing is ended.)"""
    monkeypatch.setattr(runner_module, "REAP_ALL_SECONDS", 60.0)
    log = LookedAt()
    start = protocol.answer_start_event(id="a-dead", question_id="q-dead", created="t")
    await log.append("quiet", start)
    runner = runner_over(log)
    every = ["busy", "quiet", "other"]
    await runner.reap_orphans(every, lately=["busy"])
    await runner.reap_orphans(every, lately=["busy"])
    await runner.reap_orphans(every, lately=[])
    assert log.looks == [every, ["busy", "quiet"], ["quiet"]]
