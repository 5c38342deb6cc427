"""People talk (the rooms issue, "People talk; the assistant answers when called"), through the
real ASGI application: a `say` is stored and posted as a `message` event that asks nothing; it
is in every later `welcome` and in resumes; repeated `client_id`s, the length limit, the
per-person rate limit and the flood close; the room rule; and `POST .../messages`."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import rooms
from chat.models import Message, Room, RoomMembership
from chat.runtime import reset_runtime
from tests.conftest import Client, connect
from tests.rooms.people import person

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored(room: str) -> list[dict[str, Any]]:
    return list(
        Message.objects.filter(room__name=room)
        .order_by("created")
        .values("id", "role", "text", "user_id", "client_id", "seq")
    )


async def said(client: Client, text: str, **extra: Any) -> dict[str, Any]:
    """Say `text`; the `message` event the room got for it (skipping other people's)."""
    await client.send({"type": "say", "text": text, **extra})
    me = client.welcome["user"]
    frames = await client.recv_until(
        lambda f: f["type"] == "message" and f["user"] == me and f["text"] == text.strip()
    )
    return frames[-1]


async def next_frame(client: Client) -> dict[str, Any]:
    """The next frame other than `presence`."""
    return (await client.recv_until(lambda f: True))[-1]


async def expect_error(client: Client, frame: dict[str, Any], code: str) -> dict[str, Any]:
    await client.send(frame)
    error = (await client.recv_until(lambda f: f["type"] == "error"))[-1]
    assert error["code"] == code, error
    return error


async def test_a_said_message_reaches_everyone_is_stored_and_asks_nothing(llm: Any) -> None:
    alice = await connect("talk")
    bob = await connect("talk")
    await alice.send({"type": "say", "text": "  Hello, Bob  ", "client_id": "c-1"})
    seen_by_alice = (await alice.recv_until(lambda f: f["type"] == "message"))[-1]
    seen_by_bob = (await bob.recv_until(lambda f: f["type"] == "message"))[-1]
    assert seen_by_alice == seen_by_bob
    assert seen_by_bob["seq"] == alice.welcome["seq"] + 1
    assert seen_by_bob["id"].startswith("m_")
    assert seen_by_bob["user"] == alice.welcome["user"]
    assert seen_by_bob["text"] == "Hello, Bob"
    assert seen_by_bob["client_id"] == "c-1"
    assert seen_by_bob["created"].endswith("Z")
    # Nothing follows it: no answer starts. The next frame is the pong of a ping.
    await alice.send({"type": "ping"})
    assert await next_frame(alice) == {"type": "pong"}
    assert await stored("talk") == [
        {
            "id": seen_by_bob["id"],
            "role": "message",
            "text": "Hello, Bob",
            "user_id": alice.welcome["user"]["id"],
            "client_id": "c-1",
            "seq": seen_by_bob["seq"],
        }
    ]
    assert llm.stats() == []  # the LLM was never asked
    await alice.close()
    await bob.close()


async def test_talking_takes_no_answer_slot(llm: Any, settings: Any) -> None:
    settings.CHAT_MAX_ANSWERS_PER_USER = 1
    alice = await connect("busy")
    await alice.send({"type": "ask", "text": "A long one [[sim tokens=300 tps=30]]"})
    await alice.recv_until(lambda f: f["type"] == "answer.delta")
    # Her one answer slot is taken: another question is refused, a message is not.
    await expect_error(alice, {"type": "ask", "text": "And another?"}, "busy")
    message = await said(alice, "while it writes")
    assert message["text"] == "while it writes"
    assert [row["role"] for row in await stored("busy")] == ["user", "assistant", "message"]
    await alice.close()


async def test_messages_are_in_every_welcome_and_in_a_resume() -> None:
    alice = await connect("log")
    before = alice.welcome["seq"]
    first = await said(alice, "first")
    second = await said(alice, "두 번째", client_id="c-2")
    expected = [
        {
            "seq": first["seq"],
            "id": first["id"],
            "role": "message",
            "text": "first",
            "status": "complete",
            "created": first["created"],
            "user": first["user"],
        },
        {
            "seq": second["seq"],
            "id": second["id"],
            "role": "message",
            "text": "두 번째",
            "status": "complete",
            "created": second["created"],
            "user": second["user"],
            "client_id": "c-2",
        },
    ]
    fresh = await connect("log")
    assert fresh.welcome["seq"] == second["seq"]
    assert fresh.welcome["history"] == expected
    resumed = await connect("log", query=f"after={before}")
    assert resumed.welcome["resumed"] is True
    assert await resumed.recv_until(lambda f: f.get("id") == second["id"]) == [first, second]
    for client in (alice, fresh, resumed):
        await client.close()
    # A worker that starts afresh (no room log) shows the same history from the database.
    await reset_runtime()
    restarted = await connect("log")
    assert restarted.welcome["history"] == expected
    await restarted.close()


async def test_a_message_sent_again_with_its_client_id_is_said_once() -> None:
    alice = await connect("again")
    first = await said(alice, "Are you there?", client_id="c-9")
    await alice.send({"type": "say", "text": "Are you there?", "client_id": "c-9"})
    # An ask with a client_id already used for a message is not asked either.
    await alice.send({"type": "ask", "text": "Are you there?", "client_id": "c-9"})
    await alice.send({"type": "ping"})
    assert await next_frame(alice) == {"type": "pong"}
    assert [row["id"] for row in await stored("again")] == [first["id"]]
    await alice.close()


async def test_too_long_empty_or_malformed_messages_are_refused(settings: Any) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    settings.CHAT_MAX_QUESTION_CHARS = 100
    client = await connect("limits")
    await expect_error(client, {"type": "say", "text": "x" * 11}, "too_long")
    await expect_error(client, {"type": "say", "text": "ok", "client_id": "c" * 65}, "too_long")
    await expect_error(client, {"type": "say", "text": "   "}, "invalid")
    await expect_error(client, {"type": "say"}, "invalid")
    await expect_error(client, {"type": "say", "text": "a\x00b"}, "invalid")
    # Trimming comes first; the limit is the message's own, not the question's.
    message = await said(client, "   " + "y" * 10 + "   ")
    assert message["text"] == "y" * 10
    assert [row["text"] for row in await stored("limits")] == ["y" * 10]
    await client.close()


async def test_a_flood_of_messages_is_rate_limited_per_person_then_closed_with_1008(
    settings: Any,
) -> None:
    settings.CHAT_SAY_BURST = 2
    settings.CHAT_SAY_RATE_PER_MINUTE = 1
    settings.CHAT_FLOOD_LIMIT = 3
    minji = await person("minji")
    bystander = await connect("chatter")
    tab = await connect("chatter", headers=minji.ws_headers)
    other_tab = await connect("chatter", headers=minji.ws_headers)
    await said(tab, "one")
    await said(other_tab, "two")
    # The bucket is the person's, whichever socket they use.
    error = await expect_error(tab, {"type": "say", "text": "three"}, "rate_limited")
    assert error["retry_after"] > 0
    await expect_error(other_tab, {"type": "say", "text": "four"}, "rate_limited")
    for n in range(10):
        await tab.send({"type": "say", "text": f"flood {n}"})
    message = await tab.ws.receive_output(timeout=5)
    while message["type"] != "websocket.close":
        message = await tab.ws.receive_output(timeout=5)
    assert message["code"] == 1008
    # Everyone else is served, and what was said before the flood is kept.
    await said(bystander, "still here")
    assert [row["text"] for row in await stored("chatter")] == ["one", "two", "still here"]
    await bystander.close()
    await other_tab.close()


@database_sync_to_async
def _private_room_with(owner: Any, member: Any) -> Room:
    room = rooms.create_room("team", owner.identity, visibility=Room.Visibility.PRIVATE)
    RoomMembership.objects.create(room=room, user=member.user)
    return room


@database_sync_to_async
def _remove(room: Room, member: Any) -> None:
    RoomMembership.objects.filter(room=room, user=member.user).delete()


async def test_someone_who_may_no_longer_enter_says_nothing() -> None:
    owner, member = await person("owner"), await person("member")
    room = await _private_room_with(owner, member)
    client = await connect("team", headers=member.ws_headers)
    await said(client, "hi team")
    await _remove(room, member)
    await expect_error(client, {"type": "say", "text": "still in?"}, "not_found")
    assert [row["text"] for row in await stored("team")] == ["hi team"]
    await client.close()


async def test_post_messages_is_the_websockets_say(settings: Any) -> None:
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    minji, owner = await person("minji"), await person("owner")
    listener = await connect("posted")
    path = "/api/rooms/posted/messages"
    response = await minji.http.post(
        path, {"text": "From HTTP", "client_id": "h-1"}, "application/json"
    )
    assert response.status_code == 202
    message_id = response.json()["id"]
    event = (await listener.recv_until(lambda f: f["type"] == "message"))[-1]
    assert event["id"] == message_id
    assert event["user"] == {"id": minji.identity.id, "name": "minji"}
    assert (event["text"], event["client_id"]) == ("From HTTP", "h-1")
    again = await minji.http.post(
        path, {"text": "From HTTP", "client_id": "h-1"}, "application/json"
    )
    assert again.status_code == 200
    assert again.json() == {"id": message_id, "duplicate": True}
    too_long = await minji.http.post(path, {"text": "x" * 21}, "application/json")
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "too_long"
    empty = await minji.http.post(path, {"text": " "}, "application/json")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid"
    # A private room is a 404 to an outsider, as for a room that is not there.
    await database_sync_to_async(rooms.create_room)(
        "hidden", owner.identity, visibility=Room.Visibility.PRIVATE
    )
    hidden = await minji.http.post("/api/rooms/hidden/messages", {"text": "hi"}, "application/json")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert [row["text"] for row in await stored("posted")] == ["From HTTP"]
    assert await stored("hidden") == []
    await listener.close()
