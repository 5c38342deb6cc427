"""The hardening issue against a real daphne process and real sockets: members who close while
an answer streams to them leave the member list, bad room names and foreign origins are
refused on the wire as they are in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.servers import daphne, migrate, server_env

pytestmark = pytest.mark.slow


def _serve(tmp_path: Path, simulator: Any, settings: dict[str, str]) -> Iterator[str]:
    """A real daphne against the simulator, with these chat settings."""
    env = server_env(
        tmp_path, {"OPENAI_BASE_URL": simulator.base_url, "OPENAI_API_KEY": "k", **settings}
    )
    migrate(env)
    with daphne(env, log=tmp_path / "daphne.log") as url:
        yield url


@pytest.fixture
def server(tmp_path: Path, simulator: Any, knowledge_base: str) -> Iterator[str]:
    # 100 joins from one address in a burst: not what the per-address limits are about.
    yield from _serve(
        tmp_path,
        simulator,
        {
            "CHAT_ASK_BURST": "100",
            "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "1000",
            "DJANGO_LOG_LEVEL": "INFO",
        },
    )


async def _frames_until(ws: Any, predicate: Any, timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if predicate(frame):
                return frame


async def test_members_who_close_while_an_answer_streams_leave_the_member_list(
    server: str, tmp_path: Path
) -> None:
    """100 members join during a fast answer and close within half a second, some politely,
    some by dropping the TCP connection: the member list returns to exactly who is there."""
    ws_url = server.replace("http", "ws") + "/ws/rooms/ghosts/"
    async with websockets.connect(ws_url, max_size=2**24) as watcher:
        welcome = await _frames_until(watcher, lambda f: f["type"] == "welcome")
        me = welcome["user"]
        await watcher.send(
            json.dumps({"type": "ask", "text": "Talk fast [[sim tokens=6000 tps=3000]]"})
        )
        await _frames_until(watcher, lambda f: f["type"] == "answer.delta")
        rng = random.Random(7)

        async def visit(i: int) -> None:
            ws = await websockets.connect(ws_url, max_size=2**24)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            if i % 2:
                ws.transport.abort()  # gone mid-write, no closing handshake
            else:
                await ws.close()

        await asyncio.gather(*(visit(i) for i in range(100)))
        await _frames_until(watcher, lambda f: f["type"] == "answer.end", timeout=60)

        # Presence settles to the watcher alone (a ghost would stay listed for good).
        async def alone() -> bool:
            frame = await _frames_until(watcher, lambda f: f["type"] == "presence", timeout=20)
            return bool(frame["members"] == [me])

        async with asyncio.timeout(20):
            while not await alone():
                pass
    async with websockets.connect(ws_url) as fresh:
        hello = await _frames_until(fresh, lambda f: f["type"] == "welcome")
        assert hello["members"] == [hello["user"]]
    log = (tmp_path / "daphne.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]


async def test_a_real_server_refuses_bad_names_and_other_ports(server: str) -> None:
    base = server.replace("http", "ws")
    for name in ("lobby%0A", "lob%00by", "x" * 64 + "%0A"):
        async with websockets.connect(f"{base}/ws/rooms/{name}/") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004
    port = int(server.rsplit(":", 1)[1])
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(f"{base}/ws/rooms/lobby/", origin="http://127.0.0.1:9999"):
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(
        f"{base}/ws/rooms/lobby/", origin=f"http://127.0.0.1:{port}"
    ) as ws:
        assert (await _frames_until(ws, lambda f: f["type"] == "welcome"))["room"] == "lobby"


@pytest.fixture
def strict_server(tmp_path: Path, simulator: Any, knowledge_base: str) -> Iterator[str]:
    """A real daphne with short connection limits."""
    yield from _serve(
        tmp_path,
        simulator,
        {"CHAT_IDLE_CONNECTION_SECONDS": "2", "CHAT_MAX_CONNECTIONS_PER_ADDRESS": "3"},
    )


def _held_for(port: int, first_bytes: bytes) -> float:
    """Seconds until the server hangs up on a socket that sends `first_bytes`, then nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        began = time.monotonic()
        if first_bytes:
            sock.sendall(first_bytes)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(4096):
                pass
        return time.monotonic() - began


async def test_silent_sockets_and_unfinished_handshakes_are_closed(strict_server: str) -> None:
    """Daphne kept them for Twisted's 12 hours; now CHAT_IDLE_CONNECTION_SECONDS (2 here)."""
    port = int(strict_server.rsplit(":", 1)[1])
    unfinished = b"GET /ws/rooms/lobby/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    held = await asyncio.gather(
        *(asyncio.to_thread(_held_for, port, first) for first in (b"", unfinished, b"GE"))
    )
    assert all(seconds < 10 for seconds in held), held
    # A WebSocket quieter than that is not touched: it is a request being handled.
    async with websockets.connect(strict_server.replace("http", "ws") + "/ws/rooms/q/") as ws:
        await _frames_until(ws, lambda f: f["type"] == "welcome")
        await asyncio.sleep(4)
        await ws.send(json.dumps({"type": "ping"}))
        assert await _frames_until(ws, lambda f: f["type"] == "pong") == {"type": "pong"}


async def test_a_guests_connections_from_one_address_are_limited(strict_server: str) -> None:
    url = strict_server.replace("http", "ws") + "/ws/rooms/many/"
    sockets = [await websockets.connect(url) for _ in range(3)]
    for ws in sockets:
        await _frames_until(ws, lambda f: f["type"] == "welcome")
    async with websockets.connect(url) as extra:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await extra.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4029
    # One leaves: the next one is let in.
    await sockets.pop().close()
    await asyncio.sleep(0.3)
    async with websockets.connect(url) as again:
        assert (await _frames_until(again, lambda f: f["type"] == "welcome"))["room"] == "many"
    for ws in sockets:
        await ws.close()
