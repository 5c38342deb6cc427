"""Hostile input against a worker on PostgreSQL, which refuses what SQLite takes (a NUL in
text, a name over its column's size): a clear error and the connection lives on, never a
`DataError` and 1011 or 500 (the hardening issue, defects 1 and 3)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import psycopg
import pytest
import websockets

from tests.cluster.conftest import ClusterFactory

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def _next(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return dict(frame)


def _rooms_named(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from chat_room where name like %s", (prefix + "%",))
        return int(row.fetchone()[0])  # type: ignore[index]


def _post_question(base: str, room: str, text: str) -> tuple[int, dict[str, Any]]:
    """A guest's session POST, with the CSRF token the event stream hands out (its headers
    are enough: the stream itself is not read)."""
    with urllib.request.urlopen(f"{base}/api/rooms/{room}/events", timeout=20) as sse:
        cookies = dict(
            c.split(";")[0].split("=", 1) for c in sse.headers.get_all("Set-Cookie") or []
        )
    request = urllib.request.Request(
        f"{base}/api/rooms/{room}/questions",
        data=json.dumps({"text": text}).encode(),
        headers={
            "Content-Type": "application/json",
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
            "X-CSRFToken": cookies["csrftoken"],
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_postgresql_never_sees_nul_or_overlong_names(
    make_cluster: ClusterFactory, room: str, database_url: str
) -> None:
    cluster = make_cluster(workers=1)
    base = cluster.ws_url(0, room).rsplit("/ws/", 1)[0]
    for name in (room + "x" * (64 - len(room)) + "%0A", room + "%00"):
        async with websockets.connect(f"{base}/ws/rooms/{name}/", proxy=None) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004
    assert _rooms_named(database_url, room) == 0

    async with websockets.connect(cluster.ws_url(0, room), proxy=None) as ws:
        await _next(ws, "welcome")
        for frame in (
            {"type": "ask", "text": "nul \u0000 inside"},
            {"type": "ask", "text": "fine", "client_id": "c\u0000"},
            {"type": "cancel", "answer_id": "a_\u0000"},
        ):
            await ws.send(json.dumps(frame))
            assert (await _next(ws, "error"))["code"] == "invalid"
        await ws.send(json.dumps({"type": "ping"}))
        assert await _next(ws, "pong") == {"type": "pong"}

    status, body = await asyncio.to_thread(_post_question, cluster.url(0), room, "nul \u0000 in")
    assert status == 400 and body["error"]["code"] == "invalid"
    assert "Traceback" not in cluster.logs(0)
