"""The delta publisher (merging while an append is in flight) and the bounded send buffer."""

from __future__ import annotations

import asyncio

from chat.answers.publisher import DeltaPublisher
from chat.realtime.outbox import Outbox


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


async def test_a_connection_over_its_bound_closes_with_4008_and_queues_nothing_more() -> None:
    sent: list[str] = []
    closed: list[int] = []
    transport_pending = 0
    blocked = asyncio.Event()

    async def send(frame: str) -> None:
        await blocked.wait()  # a reader that does not read
        sent.append(frame)

    async def close(code: int) -> None:
        closed.append(code)

    conn = Outbox(
        send=send, close=close, max_bytes=100, transport_pending=lambda: transport_pending
    )
    conn.start()
    assert conn.push("w" * 150)  # a lone frame over the bound is still sent
    await asyncio.sleep(0)
    blocked.set()
    await asyncio.sleep(0)
    blocked.clear()
    assert sent == ["w" * 150]
    assert conn.push("x" * 40)
    assert conn.push("y" * 40)
    transport_pending = 30
    assert not conn.push("z" * 40)
    await asyncio.sleep(0)
    assert closed == [4008]
    assert conn.closing
    assert not conn.push("more")
    await conn.stop()
