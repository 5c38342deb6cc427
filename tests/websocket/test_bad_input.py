"""Every row of the protocol's error table, through the real ASGI application: the server
answers with the right code, the connection lives on, and everyone else is still served."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from chat.models import Message
from config.asgi import application
from tests.conftest import Client, connect

pytestmark = pytest.mark.django_db(transaction=True)


async def expect_error(client: Client, frame: Any, code: str) -> dict[str, Any]:
    if isinstance(frame, bytes):
        await client.ws.send_to(bytes_data=frame)
    else:
        await client.send(frame)
    error = (await client.recv_until(lambda f: f["type"] == "error"))[-1]
    assert error["code"] == code, error
    assert error["message"]
    # ... and the connection stays open and usable.
    await client.send({"type": "ping"})
    assert (await client.recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    return error


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "bad_json"),
        ("{'single': 'quotes'}", "bad_json"),
        ("[1, 2, 3]", "bad_frame"),
        ('"a string"', "bad_frame"),
        ("{}", "bad_frame"),
        ('{"text": "no type"}', "bad_frame"),
        ('{"type": 42}', "bad_frame"),
        ('{"type": null}', "bad_frame"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"type": "__init__"}', "unknown_type"),
        ('{"type": "ask"}', "invalid"),
        ('{"type": "ask", "text": ""}', "invalid"),
        ('{"type": "ask", "text": "   \\n\\t "}', "invalid"),
        ('{"type": "ask", "text": 42}', "invalid"),
        ('{"type": "ask", "text": ["a"]}', "invalid"),
        ('{"type": "ask", "text": "hi", "client_id": 7}', "invalid"),
        ('{"type": "ask", "text": "hi", "client_id": "' + "x" * 65 + '"}', "too_long"),
        ('{"type": "cancel"}', "invalid"),
        ('{"type": "cancel", "answer_id": 3}', "invalid"),
        ('{"type": "cancel", "answer_id": "a_nope"}', "not_found"),
        (b"\x00\x01binary", "bad_frame"),
        (b'{"type": "ping"}', "bad_frame"),
    ],
)
async def test_bad_frames_get_an_error_and_the_connection_lives_on(frame: Any, code: str) -> None:
    client = await connect("errors")
    await expect_error(client, frame, code)
    await client.close()


async def test_an_overlong_question_is_too_long(settings: Any) -> None:
    settings.CHAT_MAX_QUESTION_CHARS = 10
    client = await connect("errors")
    await expect_error(client, {"type": "ask", "text": "x" * 11}, "too_long")
    # Trimming happens first: surrounding blanks do not count.
    await client.send({"type": "ask", "text": "   " + "y" * 10 + "   "})
    frames = await client.recv_until(lambda f: f["type"] == "question")
    assert frames[-1]["text"] == "y" * 10
    await client.close()


async def test_a_frame_over_the_size_limit_closes_with_1009(settings: Any) -> None:
    settings.CHAT_MAX_FRAME_BYTES = 1024
    other = await connect("big")
    client = await connect("big")
    await client.send({"type": "ask", "text": "가" * 400})  # 1200 bytes in UTF-8
    closed = await client.ws.receive_output(timeout=5)
    while closed["type"] != "websocket.close":
        closed = await client.ws.receive_output(timeout=5)
    assert closed["code"] == 1009
    await other.send({"type": "ping"})
    assert (await other.recv_until(lambda f: f["type"] == "pong"))[-1]["type"] == "pong"
    await other.close()


async def test_cancel_of_someone_elses_answer_is_forbidden(settings: Any) -> None:
    # Still running when the cancel comes (about 300 words quoted from the knowledge base when
    # it is ingested), and done well within the wait for its end.
    settings.CHAT_OFFLINE_TOKEN_DELAY = 0.02
    alice = await connect("mine")
    bob = await connect("mine")
    await alice.send({"type": "ask", "text": "a long offline answer please"})
    start = (await bob.recv_until(lambda f: f["type"] == "answer.start"))[-1]
    await expect_error(bob, {"type": "cancel", "answer_id": start["id"]}, "forbidden")
    end = (await alice.recv_until(lambda f: f["type"] == "answer.end"))[-1]
    assert end["status"] == "complete"
    await alice.close()
    await bob.close()


async def test_cancel_of_an_answer_in_another_room_is_not_found(settings: Any) -> None:
    alice = await connect("room-a")
    end = (await alice.answer("hello"))[-1]
    other = await connect("room-b")
    await expect_error(other, {"type": "cancel", "answer_id": end["answer_id"]}, "not_found")
    await alice.close()
    await other.close()


async def test_a_flood_of_asks_is_rate_limited_then_closed_with_1008(settings: Any) -> None:
    settings.CHAT_ASK_BURST = 2
    settings.CHAT_ASK_RATE_PER_MINUTE = 1
    settings.CHAT_FLOOD_LIMIT = 3
    settings.CHAT_MAX_ANSWERS_PER_USER = 10
    settings.CHAT_MAX_ANSWERS_PER_ROOM = 10
    bystander = await connect("flood")
    client = await connect("flood")
    for n in range(2):
        await client.send({"type": "ask", "text": f"question {n}"})
    await client.send({"type": "ask", "text": "one too many"})
    error = (await client.recv_until(lambda f: f["type"] == "error"))[-1]
    assert error["code"] == "rate_limited"
    assert error["retry_after"] > 0
    for n in range(10):
        await client.send({"type": "ask", "text": f"flood {n}"})
    message = await client.ws.receive_output(timeout=5)
    while message["type"] != "websocket.close":
        message = await client.ws.receive_output(timeout=5)
    assert message["code"] == 1008
    # Everyone else is still served, and what was asked before the flood is stored.
    await bystander.send({"type": "ask", "text": "still there?"})
    frames = await bystander.recv_until(
        lambda f: f["type"] == "error" or (f["type"] == "question" and f["text"] == "still there?")
    )
    assert frames[-1]["type"] == "question", frames[-1]
    frames = await bystander.recv_until(
        lambda f: f["type"] == "answer.end" and f["status"] == "complete"
    )
    count = await database_sync_to_async(
        Message.objects.filter(room__name="flood", role="user").count
    )()
    texts = await database_sync_to_async(
        lambda: list(
            Message.objects.filter(room__name="flood", role="user").values_list("text", flat=True)
        )
    )()
    assert count == 3, texts
    await bystander.close()


@pytest.mark.parametrize("room", ["bad name", "x" * 65, "semi;colon", "한국어", ""])
async def test_a_bad_room_name_closes_with_4004(room: str) -> None:
    from urllib.parse import quote

    communicator = WebsocketCommunicator(application, f"/ws/rooms/{quote(room)}/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4004}


async def test_a_foreign_origin_is_refused_before_accept() -> None:
    communicator = WebsocketCommunicator(
        application, "/ws/rooms/lobby/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_an_allowed_origin_and_no_origin_are_accepted() -> None:
    browser = await connect(
        "lobby", headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
    )
    program = await connect("lobby")
    assert browser.welcome["room"] == program.welcome["room"] == "lobby"
    await browser.close()
    await program.close()


async def test_login_is_required_when_guests_are_not_allowed(settings: Any) -> None:
    settings.CHAT_ALLOW_GUESTS = False
    communicator = WebsocketCommunicator(application, "/ws/rooms/lobby/")
    connected, _ = await communicator.connect(timeout=5)
    assert not connected


async def test_a_logged_in_user_is_named_from_the_session(settings: Any, client: Any) -> None:
    from django.contrib.auth.models import User

    settings.CHAT_ALLOW_GUESTS = False
    user = await database_sync_to_async(User.objects.create_user)("minji", password="pw-123456789")
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    # A session cookie goes with the site's own origin, as a browser sends it.
    member = await connect(
        "lobby",
        headers=[(b"cookie", cookie), (b"origin", b"http://testserver"), (b"host", b"testserver")],
    )
    assert member.welcome["user"] == {"id": f"u:{user.pk}", "name": "minji"}
    await member.close()


async def test_welcome_frame_has_every_field() -> None:
    client = await connect("fields")
    welcome = client.welcome
    assert {"type", "room", "user", "seq", "resumed", "history", "members"} <= set(welcome)
    assert welcome["resumed"] is False
    assert isinstance(welcome["seq"], int)
    assert json.dumps(welcome)
    await client.close()
