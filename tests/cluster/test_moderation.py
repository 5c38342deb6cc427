"""Rooms that belong to people, across two real workers on Redis and PostgreSQL: a private room
shows an outsider nothing on either worker; a member removed on one worker loses their sockets
and event streams on both within a second; a redaction made on one worker is seen on the other
and is gone from fresh welcomes, resumes, SSE replays and the database."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.cluster.clients import Member, stored_message
from tests.cluster.conftest import ClusterFactory
from tests.cluster.people import team
from tests.sse_client import Comment, SseReader

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

SECRET = "비밀번호는 4711 (the door code)"


async def _refused(url: str, cookie: str | None) -> int:
    """The HTTP status a WebSocket handshake was refused with."""
    headers = {"Cookie": cookie} if cookie else None
    origin = "http://" + url.split("/")[2]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, additional_headers=headers, origin=origin, proxy=None)
    return refused.value.response.status_code


async def test_a_private_room_shows_an_outsider_nothing_on_either_worker(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    outsider = people["outsider"]["cookie"]
    for index in (0, 1):
        base = cluster.url(index)
        assert await _refused(cluster.ws_url(index, room), outsider) == 403
        assert await _refused(cluster.ws_url(index, room), None) == 403  # a guest
        async with httpx.AsyncClient(base_url=base, headers={"Cookie": outsider}) as http:
            assert (await http.get(f"/rooms/{room}/")).status_code == 404
            events = await http.get(f"/api/rooms/{room}/events")
            assert events.status_code == 404 and events.json()["error"]["code"] == "not_found"
            home = await http.get("/")
            assert room not in home.text
            # A CSRF token, as a public room's event stream hands it out (only its headers).
            async with http.stream("GET", "/api/rooms/lobby/events") as opened:
                assert opened.status_code == 200
            csrf = http.cookies["csrftoken"]
            posted = await http.post(
                f"/api/rooms/{room}/questions",
                json={"text": "what is secret?"},
                headers={
                    "X-CSRFToken": csrf,
                    "Origin": base,
                    "Cookie": f"{outsider}; csrftoken={csrf}",
                },
            )
            assert posted.status_code == 404, posted.text
        member = await Member.join(cluster.ws_url(index, room), cookie=people["member"]["cookie"])
        assert member.welcome["room"] == room
        await member.close()


async def test_a_member_removed_on_one_worker_loses_sockets_and_streams_on_both_within_a_second(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    cookie = people["member"]["cookie"]
    on_a = await Member.join(cluster.ws_url(0, room), cookie=cookie)
    on_b = await Member.join(cluster.ws_url(1, room), cookie=cookie)
    async with (
        httpx.AsyncClient(base_url=cluster.url(1), headers={"Cookie": cookie}) as http,
        http.stream("GET", f"/api/rooms/{room}/events", timeout=20) as response,
    ):
        assert response.status_code == 200
        stream = SseReader(response)
        assert (await stream.event()).event == "welcome"
        moderator = await Member.join(cluster.ws_url(0, room), cookie=people["mod"]["cookie"])
        removed_at = time.monotonic()
        await moderator.send({"type": "remove", "user_id": people["member"]["id"]})
        codes = await asyncio.gather(on_a.closed(timeout=5), on_b.closed(timeout=5))
        rest = await stream.rest(timeout=5)
        elapsed = time.monotonic() - removed_at
    assert codes == [4003, 4003]
    assert [item.text for item in rest if isinstance(item, Comment)] == [
        "closed 4003: you were removed from this room"
    ]
    # Measured, not asserted as a timing: the issue asks for "within a second".
    print(f"sockets and stream on both workers closed {elapsed * 1000:.0f} ms after remove")
    for index in (0, 1):
        assert await _refused(cluster.ws_url(index, room), cookie) == 403
        await _shown_nothing(cluster.url(index), room, people["member"])
    await moderator.close()


async def _shown_nothing(base: str, room: str, someone: dict[str, str]) -> None:
    """`someone` (a session and an API key) gets the room's 404 from this worker: its event
    stream, its page, a POST (by API key: no CSRF token to fetch first)."""
    async with httpx.AsyncClient(base_url=base, headers={"Cookie": someone["cookie"]}) as http:
        events = await http.get(f"/api/rooms/{room}/events")
        assert events.status_code == 404 and events.json()["error"]["code"] == "not_found"
        assert (await http.get(f"/rooms/{room}/")).status_code == 404
    async with httpx.AsyncClient(base_url=base) as program:
        said = await program.post(
            f"/api/rooms/{room}/messages",
            json={"text": "still here?"},
            headers={"Authorization": f"Bearer {someone['key']}"},
        )
        assert said.status_code == 404 and said.json()["error"]["code"] == "not_found"


async def _stream_closed(stream: SseReader) -> list[str]:
    """The comments an event stream ends with (after whatever events were still coming)."""
    rest = await stream.rest(timeout=5)
    return [item.text for item in rest if isinstance(item, Comment)]


async def test_a_room_made_private_on_one_worker_closes_outsiders_on_both_within_a_second(
    make_cluster: ClusterFactory,
) -> None:
    """The room's owner makes a public room private through worker A's API: the outsiders'
    sockets on A and B and their event stream on B close with 4003, the members stay and are
    told (room.updated), and the outsiders get nothing any more on either worker."""
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    owner = {"Authorization": f"Bearer {people['owner']['key']}"}
    outsider = people["outsider"]["cookie"]
    async with httpx.AsyncClient(timeout=20) as api:
        opened = await api.patch(
            f"{cluster.url(1)}/api/rooms/{room}", json={"visibility": "public"}, headers=owner
        )
        assert opened.status_code == 200, opened.text
        stranger_on_a = await Member.join(cluster.ws_url(0, room), cookie=outsider)
        guest_on_b = await Member.join(cluster.ws_url(1, room))
        member_on_b = await Member.join(cluster.ws_url(1, room), cookie=people["member"]["cookie"])
        async with (
            httpx.AsyncClient(base_url=cluster.url(1), headers={"Cookie": outsider}) as http,
            http.stream("GET", f"/api/rooms/{room}/events", timeout=20) as response,
        ):
            assert response.status_code == 200
            stream = SseReader(response)
            assert (await stream.event()).event == "welcome"
            changed_at = time.monotonic()
            closed = await api.patch(
                f"{cluster.url(0)}/api/rooms/{room}", json={"visibility": "private"}, headers=owner
            )
            assert closed.status_code == 200, closed.text
            codes = await asyncio.gather(
                stranger_on_a.closed(timeout=5), guest_on_b.closed(timeout=5)
            )
            comments = await _stream_closed(stream)
            elapsed = time.monotonic() - changed_at
    assert codes == [4003, 4003]
    assert comments == ["closed 4003: you were removed from this room"]
    # Measured, not asserted as a timing (the PATCH's own round trip included).
    print(f"outsiders on both workers closed {elapsed * 1000:.0f} ms after the room went private")
    updated = (await member_on_b.until(lambda f: f["type"] == "room.updated"))[-1]
    assert updated["room"]["visibility"] == "private"
    await member_on_b.send({"type": "ping"})
    assert (await member_on_b.until(lambda f: f["type"] == "pong"))[-1] == {"type": "pong"}
    for index in (0, 1):
        assert await _refused(cluster.ws_url(index, room), outsider) == 403
        assert await _refused(cluster.ws_url(index, room), None) == 403  # a guest
        await _shown_nothing(cluster.url(index), room, people["outsider"])
    await member_on_b.close()


async def test_a_moderator_demoted_on_one_worker_is_closed_on_both_and_comes_back_a_member(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    cookie = people["mod"]["cookie"]
    on_a = await Member.join(cluster.ws_url(0, room), cookie=cookie)
    assert on_a.welcome["access"] == {"role": "moderator", "moderate": True, "configure": False}
    async with (
        httpx.AsyncClient(base_url=cluster.url(1), headers={"Cookie": cookie}) as http,
        http.stream("GET", f"/api/rooms/{room}/events", timeout=20) as response,
    ):
        assert response.status_code == 200
        stream = SseReader(response)
        assert (await stream.event()).json()["access"]["role"] == "moderator"
        owner = await Member.join(cluster.ws_url(1, room), cookie=people["owner"]["cookie"])
        await owner.send({"type": "set_role", "user_id": people["mod"]["id"], "role": "member"})
        code = await on_a.closed(timeout=5)
        comments = await _stream_closed(stream)
    assert code == 4003
    assert comments == ["closed 4003: you were removed from this room"]
    member = {"role": "member", "moderate": False, "configure": False}
    for index in (0, 1):
        again = await Member.join(cluster.ws_url(index, room), cookie=cookie)
        assert again.welcome["access"] == member
        await again.send({"type": "remove", "user_id": people["member"]["id"]})
        assert (await again.until(lambda f: f["type"] == "error"))[-1]["code"] == "forbidden"
        await again.close()
        async with (
            httpx.AsyncClient(base_url=cluster.url(index), headers={"Cookie": cookie}) as http,
            http.stream("GET", f"/api/rooms/{room}/events", timeout=20) as response,
        ):
            assert (await SseReader(response).event()).json()["access"] == member
    await owner.close()


async def test_a_redaction_on_one_worker_is_gone_everywhere_on_the_other(
    make_cluster: ClusterFactory, database_url: str
) -> None:
    cluster = make_cluster(workers=2)
    room, people = team(cluster)
    asker = await Member.join(cluster.ws_url(0, room), cookie=people["member"]["cookie"])
    watcher = await Member.join(cluster.ws_url(0, room), cookie=people["owner"]["cookie"])
    before = asker.welcome["seq"]
    await asker.ask(SECRET)
    question = (await asker.until(lambda f: f["type"] == "question"))[-1]
    await asker.until_end()
    moderator = await Member.join(cluster.ws_url(1, room), cookie=people["mod"]["cookie"])
    await moderator.send({"type": "redact", "id": question["id"]})
    seen = (await watcher.until(lambda f: f["type"] == "message.redacted"))[-1]
    assert seen["id"] == question["id"]
    assert stored_message(database_url, question["id"])["text"] == ""

    def holds_secret(value: Any) -> bool:
        return SECRET in json.dumps(value, ensure_ascii=False)

    for index in (0, 1):
        fresh = await Member.join(cluster.ws_url(index, room), cookie=people["owner"]["cookie"])
        assert not holds_secret(fresh.welcome)
        item = next(m for m in fresh.welcome["history"] if m["id"] == question["id"])
        assert item["redacted"] is True
        await fresh.close()
        resumed = await Member.join(
            cluster.ws_url(index, room, after=before), cookie=people["owner"]["cookie"]
        )
        assert resumed.welcome["resumed"] is True
        replay = await resumed.until(lambda f: f["type"] == "message.redacted")
        assert replay[0]["id"] == question["id"] and replay[0]["redacted"] is True
        assert not holds_secret(replay)
        await resumed.close()
        headers = {"Cookie": people["owner"]["cookie"], "Last-Event-ID": str(before)}
        async with (
            httpx.AsyncClient(base_url=cluster.url(index), headers=headers) as http,
            http.stream("GET", f"/api/rooms/{room}/events", timeout=20) as response,
        ):
            events = await SseReader(response).until(lambda e: e.event == "message.redacted")
        assert events[0].event == "welcome" and events[0].json()["resumed"] is True
        assert not holds_secret([e.data for e in events])
    for member in (asker, watcher, moderator):
        await member.close()
