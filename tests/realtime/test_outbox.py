"""One connection's bounded send buffer (`Outbox`): over its bound the socket closes with 4008."""

from __future__ import annotations

import asyncio

from chat.realtime.outbox import Outbox


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
