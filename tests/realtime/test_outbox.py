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


async def test_frames_go_out_at_once_when_the_server_takes_them_and_stay_in_order() -> None:
    """`send_now` takes a frame before `push` returns while nothing waits before it; a frame
    it cannot take now (the socket not open yet) goes through the writer, and every frame
    after it waits its turn behind it."""
    wire: list[str] = []
    open_now = False
    writer_gate = asyncio.Event()

    def send_now(frame: str) -> bool:
        if not open_now:
            return False
        wire.append(frame)
        return True

    async def send(frame: str) -> None:
        await writer_gate.wait()
        wire.append(frame)

    async def close(code: int) -> None:
        pass

    conn = Outbox(send=send, close=close, max_bytes=1000, send_now=send_now)
    assert conn.push("welcome")  # not open yet: queued for the writer
    await asyncio.sleep(0)  # the writer took it and is sending it
    open_now = True
    assert conn.push("a")  # "welcome" is still on its way: "a" waits behind it
    assert wire == []
    writer_gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert wire == ["welcome", "a"]
    assert conn.push("b")
    assert wire == ["welcome", "a", "b"]  # nothing waiting: out before push returned
    await conn.stop()


async def test_a_failed_send_at_once_stops_writing() -> None:
    def send_now(frame: str) -> bool:
        raise ConnectionError("Attempt to send on a closed protocol")

    async def send(frame: str) -> None:
        raise AssertionError("nothing is written after the socket failed")

    async def close(code: int) -> None:
        pass

    conn = Outbox(send=send, close=close, max_bytes=1000, send_now=send_now)
    assert not conn.push("a")
    assert conn.closing
    assert not conn.push("b")
    await asyncio.sleep(0)
    await conn.stop()
