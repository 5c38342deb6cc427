"""The delta publisher: deltas merge while an append is in flight, and keep their order."""

from __future__ import annotations

import asyncio

import pytest

from chat.answers.publisher import DeltaPublisher


async def test_deltas_merge_while_an_append_is_in_flight_and_keep_order() -> None:
    appended: list[str] = []
    gate = asyncio.Event()

    async def append(text: str) -> None:
        await gate.wait()
        appended.append(text)

    publisher = DeltaPublisher(append)
    publisher.add("a")
    await asyncio.sleep(0)  # the first append starts and waits at the gate
    for piece in ("b", "c", "d"):
        publisher.add(piece)
    gate.set()
    await publisher.drain()
    assert appended == ["a", "bcd"]
    assert publisher.text == "abcd"


async def test_no_merging_when_the_log_keeps_up() -> None:
    appended: list[str] = []

    async def append(text: str) -> None:
        appended.append(text)

    publisher = DeltaPublisher(append)
    for piece in ("x", "y", "z"):
        publisher.add(piece)
        await asyncio.sleep(0)
    await publisher.drain()
    assert appended == ["x", "y", "z"]


async def test_a_failed_append_is_raised_by_drain_and_nothing_after_it_is_sent() -> None:
    """An append that failed for good (the room log away past CHAT_LOG_OUTAGE_SECONDS) stops
    the deltas: none is sent out of order after it, none is lost silently, and the failure is
    raised where the answer awaits it (never "Task exception was never retrieved")."""
    appended: list[str] = []
    failing = True

    async def append(text: str) -> None:
        if failing:
            raise ConnectionError("the room log is away")
        appended.append(text)

    publisher = DeltaPublisher(append)
    publisher.add("a")
    await asyncio.sleep(0)
    publisher.add("b")  # after the failure: kept back, not sent out of order
    failing = False
    await asyncio.sleep(0)
    with pytest.raises(ConnectionError):
        await publisher.drain()
    assert appended == []
    assert publisher.text == ""
