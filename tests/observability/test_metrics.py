"""The metrics count what the code that knows it records: a flood of asks (rate-limited asks,
refused frames, the 1008 close) through the real consumer, and a reader too slow for its
outbox (4008). Counted as differences: the registry lives as long as the test process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from chat.realtime.outbox import Outbox
from tests.conftest import connect

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_flood_counts_its_limited_asks_refused_frames_and_the_1008(settings: Any) -> None:
    settings.CHAT_ASK_BURST = 1
    settings.CHAT_ASK_RATE_PER_MINUTE = 1
    settings.CHAT_FLOOD_LIMIT = 2
    settings.CHAT_MAX_ANSWERS_PER_USER = 10
    limited = sample("chat_rate_limited_total", what="ask")
    refused = sample("chat_frames_refused_total", code="rate_limited")
    invalid = sample("chat_frames_refused_total", code="invalid")
    closed = sample("chat_sockets_closed_total", code="1008")
    opened = sample("chat_connections_open", transport="websocket")

    client = await connect("flood-metrics")
    assert sample("chat_connections_open", transport="websocket") == opened + 1
    await client.send({"type": "ask", "text": "   "})  # invalid: empty once trimmed
    await client.recv_until(lambda f: f["type"] == "error")
    for n in range(4):  # 1 taken, then 3 refused: the third strike closes
        await client.send({"type": "ask", "text": f"question {n}"})
    message = await client.ws.receive_output(timeout=5)
    while message["type"] != "websocket.close":
        message = await client.ws.receive_output(timeout=5)
    assert message["code"] == 1008

    assert sample("chat_frames_refused_total", code="invalid") == invalid + 1
    assert sample("chat_rate_limited_total", what="ask") == limited + 3
    # Every refused frame, the one that closed the socket too.
    assert sample("chat_frames_refused_total", code="rate_limited") == refused + 3
    assert sample("chat_sockets_closed_total", code="1008") == closed + 1
    await client.close()
    assert sample("chat_connections_open", transport="websocket") == opened


async def test_a_reader_too_slow_for_its_outbox_is_counted_as_a_4008() -> None:
    closed = sample("chat_sockets_closed_total", code="4008")
    codes: list[int] = []
    never = asyncio.Event()

    async def send(frame: str) -> None:
        await never.wait()  # the client reads nothing

    async def close(code: int) -> None:
        codes.append(code)

    outbox = Outbox(send=send, close=close, max_bytes=100, label="slow")
    frame = "x" * 60
    assert outbox.push(frame)  # a lone frame is always taken
    assert not outbox.push(frame)  # the client has not read it: over the bound
    await asyncio.sleep(0)
    assert codes == [4008]
    assert sample("chat_sockets_closed_total", code="4008") == closed + 1
    await outbox.stop()
