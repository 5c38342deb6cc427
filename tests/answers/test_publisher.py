"""The delta publisher: deltas merge while an append is in flight, and keep their order."""

from __future__ import annotations

import asyncio

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
