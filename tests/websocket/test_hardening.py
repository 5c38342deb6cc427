"""What an attacker tried (the hardening issue), through the real ASGI application: room names
that are not names, origins of other sites and ports, input built to crash a handler. Each
test failed before its fix."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chat import protocol
from chat.models import Message, Room
from config.asgi import application
from config.origin import origin_allowed
from tests.conftest import Client, connect

pytestmark = pytest.mark.django_db(transaction=True)

# Names that once slipped through `re.match` with `$`, or reached the database or the router.
BAD_NAMES = ["lobby\n", "lobby\r", "lobby\t", "lob\x00by", "..", ".", "x" * 64 + "\n", "로비"]


async def _room_count() -> int:
    return await database_sync_to_async(Room.objects.count)()


# --- 1. room names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_websocket_to_a_bad_room_name_is_closed_4004_and_creates_nothing(
    name: str,
) -> None:
    before = await _room_count()
    # Percent-encoded: the test communicator unquotes the path, as daphne does.
    communicator = WebsocketCommunicator(application, f"/ws/rooms/{quote(name)}/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4004}
    assert await _room_count() == before


@pytest.mark.parametrize("name", ["lobby%0A", "lobby%0D", "lobby%09", "lob%00by", "..", "%2E%2E"])
async def test_bad_room_names_over_http_are_404_and_create_nothing(name: str) -> None:
    client = AsyncClient()
    before = await _room_count()
    page = await client.get(f"/rooms/{name}/")
    assert page.status_code == 404
    events = await client.get(f"/api/rooms/{name}/events")
    assert events.status_code == 404 and events.json()["error"]["code"] == "not_found"
    post = await client.post(f"/api/rooms/{name}/questions", {"text": "hi"}, "application/json")
    assert post.status_code == 404 and post.json()["error"]["code"] == "not_found"
    assert await _room_count() == before


@pytest.mark.parametrize("name", ["lob\nby", "lob\rby", "lob\x00by", "..", "lob by"])
async def test_the_home_form_refuses_bad_names(name: str) -> None:
    response = await AsyncClient().get("/rooms/", {"name": name})
    assert response.status_code == 400


async def test_the_home_page_survives_a_bad_name_left_in_the_database() -> None:
    """A row an older version created for "lobby\\n" must not take the page down."""
    await database_sync_to_async(Room.objects.create)(name="lobby\n")
    await database_sync_to_async(Room.objects.create)(name="fine")
    response = await AsyncClient().get("/")
    assert response.status_code == 200
    assert b"/rooms/fine/" in response.content
    assert b"lobby\n" not in response.content


def test_the_room_name_rule_is_a_whole_string_match() -> None:
    assert protocol.is_room_name("lobby") and protocol.is_room_name("a-b_C9")
    for name in [*BAD_NAMES, "", "x" * 65, "lobby/"]:
        assert not protocol.is_room_name(name), repr(name)


# --- 2. origins --------------------------------------------------------------------------------


async def _handshake(headers: list[tuple[bytes, bytes]]) -> bool:
    communicator = WebsocketCommunicator(application, "/ws/rooms/lobby/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (b"http://localhost:8000", b"localhost:8000", True),
        (b"http://127.0.0.1:8000", b"127.0.0.1:8000", True),
        # Another port of the same host is another site (any local dev server).
        (b"http://localhost:9999", b"localhost:8000", False),
        (b"http://localhost", b"localhost:8000", False),
        # Another scheme: an https page does not talk to a plain ws:// socket of ours.
        (b"https://localhost:8000", b"localhost:8000", False),
        (b"http://evil.example", b"localhost:8000", False),
        (b"http://localhost:8000.evil.example", b"localhost:8000", False),
        # Our own origin, but a Host we do not serve.
        (b"http://evil.example:8000", b"evil.example:8000", False),
        (b"null", b"localhost:8000", False),
        (b"file://", b"localhost:8000", False),
        (b"http://localhost:99999", b"localhost:99999", False),
    ],
)
async def test_a_websocket_origin_is_compared_by_scheme_host_and_port(
    origin: bytes, host: bytes, allowed: bool
) -> None:
    assert await _handshake([(b"origin", origin), (b"host", host)]) is allowed


async def test_no_origin_is_let_through_only_without_a_session_cookie() -> None:
    assert await _handshake([]) is True  # a program: a guest of its own
    assert await _handshake([(b"cookie", b"theme=dark")]) is True
    assert await _handshake([(b"cookie", b"theme=dark; sessionid=abc")]) is False


def test_trusted_origins_follow_csrf_trusted_origins(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    host = "127.0.0.1:8000"  # behind a proxy that ends TLS, the socket sees its own address
    assert origin_allowed("https://chat.example.com", host=host, secure=False)
    assert origin_allowed("https://a.example.org", host=host, secure=False)
    assert not origin_allowed("http://chat.example.com", host=host, secure=False)
    assert not origin_allowed("https://chat.example.com:8443", host=host, secure=False)
    assert not origin_allowed("http://a.example.org", host=host, secure=False)
    assert not origin_allowed("https://example.org.evil.example", host=host, secure=False)


def test_a_proxy_header_makes_the_socket_secure(settings: Any) -> None:
    from config.origin import handshake_allowed

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    scope = {
        "type": "websocket",
        "scheme": "ws",
        "headers": [
            (b"origin", b"https://localhost"),
            (b"host", b"localhost"),
            (b"x-forwarded-proto", b"https"),
        ],
    }
    assert handshake_allowed(scope)
    scope["headers"] = scope["headers"][:2]
    assert not handshake_allowed(scope)


# --- 3. input built to crash a handler ----------------------------------------------------------

DEEP = "[" * 30_000 + "]" * 30_000  # under the 64 KiB frame limit
CRASHERS = [
    ('{"type": "ask", "text": ' + "[" * 1000 + "]" * 1000 + "}", "bad_json"),
    # Deeper than MAX_JSON_DEPTH (64): refused the same on every Python (3.13's parser reads
    # 1,000 levels where 3.11's gives up), brackets inside strings aside.
    ('{"type": "ask", "text": ' + "[" * 64 + "]" * 64 + "}", "bad_json"),
    ('{"type": "ask", "text": "' + "[" * 200 + '", "x": ' + "[" * 64 + "]" * 64 + "}", "bad_json"),
    (DEEP, "bad_json"),
    ('{"type": "ask", "text": "\\ud800"}', "invalid"),
    ('{"type": "ask", "text": "ok \\udfff tail"}', "invalid"),
    ('{"type": "ask", "text": "nul \\u0000 here"}', "invalid"),
    ('{"type": "ask", "text": "hi", "client_id": "c\\u0000"}', "invalid"),
    ('{"type": "ask", "text": "hi", "client_id": "\\ud800"}', "invalid"),
    ('{"type": "cancel", "answer_id": "a_\\u0000"}', "invalid"),
    ('{"type": "cancel", "answer_id": "\\udc00"}', "invalid"),
    ('{"type": "cancel", "answer_id": "' + "a" * 41 + '"}', "invalid"),
    ('{"type": "\\ud800"}', "unknown_type"),
]


@pytest.mark.parametrize(("frame", "code"), CRASHERS)
async def test_input_built_to_crash_gets_an_error_and_logs_nothing_above_info(
    frame: str, code: str, caplog: Any
) -> None:
    caplog.set_level(logging.INFO)
    client = await connect("crash")
    await client.send(frame)
    error = (await client.recv_until(lambda f: f["type"] == "error"))[-1]
    assert error["code"] == code, error
    await client.send({"type": "ping"})
    assert (await client.recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    await client.close()
    assert [r for r in caplog.records if r.levelno > logging.INFO] == []
    assert await database_sync_to_async(Message.objects.count)() == 0


HTTP_CRASHERS = [(f, c) for f, c in CRASHERS if '"type": "ask"' in f]


async def test_brackets_in_text_and_nesting_up_to_the_limit_are_fine() -> None:
    """The depth limit counts structure, not brackets in strings: a question full of them,
    and a frame nested exactly MAX_JSON_DEPTH deep, are read as usual."""
    client = await connect("deep-but-fine")
    await client.send('{"type": "ping", "x": ' + "[" * 63 + "]" * 63 + "}")
    assert (await client.recv_until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    brackets = "[[[{{{" * 20 + ' \\" [[['
    await client.send('{"type": "say", "text": "' + brackets + '"}')
    said = (await client.recv_until(lambda f: f["type"] in ("message", "error")))[-1]
    assert said["type"] == "message" and said["text"] == "[[[{{{" * 20 + ' " [[[', said
    await client.close()


@pytest.mark.parametrize(("body", "code"), HTTP_CRASHERS)
async def test_http_bodies_built_to_crash_are_400(body: str, code: str, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    # The API takes the fields without `type` (the URL says what it is).
    payload = body.replace('"type": "ask", ', "")
    response = await AsyncClient().post("/api/rooms/crash/questions", payload, "application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == code
    assert [r for r in caplog.records if r.levelno > logging.INFO] == []
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_a_cancel_url_with_nul_is_400_not_500(caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    response = await AsyncClient().post("/api/rooms/crash/answers/a_%00x/cancel")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert [r for r in caplog.records if r.levelno > logging.INFO] == []


def test_a_lone_surrogate_in_a_question_never_reaches_the_database() -> None:
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.parse_command(json.dumps({"type": "ask", "text": "\ud800"}), max_chars=100)
    assert refused.value.code == "invalid"


async def test_ordinary_korean_and_emoji_text_is_still_asked() -> None:
    client: Client = await connect("crash")
    await client.send({"type": "ask", "text": "라떼 가격은? ☕ 🍰"})
    question = (await client.recv_until(lambda f: f["type"] == "question"))[-1]
    assert question["text"] == "라떼 가격은? ☕ 🍰"
    await client.recv_until(lambda f: f["type"] == "answer.end")
    await client.close()
