"""The API through the ASGI application in this process (Django's async test client), and its
parts on their own: SSE framing, error mapping, tokens, the member adapter, direct answers."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import AsyncClient

from chat import protocol
from chat.answers.direct import DirectAnswer
from chat.api import sse
from chat.api.errors import STATUS_BY_CODE, error_response
from chat.api.views import _room_stream
from chat.identity import new_guest
from chat.models import ApiToken
from chat.realtime.coordination import AnswerSlot, MemoryCoordinator, SlotLimits
from chat.realtime.member import RoomMember
from chat.runtime import get_runtime

pytestmark = pytest.mark.django_db(transaction=True)


def test_room_events_carry_their_seq_as_id_and_direct_frames_none() -> None:
    question = protocol.dumps({"seq": 7, "type": "question", "id": "q_1", "text": "a\nb"})
    assert sse.frame_event(question) == (
        b'id: 7\nevent: question\ndata: {"seq":7,"type":"question","id":"q_1","text":"a\\nb"}\n\n'
    )
    welcome = protocol.dumps({"type": "welcome", "seq": 7})
    assert sse.frame_event(welcome) == b'event: welcome\ndata: {"type":"welcome","seq":7}\n\n'
    assert sse.comment("keep-alive") == sse.KEEP_ALIVE
    assert sse.retry(1500) == b"retry: 1500\n\n"


def test_every_protocol_error_code_has_one_http_status() -> None:
    assert set(protocol.ERROR_CODES) <= set(STATUS_BY_CODE)
    response = error_response(protocol.ProtocolError("rate_limited", "slow down", retry_after=1.2))
    assert response.status_code == 429 and response["Retry-After"] == "2"
    assert json.loads(response.content) == {
        "error": {"code": "rate_limited", "message": "slow down", "retry_after": 1.2}
    }
    busy = error_response(protocol.ProtocolError("busy", "wait"))
    assert busy.has_header("Retry-After") is False


async def test_without_guests_anonymous_callers_are_401(settings: Any) -> None:
    settings.CHAT_ALLOW_GUESTS = False
    client = AsyncClient()
    for response in (
        await client.get("/api/rooms/lobby/events"),
        await client.post("/api/rooms/lobby/questions", {"text": "hi"}, "application/json"),
        await client.post("/api/ask", {"text": "hi"}, "application/json"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response["WWW-Authenticate"].startswith("Bearer")


async def test_a_logged_in_session_posts_with_csrf_only() -> None:
    user = await User.objects.acreate(username="sam")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    path = "/api/rooms/csrf/questions"
    refused = await client.post(path, {"text": "hi"}, "application/json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # Reading the room's events hands out the CSRF cookie.
    stream = await client.get("/api/rooms/csrf/events")
    assert stream.status_code == 200  # Not read: the response's headers set the cookie.
    token = client.cookies["csrftoken"].value
    accepted = await client.post(
        path, {"text": "hi"}, "application/json", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 202, accepted.content


async def test_a_client_leaving_the_event_stream_leaves_the_room() -> None:
    """Django cancels the task reading a stream when its client disconnects: the stream's
    `finally` leaves the room (and nothing else: answers are not the reader's)."""
    user = await User.objects.acreate(username="lea")
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.get("/api/rooms/leave/events")
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    content = response.streaming_content
    chunks: list[bytes] = []
    joined = asyncio.Event()

    async def read() -> None:
        async for chunk in content:  # type: ignore[union-attr]
            chunks.append(chunk)
            if chunk.startswith(b"event: presence"):
                joined.set()

    reader = asyncio.create_task(read())
    await joined.wait()  # The reader now waits for the room's next event.
    assert chunks[0] == sse.retry() and chunks[1].startswith(b"event: welcome\n")
    runtime = await get_runtime()
    assert len(runtime.hub.connections("leave")) == 1
    assert await runtime.coordinator.members("leave") == [{"id": f"u:{user.pk}", "name": "lea"}]
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert runtime.hub.connections("leave") == []
    assert await runtime.coordinator.members("leave") == []


async def test_a_reader_too_slow_is_ended_with_4008_to_resume() -> None:
    runtime = await get_runtime()
    member = RoomMember(
        runtime.membership, "slow", new_guest(), after=None, transport_pending=lambda: 10**9
    )
    chunks = [chunk async for chunk in _room_stream(member)]
    assert chunks == [sse.retry(), sse.comment("closed 4008: reconnect with Last-Event-ID")]
    assert member.close_code == protocol.CLOSE_TOO_SLOW
    assert runtime.hub.connections("slow") == []


async def _events(
    started: asyncio.Event, finished: list[str], count: int = 3
) -> AsyncGenerator[dict[str, Any], None]:
    try:
        for i in range(count):
            yield protocol.answer_delta_event(answer_id="a_1", text=f"{i} ")
            started.set()
            await asyncio.sleep(0)
        yield protocol.answer_end_event(answer_id="a_1", status="complete", text="0 1 2 ")
    finally:
        finished.append("closed")


SLOT_1 = AnswerSlot(room=None, user_id="u:1", answer_id="a_1")
ONE_EACH = SlotLimits(per_user=1, per_room=10, per_address=10, total=10)


async def test_a_direct_answer_never_read_still_releases_its_slot() -> None:
    coordinator = MemoryCoordinator()
    assert await coordinator.reserve_answer(SLOT_1, ONE_EACH)
    finished: list[str] = []
    answer = DirectAnswer(_events(asyncio.Event(), finished), coordinator=coordinator, slot=SLOT_1)
    answer.start()
    assert answer._task is not None
    await answer._task
    assert finished == ["closed"]
    assert await coordinator.reserve_answer(AnswerSlot(None, "u:1", "a_2"), ONE_EACH)


async def test_closing_a_direct_answer_early_stops_it_and_releases_its_slot() -> None:
    coordinator = MemoryCoordinator()
    await coordinator.reserve_answer(SLOT_1, ONE_EACH)
    finished: list[str] = []
    started = asyncio.Event()
    answer = DirectAnswer(
        _events(started, finished, count=10**9),
        coordinator=coordinator,
        slot=SLOT_1,
    )
    answer.start()
    events = answer.events()
    first = await anext(events)
    assert first is not None and first["type"] == "answer.delta"
    await events.aclose()
    assert answer._task is not None and answer._task.done()
    assert finished == ["closed"]
    assert await coordinator.reserve_answer(AnswerSlot(None, "u:1", "a_2"), ONE_EACH)


async def test_tokens_are_stored_as_a_hash_and_shown_once() -> None:
    await User.objects.acreate(username="tok")
    out, err = io.StringIO(), io.StringIO()
    await sync_to_async(call_command)(
        "create_token", "tok", "--name", "bot", stdout=out, stderr=err
    )
    key = out.getvalue().strip()
    token = await ApiToken.objects.aget(name="bot")
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {token.key_hash, token.prefix, token.name} and key.startswith(token.prefix)
    client = AsyncClient()
    response = await client.post(
        "/api/rooms/tok/questions",
        {"text": "hi"},
        "application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 202
    await token.arefresh_from_db()
    assert token.last_used is not None


async def test_a_body_over_djangos_upload_limit_is_too_long(settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = await AsyncClient().post(
        "/api/ask", {"text": "x" * 200}, "application/json", headers=await _token_header()
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_long"


async def test_an_unexpected_failure_is_a_json_500(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("chat.api.views.get_runtime", broken)
    response = await AsyncClient().post(
        "/api/rooms/x/questions", {"text": "hi"}, "application/json", headers=await _token_header()
    )
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "Something went wrong."}}


async def _token_header() -> dict[str, str]:
    user = await User.objects.acreate(username=f"t{await User.objects.acount()}")
    _, key = await sync_to_async(ApiToken.issue)(user)
    return {"Authorization": f"Bearer {key}"}
