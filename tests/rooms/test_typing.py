"""Typing notices through the real ASGI application: an ephemeral `typing` frame to the room's
other members (guests too), never to the sender, never stored or replayed; at most one per
connection per CHAT_TYPING_INTERVAL_SECONDS, the rest dropped without a word; a flood of them
meets the frame rate limit, then 1008."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chat.models import Message
from tests.conftest import Client, connect

pytestmark = pytest.mark.django_db(transaction=True)


async def next_frame(client: Client) -> dict[str, Any]:
    """The next frame other than `presence`."""
    return (await client.recv_until(lambda f: True))[-1]


async def test_typing_reaches_the_others_and_not_the_sender_and_is_not_kept() -> None:
    alice, bob, carol = await connect("typing"), await connect("typing"), await connect("typing")
    await alice.send({"type": "typing"})
    for other in (bob, carol):
        assert await next_frame(other) == {"type": "typing", "user": alice.welcome["user"]}
    await alice.send({"type": "ping"})
    assert await next_frame(alice) == {"type": "pong"}
    # Not a room event: no seq, nothing stored, nothing in a welcome or a resume.
    late = await connect("typing", query=f"after={alice.welcome['seq']}")
    fresh = await connect("typing")
    assert fresh.welcome["seq"] == alice.welcome["seq"] and fresh.welcome["history"] == []
    for client in (late, fresh):
        await client.send({"type": "ping"})
        assert await next_frame(client) == {"type": "pong"}
    assert await Message.objects.acount() == 0
    for client in (alice, bob, carol, late, fresh):
        await client.close()


async def test_one_notice_per_interval_is_passed_on_and_the_rest_are_dropped(
    settings: Any,
) -> None:
    settings.CHAT_TYPING_INTERVAL_SECONDS = 0.5
    alice, bob = await connect("throttle"), await connect("throttle")
    for _ in range(5):
        await alice.send({"type": "typing"})
    await alice.send({"type": "say", "text": "done"})
    frames = await bob.recv_until(lambda f: f["type"] == "message")
    assert [f["type"] for f in frames] == ["typing", "message"]
    # No error for the dropped ones: the sender's next frames are its message and a pong.
    await alice.send({"type": "ping"})
    assert [f["type"] for f in await alice.recv_until(lambda f: f["type"] == "pong")] == [
        "message",
        "pong",
    ]
    await asyncio.sleep(0.6)
    await alice.send({"type": "typing"})
    assert await next_frame(bob) == {"type": "typing", "user": alice.welcome["user"]}
    await alice.close()
    await bob.close()


async def test_a_flood_of_typing_is_rate_limited_then_closed_with_1008(settings: Any) -> None:
    settings.CHAT_FRAME_RATE_PER_SECOND = 2  # bursts of 4
    settings.CHAT_FLOOD_LIMIT = 3
    alice, bob = await connect("typists"), await connect("typists")
    for _ in range(12):
        await alice.send({"type": "typing"})
    error = (await alice.recv_until(lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "rate_limited" and error["retry_after"] > 0
    message = await alice.ws.receive_output(timeout=5)
    while message["type"] != "websocket.close":
        message = await alice.ws.receive_output(timeout=5)
    assert message["code"] == 1008
    # The others are still served.
    await bob.send({"type": "ping"})
    assert (await bob.recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    await bob.close()
