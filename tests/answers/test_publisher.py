"""The delta publisher: deltas merge while an append is in flight, and keep their order."""

from __future__ import annotations

import asyncio

import pytest

from chat.answers.publisher import DeltaPublisher
from chat.realtime.log import AppendsLater


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


async def test_appended_at_once_when_the_log_can_and_through_the_pump_when_it_cannot() -> None:
    """`append_now` takes a delta before `add` returns while nothing is in flight; a log that
    must wait (AppendsLater) gets it through the pump, and the order holds across both."""
    appended: list[str] = []
    now_ok = True
    gate = asyncio.Event()

    def append_now(text: str) -> None:
        if not now_ok:
            raise AppendsLater("kitchen")
        appended.append(text)

    async def append(text: str) -> None:
        await gate.wait()
        appended.append(text)

    publisher = DeltaPublisher(append, append_now=append_now)
    publisher.add("a")
    assert appended == ["a"]  # before add returned, no task
    now_ok = False
    publisher.add("b")  # the log must wait: through the pump
    await asyncio.sleep(0)
    now_ok = True
    publisher.add("c")  # "b" is in flight: "c" waits behind it, not appended at once
    assert appended == ["a"]
    gate.set()
    await publisher.drain()
    assert appended == ["a", "b", "c"]
    assert publisher.text == "abc"


async def test_a_failed_append_at_once_is_raised_by_drain() -> None:
    def append_now(text: str) -> None:
        raise ConnectionError("broken")

    async def append(text: str) -> None:
        raise AssertionError("not tried again: the failure stops the deltas")

    publisher = DeltaPublisher(append, append_now=append_now)
    publisher.add("a")
    publisher.add("b")
    with pytest.raises(ConnectionError):
        await publisher.drain()
    assert publisher.text == ""
