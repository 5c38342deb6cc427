"""`GET /api/rooms/<room>/events` against a real daphne: the same events as the WebSocket, with
their seq as SSE ids, resumable, kept alive, and a reader leaving never stops an answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import Server, sse
from tests.sse_client import Comment, Event, is_end

pytestmark = pytest.mark.slow


async def ws_until(ws: Any, kind: str, timeout: float = 20) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] == kind:
                return frames


async def ask(http: httpx.AsyncClient, server: Server, user: str, room: str, text: str) -> str:
    response = await http.post(
        f"/api/rooms/{room}/questions", json={"text": text}, headers=server.auth(user)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def test_sse_events_are_the_websocket_frames_with_seq_as_id(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    ws_url = api_server.url.replace("http", "ws") + "/ws/rooms/same-shapes/"
    async with websockets.connect(ws_url) as ws:
        ws_welcome = (await ws_until(ws, "welcome"))[-1]
        async with sse(
            http, "/api/rooms/same-shapes/events", headers=api_server.auth("alice")
        ) as r:
            welcome = await r.event()
            assert welcome.event == "welcome" and welcome.id is None
            assert r.retry is not None and r.retry > 0
            body = welcome.json()
            assert set(body) == set(ws_welcome)
            assert body["user"]["name"] == "alice" and body["resumed"] is False
            assert body["seq"] == ws_welcome["seq"]
            question_id = await ask(http, api_server, "alice", "same-shapes", "Latte price?")
            events = await r.until(is_end)
        frames = [f for f in await ws_until(ws, "answer.end") if f["type"] != "presence"]
    assert [e.json() for e in events] == frames
    for event in events:
        data = event.json()
        assert event.id == str(data["seq"]) and event.event == data["type"]
    assert frames[0]["type"] == "question" and frames[0]["id"] == question_id
    assert frames[0]["seq"] == ws_welcome["seq"] + 1
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    text = "".join(f["text"] for f in frames if f["type"] == "answer.delta")
    assert frames[-1]["status"] == "complete" and frames[-1]["text"] == text


async def test_resume_with_last_event_id_or_after_gets_exactly_the_missed_events(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    path = "/api/rooms/resume/events"
    auth = api_server.auth("bob")
    async with sse(http, path, headers=auth) as r:
        await r.event()
        await ask(http, api_server, "bob", "resume", "What desserts are there? [[sim tps=100]]")
        events = await r.until(is_end)
    assert len(events) > 5

    async def resumed(headers: dict[str, str], query: str = "") -> list[Event]:
        async with sse(http, path + query, headers={**auth, **headers}) as r:
            welcome = await r.event()
            assert welcome.event == "welcome" and welcome.id is None
            # Room events up to the first keep-alive: everything the server had to send.
            items: list[Event] = []
            while True:
                item = await r.read()
                if isinstance(item, Comment):
                    break
                if item.event != "presence":
                    items.append(item)
            body = welcome.json()
            assert body["resumed"] is True and body["history"] == []
            cursor = int(headers.get("Last-Event-ID") or query.removeprefix("?after="))
            assert body["seq"] == cursor
            return items

    def data(items: list[Event]) -> list[Any]:
        return [(e.id, e.event, e.json()) for e in items]

    missed = await resumed({"Last-Event-ID": events[2].id or ""})
    assert data(missed) == data(events[3:])
    missed = await resumed({}, f"?after={events[0].id}")
    assert data(missed) == data(events[1:])
    # The header wins over the query (an EventSource reconnecting keeps its first URL).
    missed = await resumed({"Last-Event-ID": events[-2].id or ""}, f"?after={events[0].id}")
    assert data(missed) == data(events[-1:])
    # A cursor that is not a number is no cursor: a full welcome.
    async with sse(http, path, headers={**auth, "Last-Event-ID": "soon"}) as r:
        welcome = (await r.event()).json()
        assert welcome["resumed"] is False and welcome["history"]


async def test_idle_streams_get_keep_alive_comments(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    async with sse(http, "/api/rooms/quiet/events", headers=api_server.auth("carol")) as r:
        await r.event()
        async with asyncio.timeout(10):
            while not isinstance(item := await r.read(), Comment):
                assert item.event == "presence"
        assert item.text == "keep-alive"


async def test_a_reader_leaving_never_stops_the_answer(
    api_server: Server, http: httpx.AsyncClient
) -> None:
    room = "leaving"
    ws_url = api_server.url.replace("http", "ws") + f"/ws/rooms/{room}/"
    async with websockets.connect(ws_url) as ws:
        me = (await ws_until(ws, "welcome"))[-1]["user"]
        async with sse(http, f"/api/rooms/{room}/events", headers=api_server.auth("dave")) as r:
            await r.event()
            await ask(http, api_server, "dave", room, "Opening hours? [[sim tps=8 tokens=40]]")
            last_seen = int((await r.until(lambda e: e.event == "answer.delta"))[-1].id)
        # The stream is closed mid-answer. The server notices (dave leaves the room): a
        # presence frame without dave, queued after the delta dave saw last. (Presence is
        # coalesced, so dave may never have appeared in one: only his leaving is certain.)
        frames: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                seqs = [f["seq"] for f in frames if "seq" in f]
                after_dave = bool(seqs) and seqs[-1] >= last_seen
                if frame["type"] == "presence" and after_dave and frame["members"] == [me]:
                    break
                assert frame["type"] != "answer.end", "the answer ended before dave left"
        # ... and the answer goes on to the end, for everyone else.
        frames += await ws_until(ws, "answer.end")
    end = frames[-1]
    assert end["status"] == "complete"
    assert end["text"] == "".join(f["text"] for f in frames if f["type"] == "answer.delta")
    assert len(end["text"].split()) == 40


async def test_presence_reaches_event_streams(api_server: Server, http: httpx.AsyncClient) -> None:
    path = "/api/rooms/presence/events"
    async with sse(http, path, headers=api_server.auth("erin")) as erin:
        assert [m["name"] for m in (await erin.event()).json()["members"]] == ["erin"]
        async with sse(http, path, headers=api_server.auth("frank")) as frank:
            await frank.event()
            seen = await erin.until(
                lambda e: e.event == "presence" and len(e.json()["members"]) == 2,
                skip_presence=False,
            )
            assert seen[-1].id is None
            assert {m["name"] for m in seen[-1].json()["members"]} == {"erin", "frank"}
        await erin.until(
            lambda e: e.event == "presence" and len(e.json()["members"]) == 1,
            skip_presence=False,
        )


async def test_a_bad_room_name_is_a_json_404(api_server: Server, http: httpx.AsyncClient) -> None:
    for path in ("/api/rooms/bad.name/events", f"/api/rooms/{'x' * 65}/events"):
        response = await http.get(path, headers=api_server.auth("alice"))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
